"""Streams scikit-learn's digits (1797 8x8 images, 10 classes) for training, as upstream's RAW format.

    python examples/digits/send_training_data.py --deployment-id 1

The stack's broker is read from .kafkaml/stack.json (or pass --bootstrap-servers).
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits

from shared.datasources import RawSink

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from client import stack_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployment-id", type=int, required=True)
    parser.add_argument("--bootstrap-servers")
    parser.add_argument("--topic", default="digits")
    parser.add_argument("--control-topic", default="KAFKA_ML_CONTROL_TOPIC")
    args = parser.parse_args()

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # values 0..16
    labels = digits.target.astype(np.uint8)
    with RawSink(
        args.bootstrap_servers or stack_info()["bootstrap_servers"],
        args.topic,
        args.deployment_id,
        data_type="uint8",
        label_type="uint8",
        data_reshape="8 8",
        label_reshape="1",
        validation_rate=0.1,
        test_rate=0.1,
        control_topic=args.control_topic,
        description="scikit-learn digits",
        partitions=2,
        progress=True,
        total=len(images),
    ) as sink:
        for image, label in zip(images, labels, strict=True):
            sink.send(image, label)
    print(f"sent {len(images)} digits for deployment {args.deployment_id}")


if __name__ == "__main__":
    main()
