"""Which failures are retried: those that go away by themselves, never those that fail the same
way every time (a message too large for the broker would otherwise stall its stream for ever)."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
)

from shared.kafka import Received, deliver, is_transient
from shared.process import Backoff


@pytest.mark.parametrize(
    "error", [KafkaConnectionError(), KafkaTimeoutError(), NotLeaderForPartitionError(), ConnectionResetError()]
)
def test_the_broker_away_or_moving_is_retried(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error", [MessageSizeTooLargeError(), TopicAuthorizationFailedError(), ValueError("bad"), KeyError("x")]
)
def test_what_fails_every_time_is_not_retried(error: BaseException) -> None:
    assert not is_transient(error)


class RecordsDeadLetters:
    """Stands in for the producer's dead-letter copy (what ``deliver`` decides is the logic here)."""

    def __init__(self) -> None:
        self.dead: list[str] = []

    async def dead_letter(self, topic: str, received: Received, reason: str, *, consumer: str) -> None:
        self.dead.append(reason)


async def test_a_transient_failure_is_retried_for_a_bounded_time_then_dead_lettered() -> None:
    tries = 0

    async def database_away(received: Received) -> None:
        nonlocal tries
        tries += 1
        raise ConnectionRefusedError("the database is away")

    producer = RecordsDeadLetters()
    ended: list[str] = []

    async def on_dead_letter(received: Received, reason: str) -> None:
        ended.append(reason)

    record = Received(topic="t", partition=0, offset=7, key=None, value=b"{}")
    await deliver(
        record,
        database_away,
        producer=producer,  # type: ignore[arg-type]
        dead_letter_topic="dlq",
        consumer="test",
        backoff=Backoff(initial=0.01, maximum=0.05),
        retry_for_s=0.3,
        on_dead_letter=on_dead_letter,
    )
    assert tries > 3, "retried before giving up"
    [reason] = producer.dead
    assert reason.startswith(f"still failing after {tries} tries") and "the database is away" in reason
    assert ended == [reason]


async def test_a_transient_failure_that_clears_is_not_dead_lettered() -> None:
    tries = 0

    async def flaky(received: Received) -> None:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ConnectionResetError("a blip")

    producer = RecordsDeadLetters()
    record = Received(topic="t", partition=0, offset=8, key=None, value=b"{}")
    await deliver(
        record, flaky, producer=producer, dead_letter_topic="dlq", consumer="test",  # type: ignore[arg-type]
        backoff=Backoff(initial=0.01), retry_for_s=5,
    )  # fmt: skip
    assert (tries, producer.dead) == (3, [])
