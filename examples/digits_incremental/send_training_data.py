"""Streams scikit-learn's digits in three parts with pauses, as upstream's online example does.

    python examples/digits_incremental/send_training_data.py --deployment-id 1 [--pause 20]

``OnlineRawSink`` announces the bare topic once (``incremental: true``, ``total_msg: null``)
before its first record; an incremental deployment trains on it window by window while the
parts arrive. The stack's broker is read from .kafkaml/stack.json (or pass --bootstrap-servers).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits

from shared.datasources import OnlineRawSink

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from client import stack_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployment-id", type=int, required=True)
    parser.add_argument("--bootstrap-servers")
    parser.add_argument("--topic", default="digits-online")
    parser.add_argument("--control-topic", default="KAFKA_ML_CONTROL_TOPIC")
    parser.add_argument("--pause", type=float, default=20.0, help="seconds between the parts")
    args = parser.parse_args()

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # values 0..16
    labels = digits.target.astype(np.uint8)
    sink = OnlineRawSink(
        args.bootstrap_servers or stack_info()["bootstrap_servers"],
        args.topic,
        args.deployment_id,
        data_type="uint8",
        label_type="uint8",
        data_reshape="8 8",
        label_reshape="1",
        validation_rate=0.1,
        control_topic=args.control_topic,
        description="scikit-learn digits, online",
    )
    parts = np.array_split(np.arange(len(images)), 3)
    for number, part in enumerate(parts, 1):
        for index in part:
            sink.send(images[index], labels[index])
        print(f"part {number}: sent {len(part)} digits", flush=True)
        if number < len(parts):
            time.sleep(args.pause)
    sink.online_close()
    print(f"sent {len(images)} digits for deployment {args.deployment_id}")


if __name__ == "__main__":
    main()
