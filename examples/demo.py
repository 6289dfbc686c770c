"""`make demo`: the whole pipeline on one machine, from nothing.

Starts the embedded stack, defines upstream Kafka-ML's Keras model (8x8 inputs),
deploys it for training, streams scikit-learn's digits through Kafka with the
RawSink (all but 300, held out), waits for training and prints the test
accuracy; then serves the trained model for inference, streams the 300
held-out digits through it, prints the inference accuracy, and stops the
stack. A stack that was already running is used and left running.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sklearn.datasets import load_digits
from tqdm import tqdm

from shared.datasources import RawSink
from shared.progress import epochs_done, phase_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from client import Client, stack_info

HERE = Path(__file__).resolve().parent
EPOCHS = 10
HELD_OUT = 300


def kafkaml(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "shared.cli", *args])


def main() -> int:
    started = time.monotonic()
    already_up = kafkaml("status") == 0
    if not already_up and kafkaml("up", "--detach") != 0:
        print("could not start the stack; see .kafkaml/logs/")
        return 1
    address = stack_info()["api_url"]
    try:
        return run(Client(stack_info()))
    finally:
        if not already_up:
            kafkaml("down")
        print(f"demo took {time.monotonic() - started:.0f} s")
        again = "" if already_up else "; `kafkaml up --detach` starts it again"
        print(f"Web UI: {address}/ (sign in with the token in .kafkaml/stack.json{again})")


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
    order = np.random.default_rng(7).permutation(len(digits.target))
    images, labels = digits.images[order].astype(np.uint8), digits.target[order].astype(np.uint8)
    held_images, held_labels = images[:HELD_OUT], labels[:HELD_OUT]
    images, labels = images[HELD_OUT:], labels[HELD_OUT:]
    with RawSink(
        stack_info()["bootstrap_servers"], "demo-digits", deployment["id"], data_type="uint8", label_type="uint8",
        data_reshape="8 8", label_reshape="1", validation_rate=0.1, test_rate=0.1, description="digits (demo)",
        partitions=2, progress=True, total=len(images),
    ) as sink:  # fmt: skip
        for image, label in zip(images, labels, strict=True):
            sink.send(image, label)

    with tqdm(total=EPOCHS, desc="training", unit="epoch") as bar:

        def show(results: list[dict[str, object]]) -> None:
            if results:  # until the first epoch, what the trainer does (starting, reading N samples…)
                bar.set_description(phase_text(results[0]), refresh=False)
                bar.update(epochs_done(results[0]) - bar.n)

        [result] = api.wait_for_results(deployment["id"], on_update=show)
    if result["status"] != "finished":
        print(f"training {result['status']}: {result['error']}")
        return 1
    accuracy = next(v for k, v in result["test_metrics"].items() if "accuracy" in k)
    print(f"test accuracy: {accuracy:.3f} ({result['samples']['test']} held-out digits)")
    print(f"training time: {result['training_time']:.1f} s")
    info = stack_info()
    print(f"confusion matrix: {info['api_url']}/api/v1/results/{result['id']}/confusion-matrix.png")

    inference = api.call(
        "POST",
        "/inferences",
        json={"result_id": result["id"], "replicas": 1, "input_topic": "demo-in", "output_topic": "demo-out"},
    )
    deadline = time.monotonic() + 120
    while inference["status"] != "running":
        if inference["status"] == "failed" or time.monotonic() > deadline:
            print(f"inference {inference['status']}: {inference.get('error')}")
            return 1
        time.sleep(0.5)
        inference = api.call("GET", f"/inferences/{inference['id']}")
    print(f"inference {inference['id']} running ({inference['input_format']} {inference['input_config']})")
    predicted = asyncio.run(predict(info["bootstrap_servers"], held_images))
    hits = sum(int(np.argmax(predicted[i]) == held_labels[i]) for i in range(HELD_OUT) if i in predicted)
    print(f"inference accuracy: {hits / HELD_OUT:.3f} ({len(predicted)} of {HELD_OUT} held-out digits answered)")
    print(f"live view: {info['api_url']}/api/v1/inferences/{inference['id']}/view (sign in at /sign-in first)")
    api.call("POST", f"/inferences/{inference['id']}/stop")
    return 0 if len(predicted) == HELD_OUT else 1


async def predict(servers: str, images: np.ndarray, timeout_s: float = 60) -> dict[int, list[float]]:
    """Sends each image (key: its index) and collects the prediction that carries that key."""
    consumer = AIOKafkaConsumer("demo-out", bootstrap_servers=servers, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await consumer.start()
    await producer.start()
    found: dict[int, list[float]] = {}
    try:
        for index, image in enumerate(images):
            await producer.send("demo-in", image.tobytes(), key=index.to_bytes(4, "big"))
        await producer.flush()
        deadline = time.monotonic() + timeout_s
        with tqdm(total=len(images), desc="predicting", unit="digit") as bar:
            while len(found) < len(images) and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        found[int.from_bytes(record.key, "big")] = json.loads(record.value)["values"]
                bar.update(len(found) - bar.n)
    finally:
        await producer.stop()
        await consumer.stop()
    return found


if __name__ == "__main__":
    sys.exit(main())
