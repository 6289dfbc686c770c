"""The sandbox holds: hostile model code is contained, and leaves nothing for the next validation.

Real zygotes and jobs (PyTorch: the faster import); one Sandbox for the
module. Each test is a way out that model code could try.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import pytest_asyncio

from services.trainer.sandbox import Sandbox
from shared import confine
from shared.confine import Confinement, Limits
from shared.events.catalog import ModelDefinition
from shared.usercode import ModelCodeError

ROOT = Path(__file__).resolve().parents[3]
PYTORCH_EXAMPLE = ModelDefinition.model_validate_json((ROOT / "examples/models/pytorch_digits.json").read_text()).code
NAMESPACES = confine.probe()
IS_ROOT = os.geteuid() == 0
PROCESSES = 16
NOBODY = (65534, 65534)

pytestmark = pytest.mark.asyncio(loop_scope="module")


def definition(code: str, framework: str = "pytorch") -> ModelDefinition:
    return ModelDefinition.model_validate({"name": "m", "framework": framework, "code": code})


async def error_of(box: Sandbox, code: str) -> str:
    with pytest.raises(ModelCodeError) as caught:
        await box.validate(definition(code))
    return caught.value.detail


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def box() -> AsyncIterator[Sandbox]:
    confinement = Confinement(network=False, limits=Limits(processes=PROCESSES))
    sandbox = Sandbox(timeout_s=30, confinement=confinement)
    await sandbox.warm(["pytorch"])
    yield sandbox
    await sandbox.close()


def named(name: str) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["name", "status"])
        if p.info["name"] == name and p.info["status"] != psutil.STATUS_ZOMBIE
    ]


def below_us() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


FORK_BOMB = """\
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError as e:
    raise RuntimeError(f"uid={os.getuid()} forked {n}: {e}")
"""


async def test_a_fork_bomb_is_stopped_and_the_next_validation_answers(box: Sandbox) -> None:
    before = below_us()
    started = time.monotonic()
    detail = await error_of(box, FORK_BOMB)
    assert f"more than the limit of {PROCESSES} processes" in detail
    assert time.monotonic() - started < 10
    assert below_us() - before == set()  # every fork is gone
    started = time.monotonic()
    summary = await box.validate(definition(PYTORCH_EXAMPLE))
    assert summary.parameters == 9610
    assert time.monotonic() - started < 10


@pytest.mark.skipif(not IS_ROOT, reason="giving model code a uid of its own needs root")
async def test_under_its_own_uid_the_kernel_refuses_the_forks(box: Sandbox, tmp_path: Path) -> None:
    # The confinement travels with each job: the same warm zygote serves this one.
    usual, usual_root = box.confinement, box.work_root
    box.confinement, box.work_root = replace(usual, run_as=NOBODY), str(tmp_path)
    try:
        detail = await error_of(box, FORK_BOMB)
        found = re.search(r"uid=(\d+) forked (\d+): \[Errno 11\]", detail)
        assert found is not None, detail
        assert int(found.group(1)) == NOBODY[0] and int(found.group(2)) < PROCESSES
        # And the model still builds as that uid, in a folder of its own that goes afterwards.
        assert (await box.validate(definition(PYTORCH_EXAMPLE))).parameters == 9610
        assert await asyncio.to_thread(os.listdir, tmp_path) == []
    finally:
        box.confinement, box.work_root = usual, usual_root


async def test_a_setsid_grandchild_is_killed_when_the_validation_ends(box: Sandbox) -> None:
    name = f"k{uuid.uuid4().hex[:14]}"  # its process name (15 characters at most)
    code = (
        "import ctypes, os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        ctypes.CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(1.0)\n"
        "raise RuntimeError('left a grandchild')\n"
    )
    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.extend(await asyncio.to_thread(named, name))
            await asyncio.sleep(0.1)

    watcher = asyncio.ensure_future(watch())
    try:
        assert "left a grandchild" in await error_of(box, code)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert seen, "the grandchild never ran: the test would prove nothing"
    for pid in set(seen):
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).wait(5)  # raises TimeoutExpired if it is still alive
    assert named(name) == []


async def test_what_one_validation_writes_the_next_does_not_see(box: Sandbox) -> None:
    module = f"kafkaml_planted_{uuid.uuid4().hex[:8]}"
    plant = (
        "import os, sys\n"
        f"open('tensorflow.py', 'w').write('X = 1')\nopen('{module}.py', 'w').write('X = 1')\n"
        "planted = []\n"
        "for d in sys.path:\n"
        "    try:\n"
        f"        open(os.path.join(d, '{module}.py'), 'w').write('X = 1')\n"
        "        planted.append(d)\n"
        "    except OSError:\n"
        "        pass\n"
        "raise RuntimeError(f'cwd={os.getcwd()} planted={planted}')\n"
    )
    written: list[str] = [os.getcwd(), *sys.path]
    try:
        detail = await error_of(box, plant)
        found = re.search(r"cwd=(\S+) planted=(\[.*\])", detail)
        assert found is not None, detail
        first_cwd = found.group(1)
        written.append(first_cwd)
        if IS_ROOT and NAMESPACES["mount"]:
            assert found.group(2) == "[]"  # the import path is read-only
        look = (
            "import importlib.util, os\n"
            f"raise RuntimeError(f\"found={{importlib.util.find_spec('{module}') is not None}} "
            f"left={{os.path.exists('{first_cwd}')}} here={{os.listdir('.')}}\")\n"
        )
        assert "found=False left=False here=[]" in await error_of(box, look)
        assert not await asyncio.to_thread(os.path.exists, first_cwd)
    finally:  # what main's sandbox would have left behind
        for folder in written:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, f"{module}.py"))


@pytest.mark.skipif(not NAMESPACES["network"], reason="no network namespace here: the sandbox cannot cut it off")
async def test_the_network_is_cut_off_during_validation(box: Sandbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "raise RuntimeError('connected')\n"
        )
        detail = await error_of(box, code)
    assert "Network is unreachable" in detail, detail


@pytest.mark.asyncio(loop_scope="module")
async def test_the_validator_confines_as_its_settings_say() -> None:
    from services.trainer.validator import confinement_for
    from shared.settings import Settings

    default = confinement_for(Settings())
    assert default.network is False and default.run_as is None
    assert default.limits == Limits(processes=64, address_space_mb=8192, file_size_mb=64, open_files=256, cpu_s=120)
    chosen = confinement_for(Settings(validation_uid=1234, validation_processes=9, validation_cpu_s=7))
    assert chosen.run_as == (1234, 1234)
    assert (chosen.limits.processes, chosen.limits.cpu_s) == (9, 7)
    assert confinement_for(Settings(validation_uid=1234, validation_gid=99)).run_as == (1234, 99)


ORPHAN_SCRIPT = """\
import asyncio, sys
from services.trainer.sandbox import Sandbox
from shared.events.catalog import ModelDefinition

CODE = '''import ctypes, os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        ctypes.CDLL(None).prctl(15, NAME, 0, 0, 0)
        time.sleep(120)
    os._exit(0)
ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # and no parent-death signal for the job itself
time.sleep(120)
'''

async def main():
    sandbox = Sandbox(timeout_s=100)
    code = CODE.replace("NAME", repr(sys.argv[1].encode()))
    await sandbox.validate(ModelDefinition(name="m", framework="pytorch", code=code))

if __name__ == "__main__":
    asyncio.run(main())
"""


@pytest.mark.asyncio(loop_scope="module")
async def test_a_killed_validator_leaves_no_process_of_the_code(tmp_path: Path) -> None:
    # What `kafkaml down` (or a crash) does to a validator in the middle of a validation.
    name = f"k{uuid.uuid4().hex[:14]}"
    script = tmp_path / "validator.py"
    await asyncio.to_thread(script.write_text, ORPHAN_SCRIPT)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(sys.executable, str(script), name, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not await asyncio.to_thread(named, name):
            assert process.returncode is None, "the validator script ended"
            assert time.monotonic() < deadline, "the grandchild never ran"
            await asyncio.sleep(0.2)
        validator = psutil.Process(process.pid)
        below = validator.children(recursive=True)
    finally:
        process.kill()
        await process.wait()
    _, alive = await asyncio.to_thread(psutil.wait_procs, below, 10)
    assert [p.pid for p in alive] == [] and named(name) == []
