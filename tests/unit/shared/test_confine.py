"""shared.confine through its command wrapper: a real confined process, without any framework.

Each case runs ``python -m shared.confine JSON -- python -c CODE`` and reads
what the confined program printed; a fraction of a second each.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from shared import confine
from shared.confine import Confinement, Limits

ROOT = Path(__file__).resolve().parents[3]
IS_ROOT = os.geteuid() == 0
NAMESPACES = confine.probe()


def run_confined(confinement: Confinement, code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        confinement.command([sys.executable, "-c", code]),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def test_confinement_travels_as_json() -> None:
    original = Confinement(
        limits=Limits(processes=5, cpu_s=None), run_as=(1000, 1001), work_dir="/w", network=False, hidden=("/h",)
    )
    assert Confinement.from_json(original.to_json()) == original
    assert Confinement.from_json(Confinement().to_json()) == Confinement()


@pytest.mark.parametrize("pid_namespace", [True, False])
def test_a_setsid_grandchild_is_killed_when_the_program_ends(pid_namespace: bool) -> None:
    # The classic escape: fork, setsid in the child, fork again, leave the grandchild behind.
    marker = f"# {uuid.uuid4()}"  # in the command line of the program and of its forks
    code = (
        "import os, time\n"
        "r, w = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.write(w, b'up')\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        f"os.read(r, 2)\n{marker}\n"
    )
    started = time.monotonic()
    result = run_confined(Confinement(pid_namespace=pid_namespace, read_only=()), code)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20  # not the grandchild's 60 s
    assert running_with(marker) == []


@pytest.mark.skipif(not NAMESPACES["pid"], reason="this kernel or user may not create a PID namespace")
def test_a_stop_request_before_the_program_handles_it_is_held_until_it_does() -> None:
    # The program is its PID namespace's init: the kernel would drop a SIGTERM it has no handler
    # for yet (a worker's interpreter still starting), and only the launcher's SIGKILL would end it.
    code = (
        "import signal, sys, time\n"
        "time.sleep(1.0)\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
        "time.sleep(30)\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    process = subprocess.Popen(
        Confinement(pid_namespace=True, read_only=()).command([sys.executable, "-c", code]), env=env, cwd=ROOT
    )
    time.sleep(0.3)  # the supervisor runs, the program does not handle SIGTERM yet
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 7  # its own handler ran: the request was delivered, once
    assert time.monotonic() - started < 10  # not the program's 30 s


def running_with(marker: str) -> list[int]:
    """Pids of live processes whose command line holds ``marker``, after a moment to die."""
    deadline = time.monotonic() + 5
    while True:
        found = [
            p.pid
            for p in psutil.process_iter(["cmdline", "status"])
            if p.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(p.info["cmdline"] or [])
        ]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_the_program_gets_its_limits_a_private_folder_and_a_clean_path(tmp_path: Path) -> None:
    code = (
        "import json, os, resource, sys\n"
        "print(json.dumps({'cwd': os.getcwd(), 'home': os.environ['HOME'], 'tmp': os.environ['TMPDIR'],\n"
        "  'safe': os.environ.get('PYTHONSAFEPATH'), 'path': sys.path,\n"
        "  'limits': {n: resource.getrlimit(getattr(resource, n)) for n in\n"
        "    ('RLIMIT_NPROC', 'RLIMIT_AS', 'RLIMIT_FSIZE', 'RLIMIT_NOFILE', 'RLIMIT_CPU', 'RLIMIT_CORE')}}))\n"
    )
    limits = Limits(processes=40, address_space_mb=4096, file_size_mb=8, open_files=100, cpu_s=30)
    result = run_confined(Confinement(limits=limits, work_dir=str(tmp_path), read_only=()), code)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["cwd"] == seen["home"] == seen["tmp"] == str(tmp_path)
    assert seen["safe"] == "1"
    assert "" not in seen["path"] and str(tmp_path) not in seen["path"]
    assert seen["limits"] == {
        "RLIMIT_NPROC": [40, 40],
        "RLIMIT_AS": [4096 * 2**20] * 2,
        "RLIMIT_FSIZE": [8 * 2**20] * 2,
        "RLIMIT_NOFILE": [100, 100],
        "RLIMIT_CPU": [30, 35],
        "RLIMIT_CORE": [0, 0],
    }


def test_a_file_larger_than_the_limit_cannot_be_written(tmp_path: Path) -> None:
    code = "try:\n    open('big', 'wb').write(b'x' * (3 * 2**20))\nexcept OSError as e:\n    print(e.errno)\n"
    result = run_confined(Confinement(limits=Limits(file_size_mb=1), work_dir=str(tmp_path), read_only=()), code)
    assert result.stdout.strip() == "27"  # EFBIG
    assert (tmp_path / "big").stat().st_size == 2**20


@pytest.mark.skipif(not NAMESPACES["network"], reason="this kernel or user may not create a network namespace")
def test_no_network_when_asked() -> None:
    code = (
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=2)\n"
        "except OSError as e:\n    print(e.errno)\n"
    )
    assert run_confined(Confinement(network=False, read_only=()), code).stdout.strip() == "101"  # ENETUNREACH


@pytest.mark.skipif(not (IS_ROOT and NAMESPACES["mount"]), reason="read-only mounts need root and a mount namespace")
def test_the_import_path_is_read_only(tmp_path: Path) -> None:
    folder = tmp_path / "code"
    folder.mkdir()
    code = f"try:\n    open({str(folder / 'tensorflow.py')!r}, 'w')\nexcept OSError as e:\n    print(e.errno)\n"
    result = run_confined(Confinement(read_only=(str(folder),)), code)
    assert result.stdout.strip() == "30"  # EROFS
    assert not (folder / "tensorflow.py").exists()


@pytest.mark.skipif(not (IS_ROOT and NAMESPACES["mount"]), reason="hiding a folder needs root and a mount namespace")
def test_a_hidden_folder_is_empty_for_the_program(tmp_path: Path) -> None:
    secret = tmp_path / "home"
    secret.mkdir()
    (secret / "stack.json").write_text('{"token": "t"}')
    code = f"import os\nprint(os.listdir({str(secret)!r}))\n"
    result = run_confined(Confinement(hidden=(str(secret),)), code)
    assert result.stdout.strip() == "[]", result.stderr
    assert (secret / "stack.json").exists()  # here it is still there


@pytest.mark.skipif(not IS_ROOT, reason="changing uid needs root")
def test_privileges_are_dropped_and_processes_limited(tmp_path: Path) -> None:
    from shared.stack.sandboxuser import code_folders, open_for_traversal

    # As the stack does before it runs user code as another user (an interpreter under /root).
    open_for_traversal(code_folders())
    nobody = (65534, 65534)
    work = confine.make_work_dir(str(tmp_path), nobody)
    code = (
        "import os\nprint(os.getuid(), os.getgid(), os.getgroups())\nn = 0\ntry:\n"
        "    for _ in range(50):\n        if os.fork() == 0:\n            import time; time.sleep(5); os._exit(0)\n"
        "        n += 1\nexcept OSError as e:\n    print(n, e.errno)\n"
    )
    result = run_confined(Confinement(run_as=nobody, work_dir=work, limits=Limits(processes=8), read_only=()), code)
    ids, forks = result.stdout.strip().splitlines()
    assert ids == "65534 65534 []"
    started, errno = map(int, forks.split())
    assert started < 8 and errno == 11  # EAGAIN: the uid's process limit
    confine.remove_work_dir(work)


def test_a_work_dir_is_removed_with_what_the_code_locked(tmp_path: Path) -> None:
    work = Path(confine.make_work_dir(str(tmp_path)))
    (work / "locked").mkdir()
    (work / "locked" / "f").write_text("x")
    (work / "locked").chmod(0)
    assert oct(work.stat().st_mode & 0o777) == "0o700"
    confine.remove_work_dir(str(work))
    assert not work.exists()


def test_limits_are_hard() -> None:
    # soft = hard: the code cannot raise them back.
    assert all(soft == hard for which, soft, hard in Limits().rlimits() if which != resource.RLIMIT_CPU)
