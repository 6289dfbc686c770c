"""What the end-to-end tests do as a user: a request whose 202 is followed to its command's
outcome, polling a resource until it is ready, and upstream's RAW digits sent with the sink."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from shared.datasources import RawSink

COMMAND_TIMEOUT_S = 120.0


def followed(
    http: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None, timeout_s: float = COMMAND_TIMEOUT_S
) -> tuple[int, Any]:
    """(status, body) of a request; a 202 (a command still running, such as the first validation
    after `up`, which waits for the sandbox's framework import) is followed until the command ends."""
    answer = http.request(method, path, json=body)
    if answer.status_code != 202:
        return answer.status_code, answer.json() if answer.content else None
    location = answer.headers["Location"].removeprefix("/api/v1")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = http.get(location).json()
        if state["status"] == "rejected":
            outcome = state["outcome"]
            return int(outcome["status"]), outcome
        if state["status"] == "succeeded":
            return 200, state["outcome"]
        time.sleep(0.5)
    raise AssertionError(f"{method} {path}: command still pending after {timeout_s:.0f} s")


def ok(http: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """The answer of a request that must succeed (a 202 followed to its outcome)."""
    status, answer = followed(http, method, path, body)
    assert status < 300, f"{method} {path} answered {status}: {answer}"
    return answer


def until(http: httpx.Client, path: str, ready: Callable[[Any], bool], timeout_s: float = 120) -> Any:
    """``GET path`` again every half second until ``ready`` says yes."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = ok(http, "GET", path)
        if ready(found):
            return found
        assert time.monotonic() < deadline, f"{path} never got there: {found}"
        time.sleep(0.5)


def send_digits(
    bootstrap: str, deployment_id: int, topic: str, images: np.ndarray[Any, Any], labels: np.ndarray[Any, Any],
    **options: Any,
) -> dict[str, Any]:  # fmt: skip
    """Upstream's RAW digits (uint8, 8x8) for a deployment; the input_config the sink announced."""
    with RawSink(
        bootstrap, topic, deployment_id, data_type="uint8", label_type="uint8", data_reshape="8 8",
        label_reshape="1", validation_rate=0.1, test_rate=0.1, **options,
    ) as sink:  # fmt: skip
        sink.send_many(images, labels)
    return dict(sink.input_config)
