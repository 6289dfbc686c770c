"""Idle benchmark: what a stack that nobody uses costs (CPU and memory), and a command after idle.

Run from the repository root (it starts its own stack in a temporary home)::

    .venv/bin/python tests/perf/bench_idle.py [--seconds 60] [--settle 30] [--idle-wait-ms N]

``kafkaml up --detach`` on a fresh ``KAFKAML_HOME``; after ``--settle``
seconds (group joins, the first housekeeping), the CPU time of every process
of the stack (``up``, the broker, PostgreSQL, every service, and what they
spawned) is summed over ``--seconds`` with psutil and divided by the wall
time: the share of one core the idle stack takes. The resident memory of the
same processes is summed at the end (PostgreSQL's shared memory is counted
once per backend: an upper bound). Then the first command after the idle
time, and a few more, are timed end to end (``DELETE`` of a model that does
not exist: API → orchestrator → the API's outcome listener), because a quiet
idle stack must not make its first answer slow. ``kafkaml down`` always runs.

Target: < 5% of one core, summed over the stack's processes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

import httpx  # noqa: E402
import psutil  # noqa: E402


def kafkaml(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_tree(info: dict[str, Any]) -> list[psutil.Process]:
    """``up``, the broker, PostgreSQL, and everything below each (every child runs in a session
    of its own; PostgreSQL may have been started apart from ``up``)."""
    found: dict[int, psutil.Process] = {}
    for pid in (info["pid"], info.get("broker_pid"), info.get("postgres_pid")):
        if pid is None:
            continue
        try:
            root = psutil.Process(pid)
            found.update((p.pid, p) for p in [root, *root.children(recursive=True)])
        except psutil.Error:
            continue
    return list(found.values())


def label(process: psutil.Process) -> str:
    try:
        cmdline = process.cmdline()
    except psutil.Error:
        return f"pid {process.pid}"
    if "-m" in cmdline:
        return cmdline[cmdline.index("-m") + 1] + (" " + cmdline[-1] if cmdline[-1] == "up" else "")
    if len(cmdline) > 1 and cmdline[1] == "-c":
        return "multiprocessing child (the validator's sandbox)"
    if len(cmdline) > 1 and cmdline[1].endswith(".py"):
        return Path(cmdline[1]).stem
    name = Path(cmdline[0]).name if cmdline else process.name()
    return "postgres" if name.startswith("postgres") else name


def cpu_seconds(process: psutil.Process) -> float | None:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def measure(info: dict[str, Any], seconds: float) -> tuple[float, dict[str, float], int]:
    """(share of one core over ``seconds``, share by process kind, resident bytes at the end)."""
    before = {p.pid: (p, cpu_seconds(p)) for p in stack_tree(info)}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    by_kind: dict[str, float] = {}
    rss = 0
    for process in stack_tree(info):
        now = cpu_seconds(process)
        if now is None:
            continue
        _, then = before.get(process.pid, (process, 0.0))  # a process born meanwhile counts whole
        kind = label(process)
        by_kind[kind] = by_kind.get(kind, 0.0) + (now - (then or 0.0)) / elapsed
        with contextlib.suppress(psutil.Error):
            rss += process.memory_info().rss
    return sum(by_kind.values()), by_kind, rss


def command_seconds(api: httpx.Client) -> float:
    started = time.perf_counter()
    answer = api.delete("/models/987654321")
    elapsed = time.perf_counter() - started
    assert answer.status_code == 404, answer.text
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after up before measuring")
    parser.add_argument("--idle-wait-ms", type=int, default=None, help="KAFKAML_FETCH_IDLE_WAIT_MS for the stack")
    parser.add_argument(
        "--long-idle-wait-ms", type=int, default=None, help="KAFKAML_FETCH_LONG_IDLE_WAIT_MS for the stack"
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kml-idle-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKAML_")}
    env.update(KAFKAML_HOME=str(home), KAFKAML_API_PORT=str(free_port()), PYTHONPATH=str(REPO))
    if args.idle_wait_ms is not None:
        env["KAFKAML_FETCH_IDLE_WAIT_MS"] = str(args.idle_wait_ms)
    if args.long_idle_wait_ms is not None:
        env["KAFKAML_FETCH_LONG_IDLE_WAIT_MS"] = str(args.long_idle_wait_ms)
    up = kafkaml(env, "up", "--detach")
    try:
        if up.returncode != 0:
            raise SystemExit(f"kafkaml up failed:\n{up.stdout}\n{up.stderr}")
        info: dict[str, Any] = json.loads((home / "stack.json").read_text())
        time.sleep(args.settle)
        load = os.getloadavg()[0]
        share, by_kind, rss = measure(info, args.seconds)
        headers = {"Authorization": f"Bearer {info['token']}"}
        with httpx.Client(base_url=info["api_url"] + "/api/v1", headers=headers, timeout=60) as api:
            first = command_seconds(api)
            more = [command_seconds(api) for _ in range(5)]
            time.sleep(3)  # the listener and the orchestrator back off again
            after_pause = command_seconds(api)
    finally:
        kafkaml(env, "down", timeout=120)
    print(f"(load average {load:.1f} on {os.cpu_count()} cores when the measure started; home {home})")
    for kind, value in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind}: {100 * value:.1f}% of a core")
    print("| measure | value | target |")
    print("|---|---|---|")
    holds = "holds" if share < 0.05 else "does not hold"
    print(f"| idle CPU, whole stack, over {args.seconds:g} s | {100 * share:.1f}% of one core | < 5%: {holds} |")
    print(f"| resident memory, whole stack | {rss / 2**20:,.0f} MiB | |")
    print(f"| first command after idle (DELETE, 404) | {1000 * first:.0f} ms | |")
    print(f"| next 5 commands, median | {1000 * statistics.median(more):.0f} ms | |")
    print(f"| a command after 3 s quiet | {1000 * after_pause:.0f} ms | |")


if __name__ == "__main__":
    main()
