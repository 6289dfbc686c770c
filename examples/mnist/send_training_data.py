"""Upstream Kafka-ML's MNIST example (needs the internet to download MNIST once).

    python examples/mnist/send_training_data.py --deployment-id 3

Use upstream's README model unchanged (28x28 inputs): examples/models/keras_mnist.py.
"""

from __future__ import annotations

import argparse

import numpy as np

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
    parser.add_argument("--topic", default="mnist")
    args = parser.parse_args()

    import tensorflow as tf

    try:
        (x_train, y_train), _ = tf.keras.datasets.mnist.load_data()
    except Exception as exc:  # offline machines cannot download it
        raise SystemExit(f"could not download MNIST ({exc}); try examples/digits, which works offline") from exc
    with RawSink(
        args.bootstrap_servers or stack_info()["bootstrap_servers"],
        args.topic,
        args.deployment_id,
        data_type="uint8",
        label_type="uint8",
        data_reshape="28 28",
        label_reshape="1",
        validation_rate=0.1,
        test_rate=0.1,
        description="MNIST",
        partitions=2,
        progress=True,
        total=len(x_train),
    ) as sink:
        for image, label in zip(x_train.astype(np.uint8), y_train.astype(np.uint8), strict=True):
            sink.send(image, label)


if __name__ == "__main__":
    main()
