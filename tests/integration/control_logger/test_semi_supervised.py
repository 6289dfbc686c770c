"""Upstream's semi-supervised announcements (an ``unsupervised_topic``), sent as upstream's
examples send them, are refused by the real control logger: dead-lettered with the reason,
no data source recorded, and the stream goes on with the next announcement."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import numpy as np
import pytest

from shared.datasources import OnlineRawSink, RawSink
from shared.settings import Settings
from shared.topics import topics_for
from tests.conftest import service_env
from tests.integration.control_logger.test_control_logger import read_records, wait_for_rows

pytestmark = pytest.mark.integration

StartService = Callable[..., subprocess.Popen[bytes]]


async def test_semi_supervised_announcements_are_dead_lettered_with_the_reason(
    settings: Settings, database: str, run_service: StartService
) -> None:
    run_service("services.control_logger", service_env(settings, database=True), name="control-logger")
    images = np.arange(6 * 4, dtype=np.uint8).reshape(6, 2, 2)
    labels = np.arange(6, dtype=np.uint8)
    topic, unlabelled = f"{settings.topic_prefix}.automl", f"{settings.topic_prefix}.unsupervised_automl"
    common = {"boostrap_servers": settings.bootstrap_servers, "control_topic": settings.control_topic, "partitions": 1}

    # Upstream's semi-supervised MNIST training example (import changed).
    mnist = RawSink(topic=topic, deployment_id=1, description="Mnist dataset", validation_rate=0.1,
                    test_rate=0.1, unsupervised_topic=unlabelled, **common)  # fmt: skip
    for x, y in zip(images[:3], labels[:3], strict=True):
        mnist.send(data=x, label=y)
    for x in images[3:]:
        mnist.unsupervised_send(data=x)
    mnist.close()
    # The online semi-supervised form: announced explicitly, as upstream's online example does.
    online = OnlineRawSink(topic=topic, deployment_id=2, unsupervised_topic=unlabelled, **common)
    for x, y in zip(images[:3], labels[:3], strict=True):
        online.send(data=x, label=y)
    online.send_online_control_msg()
    online.online_close()
    # Then a plain labelled data set: recorded, so the refusals did not stop the stream.
    plain = RawSink(topic=topic, deployment_id=3, **common)
    for x, y in zip(images, labels, strict=True):
        plain.send(data=x, label=y)
    plain.close()

    rows = await wait_for_rows(settings.database_url, 1)
    assert [(r["deployment_id"], r["unsupervised_topic"]) for r in rows] == [(3, None)]
    dead = await read_records(settings, topics_for(settings).dead_letters, 2)
    assert len(dead) == 2
    for record in dead:
        headers = dict(record.headers)
        reason = headers["kafkaml-dlq-reason"].decode()
        assert reason.startswith("semi-supervised training is not supported") and unlabelled in reason
        assert headers["kafkaml-dlq-consumer"] == b"control-logger"
