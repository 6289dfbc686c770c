"""Data sources: what the control logger recorded from control messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from shared.events.envelope import Command, Event, Payload

# The formats of a data stream: upstream Kafka-ML's names (docs/contracts.md). RAW and AVRO
# carry a sample and its label; JSON is ``json.loads`` of the value; TELEGRAF_STR_JSON is a
# Telegraf JSON metric whose ``fields.value`` is itself a JSON string (decoded as JSON).
InputFormat = Literal["RAW", "AVRO", "JSON", "TELEGRAF_STR_JSON"]


class DatasourceRecord(Payload):
    id: int
    deployment_id: int
    topic: str
    input_format: InputFormat
    input_config: dict[str, Any]
    validation_rate: float
    test_rate: float
    total_msg: int | None
    description: str
    unsupervised_topic: str | None = None
    dataset_restrictions: dict[str, Any] | str | None = None
    incremental: bool = False
    control_topic: str
    partition: int
    offset: int
    created_at: datetime
    # Why its data no longer exists (its topic is gone from the broker), or None while it does.
    lost: str | None = None

    def partition_key(self) -> int:
        return self.deployment_id


class DatasourceRecorded(Event):
    type: Literal["DatasourceRecorded"] = "DatasourceRecorded"
    payload: DatasourceRecord


class SendDatasourcePayload(Payload):
    datasource_id: int
    deployment_id: int

    def partition_key(self) -> int:
        return self.datasource_id


class SendDatasource(Command):
    """Announce a recorded data set again, to another deployment (a new control message)."""

    type: Literal["SendDatasource"] = "SendDatasource"
    payload: SendDatasourcePayload


class DatasourceResent(SendDatasourcePayload):
    # The upstream-format control message, as it goes to the control topic after the commit.
    control_message: dict[str, Any]


class DatasourceSent(Event):
    outcome = True
    type: Literal["DatasourceSent"] = "DatasourceSent"
    payload: DatasourceResent
