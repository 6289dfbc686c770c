"""Upstream Kafka-ML's inference example on this stack: send digits to an inference, print each prediction.

    python examples/read_predictions.py --input-topic digits-in --output-topic digits-out --items 10

It reads the way upstream's MNIST inference example does, with kafka-python and a consumer in
the group ``output_group``, and stops after ``--items`` predictions (or ``--idle-timeout-s``
without one). What matters on the embedded broker (docs/clients.md has the measurements):

- kafka-python 3.0 or later: 2.0.2, which upstream pins, cannot join a consumer group there
  (the code below is the same for both).
- ``auto_offset_reset="earliest"``: the one change to upstream's consumer. A new group starts at
  the end of the topic, so without it the predictions made before the group joined (all of them,
  here) are never read, on Apache Kafka too.
- ``session_timeout_ms``: the embedded broker answers a group's first join after half of it.

The stack's broker is read from .kafkaml/stack.json (or pass --bootstrap-servers).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from kafka import KafkaConsumer, KafkaProducer
from sklearn.datasets import load_digits

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from client import stack_info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-servers")
    parser.add_argument("--input-topic", default="digits-in")
    parser.add_argument("--output-topic", default="digits-out")
    parser.add_argument("--items", type=int, default=10, help="digits to send, and predictions to wait for")
    parser.add_argument("--group", default="output_group")
    parser.add_argument("--session-timeout-ms", type=int, default=6000, help="kafka-python 3.0's default is 45000")
    parser.add_argument("--idle-timeout-s", type=float, default=30, help="give up after this long without a record")
    args = parser.parse_args()
    servers = args.bootstrap_servers or stack_info()["bootstrap_servers"]

    images = load_digits().images.astype(np.uint8)  # RAW, uint8, reshape "8 8": the digits models' input
    producer = KafkaProducer(bootstrap_servers=servers)
    for i in range(args.items):
        producer.send(args.input_topic, images[i % len(images)].tobytes())
    producer.flush()
    producer.close()

    output_consumer = KafkaConsumer(
        args.output_topic,
        bootstrap_servers=servers,
        group_id=args.group,
        auto_offset_reset="earliest",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=1000,
        # The embedded broker holds an empty fetch for the whole wait (kafka-python's default: 500 ms).
        fetch_max_wait_ms=10,
        consumer_timeout_ms=int(args.idle_timeout_s * 1000),
    )
    read = 0
    print("Output consumer:")
    for msg in output_consumer:  # ends after --idle-timeout-s without a record
        prediction = json.loads(msg.value)["values"]
        print(f"{read}: digit {int(np.argmax(prediction))}  {msg.value.decode()}")
        read += 1
        if read == args.items:
            break
    output_consumer.close()  # commits what was read: a second run of the group starts after it
    print(f"{read} predictions")
    return 0 if read == args.items else 1


if __name__ == "__main__":
    raise SystemExit(main())
