"""Old import path of the metrics service's repositories (now in ``shared.db.repositories.metrics``)."""

from shared.db.repositories.metrics import ArtifactRepository, MetricsRepository

__all__ = ["ArtifactRepository", "MetricsRepository"]
