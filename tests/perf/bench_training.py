"""Training throughput: the pipeline against the same training on the same arrays in memory.

    .venv/bin/python tests/perf/bench_training.py        # both frameworks, 60,000 samples, 5 epochs, 2 repeats
    .venv/bin/python tests/perf/bench_training.py --framework pytorch

Two paths, each with its own ratio: TensorFlow (Keras ``model.fit``) and PyTorch (Ignite's
supervised trainer with the per-epoch evaluation on the train and validation sets that
the trainer runs, ``services/trainer/torch_training.py``). The PyTorch model is the
MNIST-sized twin of ``examples/models/pytorch_digits.py`` (Flatten, Linear 128, ReLU,
Linear 10; CrossEntropyLoss, Adam); its baseline is Ignite on ``DataLoader(TensorDataset)``
of the same split, batch size and epochs, evaluated the same way after each epoch.

60,000 synthetic 28x28 uint8 samples (MNIST-like: sparse, a label-placed bright
block) and upstream Kafka-ML's README model (``examples/models/keras_mnist.py``:
Flatten, Dense 128, Dense 10), 5 epochs, batch 32, validation and test rates 0.1.

The pipeline: the samples go to an embedded broker through ``AsyncRawSink``
first (not timed); the clock starts when the control message is sent and stops
when ``TrainingFinished`` is read back from the events topic, which the trainer
publishes after the last chunk of the stored model was acknowledged. The
trainer job runs in this process (``services.trainer.worker.train_job``, what
``python -m services.trainer`` runs once it has its spec), already waiting for
its control message, so neither side pays for importing TensorFlow. The
reader of the events topic starts once the last epoch is logged, so that its
polling does not compete with training.

The baseline: the same model code built by the same function, ``model.fit`` on
the same train split with the same validation samples, batch size and epochs,
``verbose=0``, in the same process with the same thread settings (the
trainer's). The trainer's own warm-up (what a warm trainer process has done
before its job: a tiny fit and evaluate) and a small fit of this model run
first, so that TensorFlow's one-time start-up is in neither (without the
warm-up's evaluate the first pipeline run paid 2.3 s more in its evaluate).
Baselines and pipeline runs alternate (``--repeats`` pipeline runs, one more
baseline at the end) and the ratio is of the medians:
on a shared two-core machine one fit varies by ±15%, more than the target.

Printed per framework: the baseline and pipeline seconds and their ratio (target: at most
1.05, "holds" or "does not hold"), the ingestion rate (samples read and decoded per second, from the
trainer's own log line), the pipeline's stages (read + decode, split, fit,
evaluate, export + artifact publish, ...), epoch durations on both sides, CPU
seconds, and what evaluate and export cost on their own (Keras). Exit status 1 when
a ratio is over the target.

Not collected by pytest (``norecursedirs``); it needs no stack, only the
project's installed dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from services.trainer.data import split_indices  # noqa: E402
from services.trainer.keras_training import configure_tensorflow  # noqa: E402
from services.trainer.worker import train_job  # noqa: E402
from services.trainer.worker import warm_up as trainer_warm_up  # noqa: E402
from shared.datasources import AsyncRawSink  # noqa: E402
from shared.events import Envelope, decode  # noqa: E402
from shared.events.catalog import ModelDefinition  # noqa: E402
from shared.events.training import (  # noqa: E402
    JobModel,
    JobSpec,
    TrainingFailed,
    TrainingFinished,
)
from shared.kafka import ensure_topics, make_consumer  # noqa: E402
from shared.process import worker_threads  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.stack.broker import start_broker  # noqa: E402
from shared.topics import topics_for  # noqa: E402
from shared.usercode import build_model  # noqa: E402

MODEL_CODE = (REPO / "examples" / "models" / "keras_mnist.py").read_text()
TORCH_CODE = """\
class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.stack = nn.Sequential(nn.Linear(28 * 28, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.stack(self.flatten(x))

    def loss_fn(self):
        return nn.CrossEntropyLoss()

    def optimizer(self):
        return torch.optim.Adam(model.parameters(), lr=0.001)

    def metrics(self):
        return {"accuracy": Accuracy(), "loss": Loss(self.loss_fn())}


model = NeuralNetwork()
"""
TORCH_IMPORTS = "import torch\nimport torch.nn as nn\nfrom ignite.metrics import Accuracy, Loss\n"
DEPLOYMENT_ID = 1
RESULT_ID = 1
TARGET_RATIO = 1.05


# --- data -------------------------------------------------------------------------------


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Sparse 28x28 uint8 images, MNIST-like in range and sparsity: 15% noise pixels and a bright
    block whose place is the label (learnable by the model, unlike dense noise)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n, dtype=np.uint8)
    masks = np.zeros((10, 28, 28), dtype=bool)
    for label in range(10):
        row, column = 2 + (label // 5) * 14, 1 + (label % 5) * 5
        masks[label, row : row + 10, column : column + 5] = True
    noise = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) * (rng.random((n, 28, 28)) < 0.15)
    x = np.where(masks[y], rng.integers(128, 256, size=(n, 28, 28), dtype=np.uint8), noise).astype(np.uint8)
    return x, y


# --- timing -----------------------------------------------------------------------------


@dataclass
class Timeline:
    """Trainer log lines and events read back, each with the monotonic time it was seen."""

    logs: list[tuple[float, str]] = field(default_factory=list)
    events: list[tuple[float, Envelope]] = field(default_factory=list)

    def log_time(self, pattern: str, last: bool = False) -> float | None:
        found = [t for t, line in self.logs if re.search(pattern, line)]
        if not found:
            return None
        return found[-1] if last else found[0]

    def log_line(self, pattern: str) -> str | None:
        return next((line for _, line in self.logs if re.search(pattern, line)), None)


class Recorder(logging.Handler):
    """Stamps the trainer's log lines; sets ``seen`` (on its loop) once a line matches ``pattern``."""

    def __init__(self, timeline: Timeline, pattern: str) -> None:
        super().__init__(logging.INFO)
        self.timeline = timeline
        self.pattern = re.compile(pattern)
        self.loop = asyncio.get_running_loop()
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.timeline.logs.append((time.monotonic(), line))
        if self.pattern.search(line):
            self.loop.call_soon_threadsafe(self.seen.set)  # lines come from the training thread too


async def read_events(settings: Settings, timeline: Timeline, done: asyncio.Event) -> None:
    """Reads the events topic from the start until the result ends; stamps each event."""
    consumer = make_consumer(settings, topics_for(settings).events, group_id=None)
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    message = decode(record.value)
                    timeline.events.append((now, message))
                    if isinstance(message, TrainingFinished | TrainingFailed):
                        done.set()
                        return
    finally:
        await consumer.stop()


# --- the two measures -------------------------------------------------------------------


def build(framework: str = "tensorflow") -> Any:
    if framework == "pytorch":
        definition = ModelDefinition(name="mnist", framework="pytorch", code=TORCH_CODE, imports=TORCH_IMPORTS)
    else:
        definition = ModelDefinition(name="mnist", framework="tensorflow", code=MODEL_CODE)
    model, _ = build_model(definition)
    return model


def warm_up(framework: str) -> None:
    """What a warm trainer process has done before its job (the trainer's own warm-up: a tiny fit
    and evaluate), then a small fit of this model: one-time costs in neither side's time."""
    trainer_warm_up(framework)
    x, y = synthetic(512, seed=1)
    if framework == "pytorch":
        torch_fit(x, y, np.arange(len(x)), np.arange(0), batch_size=32, epochs=1)
    else:
        build().fit(x.astype("float32"), y, batch_size=32, epochs=1, verbose=0)


def torch_fit(
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    train: np.ndarray[Any, Any],
    validation: np.ndarray[Any, Any],
    *,
    batch_size: int,
    epochs: int,
    ends: list[float] | None = None,
    started: float = 0.0,
) -> Any:
    """Ignite's supervised trainer on the arrays in memory, evaluated after each epoch on the train
    and validation sets, as the trainer does it."""
    import torch
    from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
    from torch.utils.data import DataLoader, TensorDataset

    model = build("pytorch")

    def loader(indices: np.ndarray[Any, Any], shuffle: bool) -> Any:
        inputs = torch.from_numpy(np.ascontiguousarray(x[indices], dtype=np.float32))
        labels = torch.from_numpy(np.ascontiguousarray(y[indices], dtype=np.int64))
        return DataLoader(TensorDataset(inputs, labels), batch_size=batch_size, shuffle=shuffle)

    trainer = create_supervised_trainer(model, model.optimizer(), model.loss_fn())
    evaluator = create_supervised_evaluator(model, metrics=model.metrics())
    train_eval = loader(train, False)
    val = loader(validation, False) if len(validation) else None

    @trainer.on(Events.EPOCH_COMPLETED)
    def report(engine: Any) -> None:
        evaluator.run(train_eval)
        if val is not None:
            evaluator.run(val)
        if ends is not None:
            ends.append(time.perf_counter() - started)

    trainer.run(loader(train, True), max_epochs=epochs)
    return model


@dataclass
class Measure:
    """One timed run: wall seconds, this process's CPU seconds, the end of each epoch (seconds from the start)."""

    seconds: float
    cpu_seconds: float
    epoch_ends: list[float]
    broker_cpu_seconds: float = 0.0
    sink_seconds: float = 0.0
    timeline: Timeline | None = None

    def epoch_durations(self) -> list[float]:
        return [b - a for a, b in zip([0.0, *self.epoch_ends], self.epoch_ends, strict=False)]


def baseline(
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    *,
    batch_size: int,
    epochs: int,
    validation_rate: float,
    test_rate: float,
    framework: str = "tensorflow",
) -> tuple[Measure, Any]:
    """``model.fit`` (or Ignite) on the train split with the validation split; the fitted model."""
    import keras

    train, validation, _ = split_indices(len(x), validation_rate, test_rate)
    if framework == "pytorch":
        from concurrent.futures import ThreadPoolExecutor

        from services.trainer.torch_training import configure_torch

        torch_ends: list[float] = []

        def in_a_thread() -> Any:
            # As the trainer does: a worker thread that sets its own thread count (OpenMP's is per thread).
            configure_torch(0, worker_threads())
            return torch_fit(
                x, y, train, validation, batch_size=batch_size, epochs=epochs, ends=torch_ends, started=started
            )

        cpu = time.process_time()
        started = time.perf_counter()
        with ThreadPoolExecutor(1) as pool:
            fitted = pool.submit(in_a_thread).result()
        return Measure(time.perf_counter() - started, time.process_time() - cpu, torch_ends), fitted
    x_train, y_train = x[train].astype("float32"), y[train]
    fit: dict[str, Any] = {"batch_size": batch_size, "epochs": epochs, "verbose": 0}
    if len(validation):
        fit["validation_data"] = (x[validation].astype("float32"), y[validation])
    model = build()
    ends: list[float] = []

    def on_epoch_end(epoch: int, logs: Any = None) -> None:
        ends.append(time.perf_counter() - started)

    cpu = time.process_time()
    started = time.perf_counter()
    model.fit(x_train, y_train, callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)], **fit)
    return Measure(time.perf_counter() - started, time.process_time() - cpu, ends), model


async def pipeline(
    settings: Settings,
    broker_pid: int,
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    *,
    batch_size: int,
    epochs: int,
    validation_rate: float,
    test_rate: float,
    partitions: int,
    framework: str = "tensorflow",
) -> Measure:
    """From the control message to TrainingFinished read back from the events topic."""
    import psutil

    await ensure_topics(settings)
    timeline = Timeline()
    recorder = Recorder(timeline, rf"result \d+: epoch {epochs}:|failed")
    trainer_log = logging.getLogger("kafkaml.trainer")
    trainer_log.addHandler(recorder)
    trainer_log.setLevel(logging.INFO)

    spec = JobSpec(
        job_id=f"bench-{uuid.uuid4().hex[:8]}",
        deployment_id=DEPLOYMENT_ID,
        framework=framework,
        models=[
            JobModel(result_id=RESULT_ID, model_id=1, name="mnist", code=TORCH_CODE, imports=TORCH_IMPORTS)
            if framework == "pytorch"
            else JobModel(result_id=RESULT_ID, model_id=1, name="mnist", code=MODEL_CODE)
        ],
        batch_size=batch_size,
        fit={"max_epochs": epochs} if framework == "pytorch" else {"epochs": epochs},
        evaluate={},
        confusion_matrix=False,
        data_timeout_s=600,
    )
    sink = AsyncRawSink(
        settings.brokers,
        f"{settings.topic_prefix}.mnist-synthetic",
        DEPLOYMENT_ID,
        data_type="uint8",
        label_type="uint8",
        data_reshape="28 28",
        label_reshape="1",
        validation_rate=validation_rate,
        test_rate=test_rate,
        control_topic=settings.control_topic,
        description="synthetic 28x28",
        partitions=partitions,
    )
    await sink.start()
    sending = time.perf_counter()
    for image, label in zip(x, y, strict=True):
        await sink.send(image, label)
    await sink.flush()
    sink_seconds = time.perf_counter() - sending

    job = asyncio.create_task(train_job(settings, spec))
    # Wait until the trainer scans the control topic for its message, then a little longer so
    # that it has caught up with it: what is timed is the control message onwards.
    while timeline.log_time(r"no data announced for deployment \d+ yet") is None:
        if job.done():
            raise SystemExit(f"the trainer ended before waiting for data: {job.result()}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)

    broker = psutil.Process(broker_pid)
    broker_cpu = sum(broker.cpu_times()[:2])
    cpu = time.process_time()
    started = time.monotonic()
    await sink.close()  # flushed already: this sends the control message
    timeline.logs.append((started, "control message sent"))
    # The reader of the events topic starts once fit is over, so that its polling does not
    # compete with training; it reads from the start of the topic and stamps what it sees.
    await asyncio.wait([asyncio.ensure_future(recorder.seen.wait()), job], return_when=asyncio.FIRST_COMPLETED)
    done = asyncio.Event()
    reader = asyncio.create_task(read_events(settings, timeline, done))
    await asyncio.wait_for(done.wait(), 1800)
    cpu_seconds = time.process_time() - cpu
    broker_seconds = sum(broker.cpu_times()[:2]) - broker_cpu
    ended = next(t for t, m in timeline.events if isinstance(m, TrainingFinished | TrainingFailed))
    statuses = await job
    await reader
    trainer_log.removeHandler(recorder)
    if statuses != {RESULT_ID: "finished"}:
        failed = [m for _, m in timeline.events if isinstance(m, TrainingFailed)]
        raise SystemExit(f"the training did not finish: {statuses} {failed}")
    fit_start = timeline.log_time(r"^training on")
    assert fit_start is not None
    epoch_ends = [t - fit_start for t, line in timeline.logs if re.search(r"result \d+: epoch \d+:", line)]
    return Measure(ended - started, cpu_seconds, epoch_ends, broker_seconds, sink_seconds, timeline)


def side_costs(model: Any, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], batch_size: int, rates: Any) -> None:
    """What the trainer's steps after fit cost on their own, measured on a baseline model."""
    from services.trainer.keras_training import _export

    def timed(what: str, run: Any) -> None:
        started = time.perf_counter()
        run()
        print(f"  {what:<60}{time.perf_counter() - started:7.2f} s")

    _, _, test = split_indices(len(x), rates["validation_rate"], rates["test_rate"])
    if len(test):
        x_test, y_test = x[test].astype("float32"), y[test]
        for when in ("first call", "second call", "third call, batch 1024"):
            size = 1024 if "1024" in when else batch_size
            timed(
                f"model.evaluate, {len(test):,} test samples, batch {size} ({when.split(',')[0]})",
                lambda size=size: model.evaluate(x_test, y_test, batch_size=size, verbose=0),
            )
    timed("export as .keras (the trainer's _export)", lambda: _export(model))


# --- the report -------------------------------------------------------------------------


def breakdown(timeline: Timeline, total: float) -> list[tuple[str, float]]:
    """Consecutive stages of the pipeline from its log lines and events (seconds), then references."""
    started = timeline.log_time(r"^control message sent$")
    assert started is not None
    marks = [
        ("control message found by the trainer", timeline.log_time(r"control message found")),
        ("read + decode", timeline.log_time(r"^read \d+ samples")),
        ("split", timeline.log_time(r"^split \(seed")),
        ("'training' status published", timeline.log_time(r"^training on")),
        ("model build + fit (to the last epoch's log line)", timeline.log_time(r"result \d+: epoch \d+", last=True)),
        ("evaluate on the test split", timeline.log_time(r"test metrics")),
        ("export + artifact publish", timeline.log_time(r"artifact stored")),
        ("TrainingFinished published", timeline.log_time(r"finished in")),
    ]
    stages = []
    previous = started
    for name, mark in marks:
        if mark is None:
            continue
        stages.append((name, mark - previous))
        previous = mark
    stages.append(("TrainingFinished read back", started + total - previous))
    return stages


def row(name: str, values: list[float], width: int = 9) -> str:
    return f"  {name:<52}" + "".join(f"{v:{width}.2f}" for v in values)


def run_framework(framework: str, args: argparse.Namespace) -> tuple[float, bool]:
    """Baselines and pipeline runs of one framework, and their report; (ratio, holds)."""
    print(f"=== {framework} ===")
    x, y = synthetic(args.samples)
    shape = {"batch_size": args.batch_size, "epochs": args.epochs}
    rates = {"validation_rate": args.validation_rate, "test_rate": args.test_rate}
    print(f"{args.samples:,} samples of 28x28 uint8, labels 0..9; {shape}, {rates}")
    warm_up(framework)

    baselines: list[Measure] = []
    runs: list[Measure] = []
    home = Path(tempfile.mkdtemp(prefix="kml-bench-", dir="/tmp"))
    try:
        with start_broker(home) as broker:
            for repeat in range(args.repeats):
                baselines.append(baseline(x, y, **shape, **rates, framework=framework)[0])
                print(f"baseline #{len(baselines)}: {baselines[-1].seconds:.2f} s", flush=True)
                prefix = f"bench{uuid.uuid4().hex[:6]}"
                settings = Settings(
                    home=home,
                    bootstrap_servers=broker.bootstrap_servers,
                    topic_prefix=prefix,
                    control_topic=f"{prefix}.control",
                )
                timed = pipeline(
                    settings, broker.pid, x, y, **shape, **rates, partitions=args.partitions, framework=framework
                )
                runs.append(asyncio.run(timed))
                print(f"pipeline #{repeat + 1}: {runs[-1].seconds:.2f} s", flush=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    last, fitted = baseline(x, y, **shape, **rates, framework=framework)
    baselines.append(last)
    print(f"baseline #{len(baselines)}: {last.seconds:.2f} s")

    print()
    for number, run in enumerate(runs, 1):
        assert run.timeline is not None
        read_line = run.timeline.log_line(r"^read \d+ samples")
        sent = f"{args.samples:,} samples in {run.sink_seconds:.2f} s ({args.samples / run.sink_seconds:,.0f}/s)"
        print(f"run {number}: the sink sent {sent}; trainer: {read_line}")
    print()
    print("pipeline, from the control message (seconds since the previous line), per run:")
    tables = [breakdown(run.timeline, run.seconds) for run in runs if run.timeline is not None]
    for index, (name, _) in enumerate(tables[0]):
        print(row(name, [table[index][1] for table in tables]))
    print("epoch durations (s): pipeline runs (from the 'training on' line: the first includes the model build), "
          "then baselines")  # fmt: skip
    for number, run in enumerate(runs, 1):
        print(row(f"pipeline #{number}", run.epoch_durations(), 7))
    for number, measure in enumerate(baselines, 1):
        print(row(f"baseline #{number}", measure.epoch_durations(), 7))
    print("CPU seconds (this process; the broker's in brackets):")
    for number, run in enumerate(runs, 1):
        print(f"  pipeline #{number}: {run.cpu_seconds:.2f} ({run.broker_cpu_seconds:.2f})")
    print("  baselines: " + ", ".join(f"{m.cpu_seconds:.2f}" for m in baselines))
    if framework == "tensorflow":
        print("on their own, on a baseline model:")
        side_costs(fitted, x, y, args.batch_size, rates)
    print()

    fit_seconds = statistics.median(m.seconds for m in baselines)
    pipeline_seconds = statistics.median(r.seconds for r in runs)
    read_lines = [r.timeline.log_line(r"^read \d+ samples") or "" for r in runs if r.timeline is not None]
    found = [float(m.group(1)) for line in read_lines if (m := re.search(r"\(([\d.]+) samples/s\)", line))]
    ingestion = statistics.median(found) if found else float("nan")
    ratio = pipeline_seconds / fit_seconds
    cpu_ratio = statistics.median(r.cpu_seconds for r in runs) / statistics.median(m.cpu_seconds for m in baselines)
    print(f"baseline in memory, median of {len(baselines)}:        {fit_seconds:8.2f} s  "
          f"{[round(m.seconds, 2) for m in baselines]}")  # fmt: skip
    print(f"pipeline, control → finished, median of {len(runs)}: {pipeline_seconds:8.2f} s  "
          f"{[round(r.seconds, 2) for r in runs]}")  # fmt: skip
    print(f"ratio:                                   {ratio:8.3f}  (target ≤ {TARGET_RATIO})")
    print(f"CPU-time ratio (this process):           {cpu_ratio:8.3f}")
    print(f"ingestion rate (read + decode):          {ingestion:8,.0f} samples/s")
    print()
    return ratio, ratio <= TARGET_RATIO


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", choices=("tensorflow", "pytorch", "both"), default="both")
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--validation-rate", type=float, default=0.1)
    parser.add_argument("--test-rate", type=float, default=0.1)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=2, help="pipeline runs, each after a baseline (plus one baseline at the end)"
    )
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threads = worker_threads()
    frameworks = ["tensorflow", "pytorch"] if args.framework == "both" else [args.framework]
    if "tensorflow" in frameworks:
        print(f"TensorFlow on {configure_tensorflow(0, threads)} with {threads} intra-op threads (the trainer's)")
    if "pytorch" in frameworks:
        from services.trainer.torch_training import configure_torch

        print(f"PyTorch on {configure_torch(0, threads)} with {threads} threads (the trainer's setting)")
    results = {framework: run_framework(framework, args) for framework in frameworks}
    print(f"{'path':<12}{'stream/memory':>15}  target ≤ {TARGET_RATIO}")
    for framework, (ratio, holds) in results.items():
        print(f"{framework:<12}{ratio:>15.3f}  {'holds' if holds else 'does not hold'}")
    return 0 if all(holds for _, holds in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
