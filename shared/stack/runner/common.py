"""What ``up``, ``down`` and ``status`` share: the home, the API's address and health, small checks."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from shared.settings import Settings
from shared.stack.files import read_or_create_secret

__all__ = [
    "HEALTH_PATH",
    "Echo",
    "StackError",
    "api_url",
    "check_port_free",
    "cmdline_has",
    "display_path",
    "echo_line",
    "health",
    "health_sync",
    "read_or_create_secret",
    "redact_url",
    "resolve_home",
]

Echo = Callable[[str], None]

HEALTH_PATH = "/api/v1/health"


class StackError(RuntimeError):
    """``up`` cannot go on; the message says what to do."""


def echo_line(line: str) -> None:
    """The default echo: a line on stdout, at once."""
    print(line, flush=True)


def resolve_home(settings: Settings) -> Path:
    return settings.home.expanduser().resolve()


def api_url(settings: Settings) -> str:
    host = settings.api_host
    if host in ("", "0.0.0.0", "::"):  # listening everywhere: reach it locally
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


def display_path(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it (shorter to read)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def redact_url(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


def check_port_free(host: str, port: int) -> None:
    """Fail early, with the fix, when the API's port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn does: a port in TIME_WAIT is free for a listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise StackError(
                f"the API port {host}:{port} is not available ({exc.strerror}); is another stack "
                "running? Stop it with `kafkaml down` or set KAFKAML_API_PORT to a free port"
            ) from exc


async def health(url: str, *, request_timeout: float = 2.0) -> tuple[int | None, str]:
    """``(status code, body)`` of the health endpoint; ``(None, reason)`` when unreachable."""
    try:
        async with httpx.AsyncClient(timeout=request_timeout) as client:
            response = await client.get(url + HEALTH_PATH)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return response.status_code, response.text


def health_sync(url: str, *, request_timeout: float = 2.0) -> tuple[int | None, str]:
    try:
        response = httpx.get(url + HEALTH_PATH, timeout=request_timeout)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return response.status_code, response.text


def cmdline_has(pid: int, needle: str) -> bool:
    """True when ``pid`` lives and its command line contains ``needle`` (not a recycled pid)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and needle in " ".join(proc.cmdline())
    except psutil.Error:
        return False
