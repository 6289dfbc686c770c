"""The validator sandbox: model code built in a child process, with limits.

What does not need a child process (error messages, line numbers, summaries)
is tested in-process through shared.usercode, which is much faster; the sandbox
tests cover what only a separate process can show (limits, crashes, the JSON
answer). Children import TensorFlow, so one started Sandbox is shared.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator

import psutil
import pytest
import pytest_asyncio

from services.trainer import sandbox
from services.trainer.sandbox import Sandbox, SandboxError
from shared import usercode
from shared.events.catalog import Framework, ModelDefinition
from shared.usercode import ModelCodeError, build_model, summarize, validate_definition

KERAS_EXAMPLE = """\
model = tf.keras.models.Sequential([
  tf.keras.layers.Flatten(input_shape=(8, 8)),
  tf.keras.layers.Dense(128, activation='relu'),
  tf.keras.layers.Dense(10, activation='softmax')
])
model.compile(
    optimizer=tf.keras.optimizers.Adam(0.001),
    loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
)
"""

PYTORCH_IMPORTS = "import torch\nimport torch.nn as nn\nfrom ignite.metrics import Accuracy, Loss"

PYTORCH_EXAMPLE = """\
class NeuralNetwork(nn.Module):
    def __init__(self):
        super(NeuralNetwork, self).__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(8*8, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
            nn.Softmax()
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits

    def loss_fn(self):
        return nn.CrossEntropyLoss()

    def optimizer(self):
        return torch.optim.Adam(model.parameters(), lr=0.001)

    def metrics(self):
        val_metrics = {
            "accuracy": Accuracy(),
            "loss": Loss(self.loss_fn())
         }
        return val_metrics

model = NeuralNetwork()
"""

EXAMPLE_PARAMETERS = 8 * 8 * 128 + 128 + 128 * 10 + 10  # 9610

# The compile( of line 6 is never closed: Python reports the opening bracket's line.
KERAS_UNCLOSED = KERAS_EXAMPLE.rstrip().removesuffix(")") + "\n"
KERAS_UNCLOSED_LINE = 6


def definition(framework: Framework, code: str, imports: str = "") -> ModelDefinition:
    return ModelDefinition(name="m", framework=framework, code=code, imports=imports)


def code_error(framework: Framework, code: str, imports: str = "") -> ModelCodeError:
    with pytest.raises(ModelCodeError) as caught:
        validate_definition(definition(framework, code, imports))
    return caught.value


# --- shared.usercode, in-process ----------------------------------------------


def test_keras_example_summary() -> None:
    summary = validate_definition(definition("tensorflow", KERAS_EXAMPLE))

    assert summary.parameters == EXAMPLE_PARAMETERS
    assert summary.trainable_parameters == EXAMPLE_PARAMETERS
    assert summary.input_shapes == [[None, 8, 8]]
    assert summary.output_shapes == [[None, 10]]
    assert [(la.type, la.output_shape, la.parameters) for la in summary.layers] == [
        ("Flatten", [None, 64], 0),
        ("Dense", [None, 128], 8 * 8 * 128 + 128),
        ("Dense", [None, 10], 128 * 10 + 10),
    ]


@pytest.mark.parametrize("imports", ["", PYTORCH_IMPORTS])
def test_pytorch_example_summary(imports: str) -> None:
    summary = validate_definition(definition("pytorch", PYTORCH_EXAMPLE, imports))

    assert summary.parameters == EXAMPLE_PARAMETERS
    assert summary.trainable_parameters == EXAMPLE_PARAMETERS
    assert summary.input_shapes == [[None, 64]]  # inferred from the first Linear
    assert summary.output_shapes == [[None, 10]]
    assert [(la.name, la.type, la.parameters) for la in summary.layers] == [
        ("flatten", "Flatten", 0),
        ("linear_relu_stack.0", "Linear", 8 * 8 * 128 + 128),
        ("linear_relu_stack.1", "ReLU", 0),
        ("linear_relu_stack.2", "Linear", 128 * 10 + 10),
        ("linear_relu_stack.3", "Softmax", 0),
    ]
    assert summary.layers[2].output_shape == [None, 128]


def test_build_model_returns_a_trainable_model_and_its_namespace() -> None:
    import torch

    model, namespace = build_model(definition("pytorch", PYTORCH_EXAMPLE))
    assert namespace["model"] is model
    # Upstream's optimizer() reads the global `model`: the namespace makes it work.
    assert isinstance(model.optimizer(), torch.optim.Adam)
    model.train()
    summarize("pytorch", model, namespace)
    assert model.training  # the dummy forward put the mode back


def test_pytorch_declared_input_shape_wins() -> None:
    code = PYTORCH_EXAMPLE + "input_shape = (8, 8)\n"
    summary = validate_definition(definition("pytorch", code))
    assert summary.input_shapes == [[None, 8, 8]]
    assert summary.output_shapes == [[None, 10]]


def test_pytorch_conv_input_has_unknown_spatial_dims_and_no_output_shape() -> None:
    code = PYTORCH_EXAMPLE.replace("self.flatten = nn.Flatten()", "self.conv = nn.Conv2d(3, 4, 3)").replace(
        "x = self.flatten(x)", "x = self.conv(x).flatten(1)[:, :64]"
    )
    summary = validate_definition(definition("pytorch", code))
    assert summary.input_shapes == [[None, 3, None, None]]
    assert summary.output_shapes == []


def test_pytorch_failing_dummy_forward_is_not_an_error() -> None:
    code = PYTORCH_EXAMPLE.replace("x = self.flatten(x)", "x = self.flatten(x[0:0, :3])")
    summary = validate_definition(definition("pytorch", code))
    assert summary.parameters == EXAMPLE_PARAMETERS
    assert summary.output_shapes == []


def test_syntax_error_gives_the_line_of_the_unclosed_bracket() -> None:
    error = code_error("tensorflow", KERAS_UNCLOSED)
    assert error.field == "code"
    assert error.line == KERAS_UNCLOSED_LINE
    assert error.detail == f"SyntaxError: '(' was never closed (line {KERAS_UNCLOSED_LINE})"


def test_missing_model_variable() -> None:
    error = code_error("tensorflow", "net = 1\n")
    assert error.detail == "the code must assign the model to a variable named `model`"
    assert error.line is None


def test_pytorch_model_without_its_methods_names_all_missing_ones() -> None:
    code = "class Net(nn.Module):\n    def forward(self, x):\n        return x\n\nmodel = Net()\n"
    error = code_error("pytorch", code)
    assert "loss_fn(), optimizer() and metrics()" in error.detail
    assert "(missing: loss_fn, optimizer, metrics)" in error.detail

    code = code.replace("        return x\n", "        return x\n    def loss_fn(self):\n        return nn.MSELoss()\n")
    assert "(missing: optimizer, metrics)" in code_error("pytorch", code).detail


def test_pytorch_optimizer_of_the_wrong_type() -> None:
    code = PYTORCH_EXAMPLE.replace("return torch.optim.Adam(model.parameters(), lr=0.001)", "return 0.001")
    assert "must return a torch.optim.Optimizer" in code_error("pytorch", code).detail


def test_pytorch_metrics_must_be_ignite_metrics() -> None:
    code = PYTORCH_EXAMPLE.replace('"accuracy": Accuracy(),', '"accuracy": 1,')
    assert "wrong entries: accuracy" in code_error("pytorch", code).detail


def test_runtime_error_gives_type_message_and_line() -> None:
    error = code_error("tensorflow", "layers = [1, 2]\n\nmodel = layers[5]\n")
    assert error.detail == "IndexError: list index out of range (line 3)"
    assert (error.field, error.line) == ("code", 3)


def test_runtime_error_inside_a_user_method_points_into_it() -> None:
    # loss_fn's body (line 18 of the example) raises when the check calls it.
    code = PYTORCH_EXAMPLE.replace("return nn.CrossEntropyLoss()", "return nn.NoSuchLoss()")
    error = code_error("pytorch", code)
    assert error.line == 18
    assert error.detail.startswith("model.loss_fn() failed: AttributeError:")


def test_error_in_imports_is_reported_on_the_imports_field() -> None:
    error = code_error("tensorflow", KERAS_EXAMPLE, imports="import os\nfrom os import (path\n")
    assert (error.field, error.line) == ("imports", 2)
    assert error.detail.startswith("SyntaxError:")

    error = code_error("pytorch", PYTORCH_EXAMPLE, imports="import torch\nimport not_a_module_at_all\n")
    assert (error.field, error.line) == ("imports", 2)
    assert error.detail.startswith("ModuleNotFoundError:")


def test_exit_in_user_code_is_an_error_not_an_exit() -> None:
    error = code_error("tensorflow", "import sys\nsys.exit(4)\n")
    assert (error.detail, error.line) == ("SystemExit: 4 (line 2)", 2)


def test_keras_model_must_be_built_and_compiled_to_train_alone() -> None:
    unbuilt = "model = keras.Sequential([keras.layers.Dense(10)])\nmodel.compile(optimizer='adam', loss='mse')\n"
    assert "not built" in code_error("tensorflow", unbuilt).detail

    # Validation accepts an uncompiled model: it may be a sub-model of a distributed chain
    # (upstream's examples do not compile those); training one alone needs the compile.
    uncompiled = KERAS_EXAMPLE.split("model.compile(")[0]
    assert validate_definition(definition("tensorflow", uncompiled)).parameters == 9610
    with pytest.raises(ModelCodeError) as caught:
        usercode.build_model(definition("tensorflow", uncompiled))
    assert "call model.compile(...) with an optimizer, a loss and metrics" in caught.value.detail

    assert "must be a Keras model" in code_error("tensorflow", "model = 3\n").detail


def test_namespaces_hold_upstream_names() -> None:
    assert {"tf", "keras", "np"} <= set(usercode.base_namespace("tensorflow"))
    assert {
        "torch", "nn", "F", "np", "Accuracy", "Loss", "Precision", "Recall",
        "ConfusionMatrix", "MeanSquaredError", "MeanAbsoluteError",
    } <= set(usercode.base_namespace("pytorch"))  # fmt: skip


def test_child_environment_drops_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"DATABASE_URL": "x", "KAFKAML_DB_PASSWORD": "x", "api_token": "x", "KUBERNETES_PORT": "x", "PATH": "/b"}
    monkeypatch.setattr(os, "environ", environ)
    sandbox._prepare_child_environment()
    assert environ["PATH"] == "/b"
    assert not {"DATABASE_URL", "KAFKAML_DB_PASSWORD", "api_token", "KUBERNETES_PORT"} & set(environ)
    assert environ["CUDA_VISIBLE_DEVICES"] == ""
    assert environ["OMP_NUM_THREADS"] == "1"


def test_child_environment_is_the_allow_list_without_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    # A validation child needs no Kafka: not even the worker settings the allow-list lets through.
    environ = {"HOME": "/h", "LC_ALL": "C", "KAFKAML_BOOTSTRAP_SERVERS": "b:9092", "KAFKAML_ALIVE_FILE": "/a"}
    monkeypatch.setattr(os, "environ", environ)
    sandbox._prepare_child_environment()
    assert environ["LC_ALL"] == "C"
    assert not {"HOME", "KAFKAML_BOOTSTRAP_SERVERS", "KAFKAML_ALIVE_FILE"} & set(environ)
    assert environ["KERAS_BACKEND"] == "tensorflow"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"status": "ok"}',
        b'{"status": "ok", "summary": {"layers": 3}}',
        b'{"status": "?"}',
    ],
)
def test_malformed_child_answer_is_unreadable(raw: bytes) -> None:
    with pytest.raises(ModelCodeError, match="the sandbox returned an unreadable answer"):
        sandbox._read_answer(raw)


# --- the sandbox: child processes --------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_sandbox() -> AsyncIterator[Sandbox]:
    box = Sandbox(timeout_s=60)
    await box.start()
    yield box
    await box.close()


def _sandbox_children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.asyncio(loop_scope="module")
async def test_sandbox_validates_both_examples_concurrently(shared_sandbox: Sandbox) -> None:
    keras, torch = await asyncio.gather(
        shared_sandbox.validate(definition("tensorflow", KERAS_EXAMPLE)),
        shared_sandbox.validate(definition("pytorch", PYTORCH_EXAMPLE, PYTORCH_IMPORTS)),
    )
    assert keras.parameters == EXAMPLE_PARAMETERS
    assert keras.input_shapes == [[None, 8, 8]]
    assert keras.output_shapes == [[None, 10]]
    assert torch.parameters == EXAMPLE_PARAMETERS
    assert torch.output_shapes == [[None, 10]]


@pytest.mark.asyncio(loop_scope="module")
async def test_sandbox_reports_the_syntax_error_line(shared_sandbox: Sandbox) -> None:
    with pytest.raises(ModelCodeError) as caught:
        await shared_sandbox.validate(definition("tensorflow", KERAS_UNCLOSED))
    assert (caught.value.field, caught.value.line) == ("code", KERAS_UNCLOSED_LINE)
    assert "'(' was never closed" in caught.value.detail


@pytest.mark.asyncio(loop_scope="module")
async def test_sandbox_reports_errors_in_imports(shared_sandbox: Sandbox) -> None:
    with pytest.raises(ModelCodeError) as caught:
        await shared_sandbox.validate(definition("pytorch", PYTORCH_EXAMPLE, "import torch\nimport = 3\n"))
    assert (caught.value.field, caught.value.line) == ("imports", 2)


@pytest.mark.asyncio(loop_scope="module")
async def test_sandbox_reports_a_child_that_exits(shared_sandbox: Sandbox) -> None:
    with pytest.raises(ModelCodeError, match="exit code 3"):
        await shared_sandbox.validate(definition("pytorch", "import os\nos._exit(3)\n"))


@pytest.mark.asyncio(loop_scope="module")
async def test_user_code_sees_no_gpu_and_runs_in_a_fresh_child(shared_sandbox: Sandbox) -> None:
    # The error message is the only channel out of the child, so use it. A mark left on a
    # module by one job must not be there for the next: each job is a fresh process (its
    # pid is 1 where it has a PID namespace of its own, so pids do not tell).
    code = (
        "import os, numpy\nseen = getattr(numpy, '_kafkaml_mark', None)\nnumpy._kafkaml_mark = 1\n"
        "raise RuntimeError(f\"gpus=[{os.environ['CUDA_VISIBLE_DEVICES']}] seen={seen} ppid={os.getppid()}\")\n"
    )
    for _ in range(2):
        with pytest.raises(ModelCodeError) as caught:
            await shared_sandbox.validate(definition("pytorch", code))
        found = re.search(r"gpus=\[(.*)\] seen=(\w+) ppid=(\d+)", caught.value.detail)
        assert found is not None, caught.value.detail
        assert found.group(1) == ""
        assert found.group(2) == "None"
        assert int(found.group(3)) != os.getpid()


@pytest.mark.asyncio(loop_scope="module")
async def test_sandbox_stops_an_endless_loop() -> None:
    before = _sandbox_children()
    box = Sandbox(timeout_s=3)
    try:
        await box.warm(["pytorch"])  # the framework's import, once
        started = time.monotonic()
        with pytest.raises(ModelCodeError, match="did not finish within 3 s"):
            await box.validate(definition("pytorch", "while True:\n    pass\n"))
        # 3 s + the kill.
        assert time.monotonic() - started < 10
    finally:
        await box.close()
    assert _sandbox_children() - before == set()


@pytest.mark.asyncio(loop_scope="module")
async def test_sandbox_stops_a_memory_hog() -> None:
    # A PyTorch child holds ~300 MB once torch is imported (TensorFlow ~570 MB):
    # the limit counts the whole process, so leave room above that.
    box = Sandbox(memory_mb=500, timeout_s=60)
    hog = "import time\nx = []\nfor _ in range(200):\n    x.append(bytearray(20_000_000))\n    time.sleep(0.01)\n"
    try:
        with pytest.raises(ModelCodeError, match="memory limit of 500 MB"):
            await box.validate(definition("pytorch", hog))
    finally:
        await box.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_closed_sandbox_refuses_work() -> None:
    box = Sandbox()
    await box.close()
    with pytest.raises(SandboxError):
        await box.validate(definition("pytorch", PYTORCH_EXAMPLE))
