"""``kafkaml up`` in the foreground: start the stack in order, supervise it, stop it in reverse.

1. the embedded broker and PostgreSQL (concurrently), unless ``KAFKAML_BOOTSTRAP_SERVERS`` /
   ``KAFKAML_DATABASE_URL`` point elsewhere;
2. database migrations, the API's read-only role, every topic;
3. the services, each a supervised ``python -m MODULE`` child with only the secrets it needs;
4. ``stack.json``; then it waits for the API's health endpoint to answer 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import SecretStr

from shared.kafka_security import KafkaSecurity
from shared.process import STOP_SIGNALS, on_stop_signals
from shared.settings import Settings
from shared.stack.broker import Broker, BrokerError, start_broker_async
from shared.stack.broker_front import User, write_users
from shared.stack.certs import CertificateError, ensure_server_certificate
from shared.stack.files import owner_only_umask, secure_tree
from shared.stack.postgres import EmbeddedPostgres, PostgresError, start_postgres
from shared.stack.runner.common import (
    Echo,
    StackError,
    api_url,
    check_port_free,
    display_path,
    echo_line,
    health,
    read_or_create_secret,
    redact_url,
    resolve_home,
)
from shared.stack.runner.services import SERVICES, ServiceDef, service_env
from shared.stack.sandboxuser import (
    SAME_USER_WARNING,
    SANDBOX_USER,
    SandboxUserError,
    sandbox_identity,
    validation_identity,
)
from shared.stack.stackfile import StackFile, UpLock, logs_dir, remove_stack, stack_path, write_stack
from shared.stack.supervisor import ChildSpec, Supervisor

log = logging.getLogger("shared.stack.runner")

T = TypeVar("T")

# The role the API reads through (PostgreSQL roles are cluster-wide, hence the prefix).
READONLY_ROLE = "kafkaml_api"
# The read-only role's password, kept so that restarts reuse it.
ROLE_PASSWORD_FILE = "api-db-password"
# How `up --kafka-security` can secure the embedded broker: TLS, SASL/SCRAM, or both.
EMBEDDED_SECURITY = ("none", "ssl", "sasl", "sasl-ssl")
# The embedded broker's SCRAM user, its password (kept so that restarts reuse it) and the file
# the broker's relay reads them from.
KAFKA_USER = "kafkaml"
KAFKA_PASSWORD_FILE = "kafka-password"
KAFKA_USERS_FILE = "kafka-users.json"
# The workers' own SCRAM user (trainers and inferencers log in as it, never as the services'
# user), and its password, kept likewise.
KAFKA_WORKER_USER = "kafkaml-worker"
KAFKA_WORKER_PASSWORD_FILE = "kafka-worker-password"


class _Interrupted(Exception):
    """A stop was asked for while the stack was starting."""


async def run_up(
    settings: Settings,
    *,
    echo: Echo = echo_line,
    services: Sequence[ServiceDef] = SERVICES,
    health_timeout: float = 180.0,
    kafka_security: str = "none",
) -> int:
    """Start the stack and supervise it until SIGINT/SIGTERM; returns the exit code.

    ``kafka_security`` (one of :data:`EMBEDDED_SECURITY`) secures the embedded broker; the
    clients' settings for it go to the services and into ``stack.json``.

    Raises :class:`~shared.stack.stackfile.StackLockedError` when an ``up``
    already runs for this home.
    """
    home = resolve_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    # Everything the stack and its services write is theirs alone (user code runs on this machine).
    umask = owner_only_umask()
    try:
        secure_tree(home)
        with UpLock(home):
            remove_stack(home)  # left behind by an `up` that died: it describes nothing now
            return await _Up(settings, home, echo, services, health_timeout, kafka_security).run()
    finally:
        os.umask(umask)


class _Up:
    def __init__(
        self,
        settings: Settings,
        home: Path,
        echo: Echo,
        services: Sequence[ServiceDef],
        health_timeout: float,
        kafka_security: str = "none",
    ) -> None:
        self.settings = settings
        self.kafka_security = kafka_security
        # The workers' own Kafka login, when the embedded broker asks for one.
        self.worker_login: dict[str, object] = {}
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
        on_stop_signals(self._on_signal, loop)
        try:
            try:
                await self._start()
            except _Interrupted:
                self.echo("interrupted while starting; stopping what was started")
                return 130
            except (StackError, BrokerError, PostgresError, CertificateError) as exc:
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
            for sig in STOP_SIGNALS:
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
        if self.kafka_security not in EMBEDDED_SECURITY:
            choices = ", ".join(EMBEDDED_SECURITY)
            raise StackError(f"--kafka-security must be one of {choices}, not {self.kafka_security!r}")
        if self.kafka_security != "none" and s.bootstrap_servers:
            raise StackError(
                "--kafka-security secures the embedded broker; for your own brokers "
                "(KAFKAML_BOOTSTRAP_SERVERS) set KAFKAML_SECURITY_PROTOCOL and the KAFKAML_SASL_/KAFKAML_SSL_ settings"
            )
        logs_dir(self.home).mkdir(parents=True, exist_ok=True)

        async def broker_part() -> None:
            if s.bootstrap_servers:
                self.echo(f"using the Kafka brokers at {s.bootstrap_servers}")
                return
            tls = ensure_server_certificate(self.home) if self.kafka_security in ("ssl", "sasl-ssl") else None
            users = self._kafka_users() if self.kafka_security in ("sasl", "sasl-ssl") else None
            self.broker = await self._until_stop(start_broker_async(self.home, tls=tls, sasl_users=users))
            secured = f" ({self.broker.security.describe()})" if tls or users else ""
            self.echo(f"broker ready on {self.broker.bootstrap_servers}{secured}")

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

        try:
            sandbox = await asyncio.to_thread(sandbox_identity, s)  # may create the user, runs Python as it
            validation = await asyncio.to_thread(validation_identity, s, sandbox)  # its own user, likewise
        except SandboxUserError as exc:
            raise StackError(str(exc)) from exc
        if sandbox is None:
            self.echo("warning: " + SAME_USER_WARNING % (os.geteuid(), SANDBOX_USER))
        # The embedded broker's client settings replace the (PLAINTEXT) ones; others stay as set.
        security = self.broker.security.settings_update() if self.broker else {}
        from shared.events.signing import validator_key

        bus_key = s.bus_key or secrets.token_urlsafe(32)
        self.resolved = s.model_copy(
            update={
                **security,
                **self.worker_login,
                "sandbox_uid": sandbox.uid if sandbox else None,
                "sandbox_gid": sandbox.gid if sandbox else None,
                "validation_uid": validation.uid if validation else None,
                "validation_gid": validation.gid if validation else None,
                "home": self.home,
                "bootstrap_servers": bootstrap,
                "database_url": database_url,
                "api_database_url": api_database_url,
                "api_token": s.api_token or secrets.token_urlsafe(32),
                "bus_key": bus_key,
                "validator_key": validator_key(bus_key),
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

    def _kafka_users(self) -> Path:
        """The relay's users: the services' first (clients of the stack log in as it), the workers'."""
        password = read_or_create_secret(self.home / KAFKA_PASSWORD_FILE)
        worker = read_or_create_secret(self.home / KAFKA_WORKER_PASSWORD_FILE)
        path = self.home / KAFKA_USERS_FILE
        write_users(
            path, [User(KAFKA_USER, password, "SCRAM-SHA-512"), User(KAFKA_WORKER_USER, worker, "SCRAM-SHA-512")]
        )
        self.worker_login = {"worker_sasl_username": KAFKA_WORKER_USER, "worker_sasl_password": SecretStr(worker)}
        return path

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
            "bus_key": (r.bus_key or "").split(",")[0],
            "pid": os.getpid(),
            "home": str(self.home),
            "api_database_url": r.api_database_url or "",
            "started_at": self.started_at,
            "broker_pid": self.broker.pid if self.broker else None,
            "postgres_pid": self.pg.pid if self.pg else None,
            "pgdata": str(self.pg.pgdata) if self.pg else None,
            "services": self.supervisor.pids(),
            "modules": {s.name: s.module for s in self.services},
            "kafka_security": KafkaSecurity.of(r).as_mapping(),
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
