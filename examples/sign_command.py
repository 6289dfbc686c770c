"""Publish a signed command with a plain Kafka client (kafka-python), as any user may.

    python examples/sign_command.py DeleteModel '{"model_id": 3}'

Reads the brokers and the bus key from ``$KAFKAML_HOME/stack.json`` (what
``kafkaml up`` writes), or from ``KAFKAML_BOOTSTRAP_SERVERS`` and
``KAFKAML_BUS_KEY``; the topic prefix from ``KAFKAML_TOPIC_PREFIX`` (default
``kafkaml``). Prints the outcome event that answers the command (its
``correlation_id`` is the command's ``event_id``), or says none came in time.

Nothing here imports Kafka-ML: the recipe is the one in docs/contracts.md
("Signing"), so it can be copied into any language. A command without a valid
signature is dead-lettered and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def signature(bus_key: str, value: bytes) -> bytes:
    """The ``kafkaml-signature`` header's value for a record whose value is ``value``."""
    key = bus_key.encode()
    kid = hashlib.sha256(key).hexdigest()[:8]
    sig = hmac.new(key, value, hashlib.sha256).hexdigest()
    return f"alg=hmac-sha256;kid={kid};signer=bus;sig={sig}".encode()


def command(type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The envelope every message travels in (shared/events/schemas/messages.schema.json)."""
    return {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": None,
        "payload": payload,
    }


def settings() -> tuple[str, str, str]:
    """(bootstrap servers, bus key, topic prefix)."""
    bootstrap = os.environ.get("KAFKAML_BOOTSTRAP_SERVERS")
    bus_key = os.environ.get("KAFKAML_BUS_KEY")
    path = Path(os.environ.get("KAFKAML_HOME", ".kafkaml")) / "stack.json"
    if (not bootstrap or not bus_key) and path.exists():
        info = json.loads(path.read_text())
        bootstrap, bus_key = bootstrap or info["bootstrap_servers"], bus_key or info["bus_key"]
    if not bootstrap or not bus_key:
        raise SystemExit(f"no {path}: start a stack or set KAFKAML_BOOTSTRAP_SERVERS and KAFKAML_BUS_KEY")
    return bootstrap, bus_key.split(",")[0], os.environ.get("KAFKAML_TOPIC_PREFIX", "kafkaml")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    bootstrap, bus_key, prefix = settings()
    message = command(argv[1], json.loads(argv[2]))
    value = json.dumps(message).encode()  # the signature covers exactly these bytes
    # Read the events topic from its end before sending, so the answer is not missed.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    events = [TopicPartition(f"{prefix}.events", p) for p in consumer.partitions_for_topic(f"{prefix}.events")]
    consumer.assign(events)
    consumer.seek_to_end()
    for partition in events:
        consumer.position(partition)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(
        f"{prefix}.commands",
        value,
        key=message["event_id"].encode(),
        headers=[("kafkaml-signature", signature(bus_key, value))],
    ).get(timeout=30)
    producer.close()
    print(f"sent {message['type']} {message['event_id']}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                event = json.loads(record.value)
                if event.get("correlation_id") == message["event_id"]:
                    print(f"outcome {event['type']}: {json.dumps(event['payload'])}")
                    consumer.close()
                    return 0 if event["type"] != "CommandRejected" else 1
    consumer.close()
    print("no outcome within 30 s: GET /api/v1/commands/<event_id> tells how it ended")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
