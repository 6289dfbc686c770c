"""`make demo`: the whole pipeline on one machine, from nothing.

Starts the embedded stack, defines upstream Kafka-ML's Keras model (8x8 inputs),
deploys it for training, streams scikit-learn's digits through Kafka with the
RawSink, waits for training, prints the test accuracy, and stops the stack.
A stack that was already running is used and left running.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from tqdm import tqdm

from shared.datasources import RawSink

sys.path.insert(0, str(Path(__file__).resolve().parent))
from client import Client, stack_info  # noqa: E402

HERE = Path(__file__).resolve().parent
EPOCHS = 10


def kafkaml(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "shared.cli", *args])


def main() -> int:
    started = time.monotonic()
    already_up = kafkaml("status") == 0
    if not already_up and kafkaml("up", "--detach") != 0:
        print("could not start the stack; see .kafkaml/logs/")
        return 1
    try:
        return run(Client(stack_info()))
    finally:
        if not already_up:
            kafkaml("down")
        print(f"demo took {time.monotonic() - started:.0f} s")


def run(api: Client) -> int:
    code = (HERE / "models" / "keras_digits.py").read_text()
    model = api.create_model("digits (demo)", "tensorflow", code)
    print(f"model {model['id']}: {model['summary']['parameters']:,} parameters")
    configuration = api.call("POST", "/configurations", json={"name": "digits (demo)", "model_ids": [model["id"]]})
    deployment = api.call(
        "POST",
        "/deployments",
        json={
            "configuration_id": configuration["id"],
            "batch_size": 32,
            "fit": {"epochs": EPOCHS},
            "confusion_matrix": True,
        },
    )
    print(f"deployment {deployment['id']}: result {deployment['results'][0]['id']} waiting for data")

    digits = load_digits()
    images, labels = digits.images.astype(np.uint8), digits.target.astype(np.uint8)
    with RawSink(
        stack_info()["bootstrap_servers"], "demo-digits", deployment["id"], data_type="uint8", label_type="uint8",
        data_reshape="8 8", label_reshape="1", validation_rate=0.1, test_rate=0.1, description="digits (demo)",
        partitions=2, progress=True, total=len(images),
    ) as sink:  # fmt: skip
        for image, label in zip(images, labels, strict=True):
            sink.send(image, label)

    with tqdm(total=EPOCHS, desc="training", unit="epoch") as bar:

        def show(results: list[dict[str, object]]) -> None:
            curves = results[0]["train_metrics"] if results else {}
            done = max((len(v) for v in curves.values()), default=0) if isinstance(curves, dict) else 0
            bar.update(done - bar.n)

        [result] = api.wait_for_results(deployment["id"], on_update=show)
    if result["status"] != "finished":
        print(f"training {result['status']}: {result['error']}")
        return 1
    accuracy = next(v for k, v in result["test_metrics"].items() if "accuracy" in k)
    print(f"test accuracy: {accuracy:.3f} ({result['samples']['test']} held-out digits)")
    print(f"training time: {result['training_time']:.1f} s")
    info = stack_info()
    print(f"confusion matrix: {info['api_url']}/api/v1/results/{result['id']}/confusion-matrix.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
