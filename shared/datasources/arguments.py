"""A sink's arguments, checked and read as upstream Kafka-ML's sinks take them."""

from __future__ import annotations

from collections.abc import Sequence


def shape_text(shape: Sequence[int]) -> str:
    """A shape as upstream writes it: ``(8, 8)`` → ``"8 8"``, a scalar → ``"1"``."""
    return " ".join(str(d) for d in shape) if len(shape) else "1"


def check_rates(validation_rate: float, test_rate: float) -> None:
    for name, rate in (("validation_rate", validation_rate), ("test_rate", test_rate)):
        if not 0 <= rate < 1:
            raise ValueError(f"{name} must be at least 0 and below 1, got {rate}")
    if validation_rate + test_rate >= 1:
        raise ValueError(
            f"validation_rate + test_rate must be below 1 to leave samples to train on, "
            f"got {validation_rate} + {test_rate}"
        )


def deployment_number(deployment_id: int | str) -> int:
    """Upstream documents the id as a string but sends ints; accept both, reject anything else."""
    if isinstance(deployment_id, bool):
        raise ValueError("deployment_id must be an integer, not a bool")
    if isinstance(deployment_id, str):
        if not deployment_id.strip().isdigit():
            raise ValueError(f"deployment_id must be a non-negative integer, got {deployment_id!r}")
        return int(deployment_id)
    if not isinstance(deployment_id, int) or deployment_id < 0:
        raise ValueError(f"deployment_id must be a non-negative integer, got {deployment_id!r}")
    return deployment_id


def servers(*candidates: str | Sequence[str] | None) -> str:
    for servers in candidates:
        if servers:
            return servers if isinstance(servers, str) else ",".join(servers)
    # Last resort: the stack's own setting, so scripts run unchanged against `kafkaml up`.
    from shared.settings import Settings

    found = Settings().bootstrap_servers
    if not found:
        raise ValueError("bootstrap_servers is required (or set KAFKAML_BOOTSTRAP_SERVERS)")
    return found
