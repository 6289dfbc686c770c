"""Repositories, one module per owning service, on one generic base.

They read and flush; the boundary (one message, one batch, one request) commits.
"""

from shared.db.repositories.base import Key, RepositoryBase, Row
from shared.db.repositories.bookkeeping import OutcomeRepository, ProcessedRepository
from shared.db.repositories.catalog import (
    ACTIVE_STATUSES,
    ConfigurationRepository,
    DeploymentRepository,
    InferenceRepository,
    ModelRepository,
    TrainingRepository,
)
from shared.db.repositories.datasources import DatasourceRepository
from shared.db.repositories.housekeeping import Folded, Housekeeping
from shared.db.repositories.metrics import ArtifactRepository, MetricsRepository
from shared.db.repositories.versions import VersionRepository

__all__ = [
    "ACTIVE_STATUSES",
    "ArtifactRepository",
    "ConfigurationRepository",
    "DatasourceRepository",
    "DeploymentRepository",
    "Folded",
    "Housekeeping",
    "InferenceRepository",
    "Key",
    "MetricsRepository",
    "ModelRepository",
    "OutcomeRepository",
    "ProcessedRepository",
    "RepositoryBase",
    "Row",
    "TrainingRepository",
    "VersionRepository",
]
