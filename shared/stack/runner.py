"""`kafkaml up`, `up --detach`, `down` and `status`.

``up`` brings the stack up in this order, then supervises it until Ctrl-C or
SIGTERM:

1. the embedded broker and PostgreSQL (concurrently), unless
   ``KAFKAML_BOOTSTRAP_SERVERS`` / ``KAFKAML_DATABASE_URL`` point elsewhere;
2. database migrations, the API's read-only role, every topic;
3. the services, each a supervised ``python -m MODULE`` child that receives
   only the secrets it needs (:data:`SERVICES`);
4. ``stack.json``; then it waits for ``GET /api/v1/health`` to answer 200.

It stops in the reverse order: services, broker, PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import psutil

import shared
from shared.settings import Settings
from shared.stack.broker import Broker, BrokerError, start_broker_async
from shared.stack.postgres import EmbeddedPostgres, PostgresError, postgres_pid, start_postgres, stop_postgres
from shared.stack.stackfile import (
    StackFile,
    StackFileError,
    UpLock,
    holder_pid,
    logs_dir,
    read_stack,
    remove_stack,
    stack_path,
    write_stack,
)
from shared.stack.supervisor import ChildSpec, Supervisor, group_members, is_alive, kill_tree, tail

log = logging.getLogger(__name__)

T = TypeVar("T")
Echo = Callable[[str], None]

ENV_PREFIX = "KAFKAML_"
HEALTH_PATH = "/api/v1/health"
# The role the API reads through (PostgreSQL roles are cluster-wide, hence the prefix).
READONLY_ROLE = "kafkaml_api"
# The read-only role's password, kept so that restarts reuse it.
ROLE_PASSWORD_FILE = "api-db-password"
# The folder holding the `shared` package: children must import the same code.
PROJECT_ROOT = Path(shared.__file__).resolve().parent.parent


# --- the services and what each may see --------------------------------------


@dataclass(frozen=True)
class ServiceDef:
    """One service ``up`` runs as ``python -m MODULE``.

    ``secrets`` names the secret settings (see :func:`is_secret_setting`) the
    service receives; every other setting goes to every service.
    ``scrub_env_prefixes`` removes inherited variables the service must not see.
    """

    name: str
    module: str
    secrets: frozenset[str] = frozenset()
    scrub_env_prefixes: tuple[str, ...] = ()


SERVICES: tuple[ServiceDef, ...] = (
    # The REST gateway reads through the read-only role and never sees the owner's URL.
    ServiceDef("api", "services.api", secrets=frozenset({"api_database_url", "api_token"})),
    ServiceDef("orchestrator", "services.orchestrator", secrets=frozenset({"database_url"})),
    # Runs users' model code: Kafka only, no database, no token, no cluster credentials.
    ServiceDef("validator", "services.trainer.validator", scrub_env_prefixes=("KUBERNETES_",)),
    ServiceDef("control-logger", "services.control_logger", secrets=frozenset({"database_url"})),
    ServiceDef("metrics", "services.metrics", secrets=frozenset({"database_url"})),
)

# Settings that are secrets whatever their name; names that look like one are
# treated as secrets too, so a setting added later is withheld until granted.
SECRET_SETTINGS = frozenset({"database_url", "api_database_url", "api_token"})
_SECRET_WORDS = ("url", "token", "password", "secret", "key", "credential")


def is_secret_setting(name: str) -> bool:
    name = name.lower()
    return name in SECRET_SETTINGS or any(word in name for word in _SECRET_WORDS)


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as the ``KAFKAML_`` variable that reproduces it (unset ones left out)."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        env[ENV_PREFIX + name.upper()] = text
    return env


def service_env(service: ServiceDef, settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The complete environment of ``service``: ``base`` (our own) filtered, plus its settings.

    Inherited ``KAFKAML_`` variables are dropped and replaced by the resolved
    settings, so an owner URL exported in the user's shell cannot reach the API
    (pydantic-settings matches names case-insensitively, and so does this).
    """
    base = os.environ if base is None else base
    fields = set(type(settings).model_fields)
    env: dict[str, str] = {}
    for key, value in base.items():
        upper = key.upper()
        if upper.startswith(ENV_PREFIX):
            name = upper[len(ENV_PREFIX) :].lower()
            if name in fields or is_secret_setting(name):
                continue
        if any(upper.startswith(prefix) for prefix in service.scrub_env_prefixes):
            continue
        env[key] = value
    for key, value in settings_env(settings).items():
        name = key[len(ENV_PREFIX) :].lower()
        if is_secret_setting(name) and name not in service.secrets:
            continue
        env[key] = value
    env["PYTHONPATH"] = _with_project_root(env.get("PYTHONPATH", ""))
    # Log lines reach the log files as they happen, not when a buffer fills.
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- small helpers ------------------------------------------------------------


def _with_project_root(pythonpath: str) -> str:
    """``pythonpath`` with the project first, so children import this very code."""
    rest = [p for p in pythonpath.split(os.pathsep) if p and p != str(PROJECT_ROOT)]
    return os.pathsep.join([str(PROJECT_ROOT), *rest])


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


def read_or_create_secret(path: Path, nbytes: int = 24) -> str:
    """A secret kept in ``path`` (mode 0600), created on first use."""
    with contextlib.suppress(FileNotFoundError):
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    return value


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


def _print(line: str) -> None:
    print(line, flush=True)


class StackError(RuntimeError):
    """``up`` cannot go on; the message says what to do."""


class _Interrupted(Exception):
    """A stop was asked for while the stack was starting."""


# --- up (foreground) ----------------------------------------------------------


async def run_up(
    settings: Settings,
    *,
    echo: Echo = _print,
    services: Sequence[ServiceDef] = SERVICES,
    health_timeout: float = 180.0,
) -> int:
    """Start the stack and supervise it until SIGINT/SIGTERM; returns the exit code.

    Raises :class:`~shared.stack.stackfile.StackLockedError` when an ``up``
    already runs for this home.
    """
    home = resolve_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    with UpLock(home):
        remove_stack(home)  # left behind by an `up` that died: it describes nothing now
        return await _Up(settings, home, echo, services, health_timeout).run()


class _Up:
    def __init__(
        self,
        settings: Settings,
        home: Path,
        echo: Echo,
        services: Sequence[ServiceDef],
        health_timeout: float,
    ) -> None:
        self.settings = settings
        self.home = home
        self.echo = echo
        self.services = services
        self.health_timeout = health_timeout
        self.api_url = api_url(settings)
        self.stop = asyncio.Event()
        self.exit_code = 0
        self.signals = 0
        self.broker: Broker | None = None
        self.pg: EmbeddedPostgres | None = None
        self.supervisor: Supervisor | None = None
        self.resolved: Settings | None = None
        self.stack_written = False
        self.infra_watch: asyncio.Task[None] | None = None
        self.started_at = time.time()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            try:
                await self._start()
            except _Interrupted:
                self.echo("interrupted while starting; stopping what was started")
                return 130
            except (StackError, BrokerError, PostgresError) as exc:
                self.echo(f"error: {exc}")
                return 1
            except Exception as exc:
                # Unexpected: the traceback goes to the log, the gist to the user.
                log.exception("Kafka-ML could not start")
                self.echo(f"error: {type(exc).__name__}: {exc}")
                return 1
            await self._serve()
            return self.exit_code
        finally:
            await self._shutdown()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        self.signals += 1
        if self.signals == 1:
            log.info("received %s; stopping Kafka-ML", signal.Signals(sig).name)
            self.stop.set()
        elif self.supervisor is not None:
            log.warning("received %s again; killing the services now", signal.Signals(sig).name)
            self.supervisor.kill_now()

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise _Interrupted

    async def _until_stop(self, aw: Awaitable[T]) -> T:
        """Await ``aw`` unless a stop comes first (then it is cancelled)."""
        task = asyncio.ensure_future(aw)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise _Interrupted
        return task.result()

    async def _start(self) -> None:
        s = self.settings
        check_port_free(s.api_host, s.api_port)
        logs_dir(self.home).mkdir(parents=True, exist_ok=True)

        async def broker_part() -> None:
            if s.bootstrap_servers:
                self.echo(f"using the Kafka brokers at {s.bootstrap_servers}")
                return
            self.broker = await self._until_stop(start_broker_async(self.home))
            self.echo(f"broker ready on {self.broker.bootstrap_servers}")

        async def postgres_part() -> None:
            if s.database_url:
                self.echo(f"using the PostgreSQL server at {redact_url(s.database_url)}")
                return
            # Not cancellable (a thread): awaited to the end so that a server it
            # started is known and stopped.
            self.pg = await asyncio.to_thread(start_postgres, self.home)
            self.echo("PostgreSQL ready")

        results = await asyncio.gather(broker_part(), postgres_part(), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self.infra_watch = asyncio.create_task(self._watch_infra(), name="watch-infra")
        self._check_stop()

        bootstrap = s.bootstrap_servers or (self.broker.bootstrap_servers if self.broker else "")
        database_url = s.database_url or (self.pg.url if self.pg else "")

        db_hint = f"is PostgreSQL reachable at {redact_url(database_url)}? (KAFKAML_DATABASE_URL)"
        kafka_hint = f"is Kafka reachable at {bootstrap}? (KAFKAML_BOOTSTRAP_SERVERS)"

        from shared.db.migrate import upgrade

        with _step("applying the database migrations", db_hint):
            await asyncio.to_thread(upgrade, database_url)
        self.echo("migrations applied")
        self._check_stop()

        if s.api_database_url:
            api_database_url = s.api_database_url
        else:
            from shared.db.roles import ensure_readonly_role

            password = read_or_create_secret(self.home / ROLE_PASSWORD_FILE)
            with _step(f"creating the read-only role {READONLY_ROLE}", db_hint):
                api_database_url = await self._until_stop(ensure_readonly_role(database_url, READONLY_ROLE, password))
            self.echo(f"read-only database role {READONLY_ROLE} ready")

        self.resolved = s.model_copy(
            update={
                "home": self.home,
                "bootstrap_servers": bootstrap,
                "database_url": database_url,
                "api_database_url": api_database_url,
                "api_token": s.api_token or secrets.token_urlsafe(32),
            }
        )

        from shared.kafka import ensure_topics

        with _step("creating the topics", kafka_hint):
            await self._until_stop(ensure_topics(self.resolved))
        self.echo("topics ready")

        self.supervisor = Supervisor(on_change=self._on_services_change)
        for service in self.services:
            await self.supervisor.start(
                ChildSpec(
                    name=service.name,
                    argv=[sys.executable, "-m", service.module],
                    log_path=logs_dir(self.home) / f"{service.name}.log",
                    env=service_env(service, self.resolved),
                )
            )
        self._write_stack()
        self.echo(f"services: {', '.join(s.name for s in self.services)}")

    async def _serve(self) -> None:
        waited = asyncio.get_running_loop().time()
        warned = False
        while not self.stop.is_set():
            code, _ = await health(self.api_url)
            if code == 200:
                stack = display_path(stack_path(self.home))
                self.echo(f"Kafka-ML is up: {self.api_url} (token in {stack}); Ctrl-C stops it")
                break
            if not warned and asyncio.get_running_loop().time() - waited > self.health_timeout:
                warned = True
                log.warning(
                    "the API is not healthy after %.0fs; still waiting (see %s)",
                    self.health_timeout,
                    logs_dir(self.home) / "api.log",
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=0.5)
        await self.stop.wait()

    async def _watch_infra(self) -> None:
        """The services cannot work without the broker and PostgreSQL: their death stops the stack."""
        while not self.stop.is_set():
            await asyncio.sleep(1.0)
            if self.broker is not None and not self.broker.is_running():
                log.error(
                    "the embedded broker exited with code %s; stopping the stack (see %s)",
                    self.broker.process.returncode,
                    self.broker.log_path,
                )
            elif self.pg is not None and not self.pg.is_running():
                log.error("PostgreSQL is no longer running; stopping the stack (see %s)", self.pg.log_path)
            else:
                continue
            self.exit_code = 1
            self.stop.set()

    def _on_services_change(self, pids: dict[str, int | None]) -> None:
        if self.stack_written:
            self._write_stack()

    def _write_stack(self) -> None:
        assert self.resolved is not None and self.supervisor is not None
        r = self.resolved
        data: StackFile = {
            "api_url": self.api_url,
            "bootstrap_servers": r.bootstrap_servers or "",
            "database_url": r.database_url or "",
            "token": r.api_token or "",
            "pid": os.getpid(),
            "home": str(self.home),
            "api_database_url": r.api_database_url or "",
            "started_at": self.started_at,
            "broker_pid": self.broker.pid if self.broker else None,
            "postgres_pid": self.pg.pid if self.pg else None,
            "pgdata": str(self.pg.pgdata) if self.pg else None,
            "services": self.supervisor.pids(),
            "modules": {s.name: s.module for s in self.services},
        }
        write_stack(self.home, data)
        self.stack_written = True

    async def _shutdown(self) -> None:
        if self.infra_watch is not None:
            self.infra_watch.cancel()
            await asyncio.gather(self.infra_watch, return_exceptions=True)
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if self.supervisor is not None:
            steps.append(("the services", self.supervisor.stop))
        if self.broker is not None:
            steps.append(("the broker", _in_thread(self.broker.stop)))
        if self.pg is not None:
            steps.append(("PostgreSQL", _in_thread(self.pg.stop)))
        for what, step in steps:
            try:
                await step()
                log.info("stopped %s", what)
            except Exception:
                log.exception("could not stop %s", what)
                self.exit_code = self.exit_code or 1
        self.stack_written = False
        remove_stack(self.home)
        if steps:
            self.echo("Kafka-ML stopped")


@contextlib.contextmanager
def _step(what: str, hint: str) -> Iterator[None]:
    """Turn a failure of one start-up step into an error that says which step and what to check."""
    try:
        yield
    except (_Interrupted, StackError):
        raise
    except Exception as exc:
        log.debug("%s failed", what, exc_info=True)
        raise StackError(f"{what} failed ({type(exc).__name__}: {exc}); {hint}") from exc


def _in_thread(fn: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        await asyncio.to_thread(fn)

    return run


# --- up --detach ----------------------------------------------------------------

_LOG_RECORD = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d")


def up_detached(settings: Settings, *, timeout: float = 180.0, echo: Echo = _print) -> int:
    """Start ``up`` in the background and return once the API is healthy.

    On failure or timeout, prints the end of the logs, stops what was started
    and returns 1.
    """
    home = resolve_home(settings)
    holder = holder_pid(home)
    if holder is not None:
        echo(f"error: a Kafka-ML stack is already running for {home} (process {holder}); stop it with `kafkaml down`")
        return 1
    logs = logs_dir(home)
    logs.mkdir(parents=True, exist_ok=True)
    up_log = logs / "up.log"
    env = dict(os.environ)
    env[ENV_PREFIX + "HOME"] = str(home)  # the same home, whatever the child's working folder
    env["PYTHONPATH"] = _with_project_root(env.get("PYTHONPATH", ""))
    env["PYTHONUNBUFFERED"] = "1"
    offset = up_log.stat().st_size if up_log.exists() else 0
    with open(up_log, "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "up"],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            # Its own session: it outlives this command and the terminal.
            start_new_session=True,
        )
    echo(f"starting Kafka-ML in the background (pid {proc.pid}, log {display_path(up_log)})")
    deadline = time.monotonic() + timeout
    while True:
        offset = _echo_progress(up_log, offset, echo)
        code = proc.poll()
        if code is not None:
            _echo_progress(up_log, offset, echo)
            echo(f"error: the stack failed to start (exit code {code}); end of {display_path(up_log)}:")
            echo(tail(up_log, 30))
            return 1
        info = _try_read_stack(home)
        if info is not None and info["pid"] == proc.pid and health_sync(info["api_url"])[0] == 200:
            stack = display_path(stack_path(home))
            echo(f"Kafka-ML is up: {info['api_url']} (token in {stack}); `kafkaml down` stops it")
            return 0
        if time.monotonic() > deadline:
            echo(f"error: the API did not become healthy within {timeout:.0f}s; stopping the stack")
            for name in ("up", "api"):
                path = logs / f"{name}.log"
                if path.exists():
                    echo(f"--- end of {display_path(path)}:")
                    echo(tail(path, 30))
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid, timeout=1)
            return 1
        time.sleep(0.5)


def _echo_progress(path: Path, offset: int, echo: Echo) -> int:
    """Echo the progress lines (not log records) the background ``up`` wrote after ``offset``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except OSError:
        return offset
    complete = chunk[: chunk.rfind(b"\n") + 1]
    for line in complete.decode("utf-8", "replace").splitlines():
        # The final line is printed by the caller, with the hint for `down`.
        if line and not _LOG_RECORD.match(line) and not line.startswith("Kafka-ML is up"):
            echo(line)
    return offset + len(complete)


def _try_read_stack(home: Path) -> StackFile | None:
    try:
        return read_stack(home)
    except StackFileError:
        return None


# --- down -----------------------------------------------------------------------


def down(settings: Settings, *, timeout: float = 90.0, echo: Echo = _print) -> int:
    """Stop the stack of this home: ask ``up`` to stop, then clear whatever is left."""
    home = resolve_home(settings)
    try:
        info = read_stack(home)
    except StackFileError as exc:
        echo(f"warning: {exc}")
        info = None
    holder = holder_pid(home)
    if holder is None and info is None:
        leftovers = _stop_leftovers(home, None)
        if leftovers:
            echo(f"stopped leftovers of an earlier stack: {', '.join(leftovers)}")
        else:
            echo(f"Kafka-ML is not running for {display_path(home)}")
        return 0
    if holder is not None:
        echo(f"stopping Kafka-ML (pid {holder})...")
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (is_alive(holder) or holder_pid(home) is not None):
            time.sleep(0.2)
        if is_alive(holder):
            echo(f"the up process did not stop within {timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder, signal.SIGKILL)
    else:
        echo("the up process is gone; stopping what it left running")
    # Idempotent: after a clean stop it finds nothing.
    leftovers = _stop_leftovers(home, info)
    if leftovers:
        echo(f"stopped leftovers: {', '.join(leftovers)}")
    remove_stack(home)
    echo("Kafka-ML stopped")
    return 0


def _cmdline_has(pid: int, needle: str) -> bool:
    """True when ``pid`` lives and its command line contains ``needle`` (not a recycled pid)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and needle in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def _stop_leftovers(home: Path, info: StackFile | None) -> list[str]:
    stopped: list[str] = []
    if info is not None:
        for name, pid in info["services"].items():
            module = info["modules"].get(name, "")
            if not pid or pid <= 1:
                continue
            if _cmdline_has(pid, f"-m {module}" if module else "-m "):
                kill_tree(pid, timeout=10)
                stopped.append(name)
            # A service that died without stopping its children (killed along
            # with `up`) leaves them in its process group.
            orphans = group_members(pid, since=info["started_at"])
            if orphans:
                for proc in orphans:
                    with contextlib.suppress(psutil.Error):
                        proc.kill()
                stopped.append(f"{len(orphans)} process(es) started by {name}")
        broker_pid = info["broker_pid"]
        if broker_pid and broker_pid > 1 and _cmdline_has(broker_pid, "--listener-url"):
            kill_tree(broker_pid, timeout=10)
            stopped.append("broker")
    pgdata = Path(info["pgdata"]) if info is not None and info["pgdata"] else home / "pgdata"
    if pgdata.exists() and stop_postgres(pgdata):
        stopped.append("postgres")
    return stopped


# --- status ---------------------------------------------------------------------


def status(settings: Settings, *, echo: Echo = _print) -> int:
    """Print each part's state; 0 when all run and the API is healthy, else 3."""
    home = resolve_home(settings)
    try:
        info = read_stack(home)
    except StackFileError as exc:
        echo(f"error: {exc}")
        return 3
    holder = holder_pid(home)
    if info is None:
        if holder is not None:
            echo(f"{'up':<14}starting  pid {holder} (no stack.json yet)")
        else:
            echo(f"Kafka-ML is not running (no {display_path(stack_path(home))})")
        return 3
    rows: list[tuple[str, bool, str, str, str]] = []  # name, ok, state, pid, detail

    def process_row(name: str, alive: bool, pid: int | None, detail: str = "") -> None:
        rows.append((name, alive, "running" if alive else "DOWN", f"pid {pid}" if pid else "-", detail))

    process_row("up", holder == info["pid"], info["pid"], str(home))
    if info["broker_pid"] is None:
        reachable = _reachable(info["bootstrap_servers"])
        state = "external" if reachable else "unreachable"
        rows.append(("broker", reachable, state, "-", info["bootstrap_servers"]))
    else:
        alive = _cmdline_has(info["broker_pid"], "--listener-url")
        process_row("broker", alive, info["broker_pid"], info["bootstrap_servers"])
    if info["pgdata"] is None:
        # Not probed here: the health answer below says whether the API reaches it.
        rows.append(("postgres", True, "external", "-", redact_url(info["database_url"])))
    else:
        pid = postgres_pid(Path(info["pgdata"]))
        process_row("postgres", pid is not None, pid or info["postgres_pid"], info["pgdata"])
    for name, spid in info["services"].items():
        module = info["modules"].get(name, "")
        process_row(name, spid is not None and _cmdline_has(spid, module or "-m"), spid)
    code, body = health_sync(info["api_url"])
    state = "ok" if code == 200 else (f"HTTP {code}" if code else "unreachable")
    detail = f"{info['api_url']}{HEALTH_PATH} {body.strip() if code is not None else ''}"
    rows.append(("health", code == 200, state, "-", detail))
    for name, _, state, pid_text, detail in rows:
        echo(f"{name:<14}{state:<12}{pid_text:<12}{detail}".rstrip())
    return 0 if all(ok for _, ok, _, _, _ in rows) else 3


def _reachable(bootstrap_servers: str) -> bool:
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        with (
            contextlib.suppress(OSError, ValueError),
            socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=2),
        ):
            return True
    return False
