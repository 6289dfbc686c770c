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

from shared.kafka import is_transient


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
