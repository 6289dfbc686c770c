"""The control message that announces a deployment's data, found on the control topic."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from services.trainer.data.errors import DataError
from shared.control import ControlMessage, deployment_id_from_key, parse_control
from shared.errors import Invalid
from shared.events.training import DatasourceRef
from shared.kafka import make_consumer
from shared.settings import Settings

log = logging.getLogger("kafkaml.trainer")


# How long a scan of the control topic waits for more records before it counts as caught up.
_IDLE_POLL_MS: Final = 1000


@dataclass(frozen=True)
class FoundControl:
    """A control message for our deployment, and where it was on the control topic."""

    message: ControlMessage
    control_topic: str
    partition: int
    offset: int
    deployment_id: int
    timestamp: int | None = None

    def datasource(self) -> DatasourceRef:
        m = self.message
        return DatasourceRef(
            control_topic=self.control_topic,
            partition=self.partition,
            offset=self.offset,
            timestamp=self.timestamp,
            deployment_id=self.deployment_id,
            topic=m.topic,
            input_format=m.input_format,
            input_config=m.input_config,
            validation_rate=m.validation_rate,
            test_rate=m.test_rate,
            total_msg=m.total_msg,
        )


def _control_for(record: Any, deployment_id: int) -> FoundControl | None:
    try:
        if deployment_id_from_key(record.key) != deployment_id:
            return None
    except ValueError:
        return None  # no key: not addressed to anybody (the control logger dead-letters it)
    try:
        message = parse_control(record.value)
    except Invalid as exc:
        log.warning(
            "skipping the control message at %s:%d offset %d for deployment %d: %s",
            record.topic,
            record.partition,
            record.offset,
            deployment_id,
            exc.detail,
        )
        return None
    return FoundControl(message, record.topic, record.partition, record.offset, deployment_id, record.timestamp)


async def find_control_message(settings: Settings, deployment_id: int, timeout_s: float) -> FoundControl:
    """The control message announcing this deployment's data.

    The control topic is read from the beginning (no group). The latest
    matching message present at start-up wins (a data set re-sent for the
    deployment replaces the previous one); when none is there yet, the first
    one that arrives. A malformed one is skipped with a warning.
    """
    topic = settings.control_topic
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        latest: FoundControl | None = None
        caught_up = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            batches = await consumer.getmany(timeout_ms=int(min(_IDLE_POLL_MS, remaining * 1000)) + 1)
            if not batches:
                if latest is not None:
                    return latest
                caught_up = True
                continue
            for records in batches.values():
                for record in records:
                    found = _control_for(record, deployment_id)
                    if found is None:
                        continue
                    if caught_up:
                        return found
                    latest = found
        if latest is not None:
            return latest
    finally:
        await consumer.stop()
    raise DataError(
        f"no data arrived for deployment {deployment_id} within {timeout_s:g} s: "
        f"send a control message keyed by the deployment id to {topic}"
    )
