"""The one registry of Kafka topics: names, partition counts, configs.

Every topic is created explicitly at start-up (`ensure_topics`): a topic
auto-created by a produce gets the broker's default partition count, and the
embedded broker's default is not ours. Keys are entity ids, so one entity's
messages stay ordered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.events.envelope import Envelope, TopicRole
from shared.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topics:
    """Names of the internal topics for one stack (they share the settings' prefix)."""

    prefix: str
    control: str
    # How long the commands, events, validation and dead-letter topics keep their records
    # (Apache Kafka applies it; the embedded broker trims nothing).
    retention_ms: int = 7 * 24 * 3600 * 1000

    @property
    def commands(self) -> str:
        """Commands to the orchestrator (REST gateway or users' own producers)."""
        return f"{self.prefix}.commands"

    @property
    def events(self) -> str:
        """Every domain event: outcomes of commands, workload state, validation answers."""
        return f"{self.prefix}.events"

    @property
    def validation(self) -> str:
        """Model validation commands, consumed by the trainer's validator role."""
        return f"{self.prefix}.validation"

    @property
    def jobs(self) -> str:
        """Job specs for trainers (and later inferencers), keyed by job id."""
        return f"{self.prefix}.jobs"

    @property
    def artifacts(self) -> str:
        """Trained models in checksummed chunks, keyed by result id."""
        return f"{self.prefix}.artifacts"

    @property
    def dead_letters(self) -> str:
        """Messages no handler could decode or accept, with the reason in the headers."""
        return f"{self.prefix}.dead-letters"

    def of(self, message: Envelope | type[Envelope]) -> str:
        """Where a message travels: its class names the topic."""
        by_role: dict[TopicRole, str] = {
            "commands": self.commands,
            "events": self.events,
            "validation": self.validation,
            "jobs": self.jobs,
            "artifacts": self.artifacts,
        }
        return by_role[message.topic]

    def _kept(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms)}

    def specs(self) -> list[TopicSpec]:
        return [
            TopicSpec(self.commands, partitions=4, config=self._kept()),
            TopicSpec(self.events, partitions=4, config=self._kept()),
            TopicSpec(self.validation, partitions=2, config=self._kept()),
            # One partition: a starting trainer scans it for its job id. Compacted, keyed by job
            # id: a spec outlives any retention for as long as its workload may restart.
            TopicSpec(self.jobs, partitions=1, config={"cleanup.policy": "compact"}),
            # Kept until deleted: a replica restarted next month still finds its model (chunks
            # share their result's key, so compaction would keep only the last one).
            TopicSpec(self.artifacts, partitions=4, config={"retention.ms": "-1"}),
            TopicSpec(self.dead_letters, partitions=1, config=self._kept()),
            # Upstream's data sources send to the control topic; one partition keeps
            # announcements in order for trainers that read it from the beginning.
            TopicSpec(self.control, partitions=1),
        ]


def topics_for(settings: Settings) -> Topics:
    return Topics(
        prefix=settings.topic_prefix,
        control=settings.control_topic,
        retention_ms=round(settings.topic_retention_h * 3600 * 1000),
    )
