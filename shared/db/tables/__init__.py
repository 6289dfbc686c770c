"""The tables, one module per owning service (the only one that writes them; the API only reads).

Importing this package defines every table on the one ``Base.metadata`` that the Alembic
environment compares against; the migrations create them.
"""

from shared.db.tables.base import ArtifactFormat, Base, ControlFormat, InputFormat
from shared.db.tables.bookkeeping import CommandOutcome, PendingCommand, ProcessedMessage
from shared.db.tables.catalog import (
    Configuration,
    ConfigurationModel,
    Deployment,
    Inference,
    Model,
    TrainingJob,
    TrainingResult,
)
from shared.db.tables.datasources import Datasource
from shared.db.tables.metrics import (
    ArtifactPart,
    EpochMetric,
    FinalMetrics,
    InferenceStat,
    ModelVersionRow,
    TrainingProgressRow,
    VersionAnnouncement,
    WindowMetricRow,
)

__all__ = [
    "ArtifactFormat",
    "ArtifactPart",
    "Base",
    "CommandOutcome",
    "Configuration",
    "ConfigurationModel",
    "ControlFormat",
    "Datasource",
    "Deployment",
    "EpochMetric",
    "FinalMetrics",
    "Inference",
    "InferenceStat",
    "InputFormat",
    "Model",
    "ModelVersionRow",
    "PendingCommand",
    "ProcessedMessage",
    "TrainingJob",
    "TrainingProgressRow",
    "TrainingResult",
    "VersionAnnouncement",
    "WindowMetricRow",
]
