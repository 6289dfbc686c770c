"""What a sink raises: it cannot reach the brokers, or records were not delivered."""

from __future__ import annotations

from shared.errors import KafkaMLError


class SinkError(KafkaMLError):
    """The sink cannot reach the brokers or was used wrongly."""


class DeliveryError(SinkError):
    """Some records were not acknowledged by the brokers; no control message was sent."""

    def __init__(self, failed: int, attempted: int, first_error: BaseException) -> None:
        self.failed = failed
        self.attempted = attempted
        self.first_error = first_error
        detail = str(first_error) or type(first_error).__name__
        if not detail.startswith(type(first_error).__name__):
            detail = f"{type(first_error).__name__}: {detail}"
        super().__init__(f"{failed} of {attempted} records were not delivered; first error: {detail}")
