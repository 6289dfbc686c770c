"""The one mapping from the security settings to the options of every Kafka client we make.

aiokafka producers, consumers and admin clients take ``**security_options(settings)``; faust
takes :func:`faust_credentials`; users' data-source sinks take a :class:`KafkaSecurity` (by
default the ``KAFKAML_`` settings, which are PLAINTEXT unless set). One place decides what a
setting means, so a service, a worker and a sink never disagree about how to reach a cluster.

Passwords stay out of logs and errors: the settings hold a ``SecretStr``, :class:`KafkaSecurity`
leaves the password out of its repr, and every error here names a setting, never its value.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.errors import KafkaMLError
from shared.settings import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSecurityError(KafkaMLError):
    """The security settings cannot work (a missing credential, an unreadable file)."""

    status = 400
    title = "Bad request"


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client authenticates and encrypts; the fields are the ``KAFKAML_`` security settings."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | Path | None = None
    ssl_certfile: str | Path | None = None
    ssl_keyfile: str | Path | None = None
    ssl_check_hostname: bool = True

    @classmethod
    def of(cls, settings: Settings) -> KafkaSecurity:
        password = settings.sasl_password.get_secret_value() if settings.sasl_password is not None else None
        return cls(
            security_protocol=settings.security_protocol,
            sasl_mechanism=settings.sasl_mechanism,
            sasl_username=settings.sasl_username,
            sasl_password=password,
            ssl_cafile=settings.ssl_cafile,
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
            ssl_check_hostname=settings.ssl_check_hostname,
        )

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> KafkaSecurity:
        """From ``as_mapping``'s output (``stack.json``); unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def as_mapping(self) -> dict[str, Any]:
        """The fields as JSON values (paths as text), for ``stack.json``."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def settings_update(self) -> dict[str, Any]:
        """The fields as a ``Settings.model_copy(update=...)`` takes them."""
        from pydantic import SecretStr

        update = self.as_mapping()
        update["sasl_password"] = SecretStr(self.sasl_password) if self.sasl_password is not None else None
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            update[name] = Path(update[name]) if update[name] else None
        return update

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def describe(self) -> str:
        """For log lines and messages: the protocol, mechanism and user, never the password."""
        if self.uses_sasl:
            return f"{self.security_protocol} ({self.sasl_mechanism} as {self.sasl_username})"
        return self.security_protocol


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Path) else value


def _setting(name: str) -> str:
    return f"{name} (KAFKAML_{name.upper()})"


def security_options(source: Settings | KafkaSecurity) -> dict[str, Any]:
    """The keyword arguments that make an aiokafka client speak ``source``'s security protocol.

    Raises :class:`KafkaSecurityError` naming the setting for what cannot work: an unknown
    protocol or mechanism, SASL without a user or password, a TLS file that cannot be read,
    a credential set for a protocol that would not use it.
    """
    security = source if isinstance(source, KafkaSecurity) else KafkaSecurity.of(source)
    protocol = security.security_protocol
    if protocol not in PROTOCOLS:
        raise KafkaSecurityError(
            f"{_setting('security_protocol')} must be one of {', '.join(PROTOCOLS)}, got {protocol!r}",
            field="security_protocol",
        )
    options: dict[str, Any] = {"security_protocol": protocol}
    if security.uses_sasl:
        options.update(_sasl_options(security))
    else:
        _refuse_unused(security, ("sasl_username", "sasl_password"), protocol)
    if security.uses_tls:
        options["ssl_context"] = ssl_context(security)
    else:
        _refuse_unused(security, ("ssl_cafile", "ssl_certfile", "ssl_keyfile"), protocol)
    return options


def _sasl_options(security: KafkaSecurity) -> dict[str, Any]:
    if security.sasl_mechanism not in MECHANISMS:
        raise KafkaSecurityError(
            f"{_setting('sasl_mechanism')} must be one of {', '.join(MECHANISMS)}, got {security.sasl_mechanism!r}",
            field="sasl_mechanism",
        )
    for name in ("sasl_username", "sasl_password"):
        if not getattr(security, name):
            raise KafkaSecurityError(
                f"{_setting(name)} is required with security_protocol {security.security_protocol}", field=name
            )
    return {
        "sasl_mechanism": security.sasl_mechanism,
        "sasl_plain_username": security.sasl_username,
        "sasl_plain_password": security.sasl_password,
    }


def _refuse_unused(security: KafkaSecurity, names: tuple[str, ...], protocol: str) -> None:
    # A credential the protocol ignores is a mistake: the connection would fail far from its cause.
    for name in names:
        if getattr(security, name):
            raise KafkaSecurityError(
                f"{_setting(name)} is set but security_protocol {protocol} does not use it "
                "(KAFKAML_SECURITY_PROTOCOL: SASL_PLAINTEXT or SASL_SSL for SASL, SSL or SASL_SSL for TLS)",
                field=name,
            )


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """A client TLS context: the CA file (or the system's CAs), an optional client certificate."""
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(security, name)
        if path and not Path(path).is_file():
            raise KafkaSecurityError(f"{_setting(name)}: {path} is not a readable file", field=name)
    if security.ssl_keyfile and not security.ssl_certfile:
        raise KafkaSecurityError(
            f"{_setting('ssl_keyfile')} is set without {_setting('ssl_certfile')}", field="ssl_certfile"
        )
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(security.ssl_cafile) if security.ssl_cafile else None
        )
    except ssl.SSLError as exc:
        raise KafkaSecurityError(f"{_setting('ssl_cafile')}: not a PEM CA file ({exc})", field="ssl_cafile") from exc
    context.check_hostname = security.ssl_check_hostname
    if security.ssl_certfile:
        keyfile = str(security.ssl_keyfile) if security.ssl_keyfile else None
        try:
            context.load_cert_chain(str(security.ssl_certfile), keyfile)
        except ssl.SSLError as exc:
            raise KafkaSecurityError(
                f"{_setting('ssl_certfile')} / {_setting('ssl_keyfile')}: not a PEM certificate and its key ({exc})",
                field="ssl_certfile",
            ) from exc
    return context


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """The same options as faust's ``broker_credentials`` (None for PLAINTEXT)."""
    from faust.auth import SASLCredentials, SSLCredentials

    options = security_options(settings)
    if settings.security_protocol.startswith("SASL_"):
        return SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"],
            ssl_context=options.get("ssl_context"),
        )
    if settings.security_protocol == "SSL":
        return SSLCredentials(options["ssl_context"])
    return None


class KafkaLoginRefused(KafkaSecurityError):
    """The brokers refused the login (or the TLS handshake): no retry cures it."""


def login_refused(security: KafkaSecurity, brokers: str, cause: str) -> str:
    """The one sentence every client says when the brokers refuse its login; never the password."""
    text = (
        f"Kafka at {brokers} refused the login for user {security.sasl_username} ({security.describe()}): {cause}; "
        "check KAFKAML_SASL_USERNAME, KAFKAML_SASL_PASSWORD and KAFKAML_SASL_MECHANISM"
    )
    return text.replace(security.sasl_password, "***") if security.sasl_password else text


async def check_connection(settings: Settings, timeout_s: float = 30.0) -> None:
    """:func:`check_login` with the settings' security and brokers (what the services call first)."""
    await check_login(KafkaSecurity.of(settings), settings.brokers, timeout_s)


async def check_login(security: KafkaSecurity, brokers: str, timeout_s: float = 30.0) -> None:
    """Connects once as ``security`` says; a broker that refuses the login or the TLS handshake
    becomes a clear :class:`KafkaLoginRefused`.

    Services call it before anything else, and :func:`start_client` when a client cannot start,
    so that wrong credentials stop them with a message that names the user, the mechanism and
    the settings to check, instead of a client's "Unable to bootstrap" (which every caller
    treats as a broker not up yet, and retries). The password never appears: the cause's text is
    scrubbed of it too. Brokers that cannot be reached at all raise ``KafkaConnectionError``.
    """
    from aiokafka.conn import collect_hosts, create_conn
    from aiokafka.errors import KafkaConnectionError

    options = security_options(security)
    refused: str | None = None
    for host, port, _family in collect_hosts(brokers):
        try:
            conn = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=round(timeout_s * 1000), **options), timeout_s
            )
        except ssl.SSLError as exc:
            refused = f"the TLS handshake failed ({exc}); check KAFKAML_SSL_CAFILE and KAFKAML_SSL_CHECK_HOSTNAME"
        except (KafkaConnectionError, TimeoutError, OSError):
            continue  # unreachable: the next broker may answer
        except Exception as exc:
            # aiokafka's SCRAM client fails with KeyError('v') when the broker's final message is an error.
            cause = "no server signature came back" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            refused = login_refused(security, brokers, cause)
        else:
            conn.close()
            return
    if refused is None:
        raise KafkaConnectionError(f"no Kafka broker answers at {brokers}")
    if security.sasl_password:
        refused = refused.replace(security.sasl_password, "***")
    if not refused.startswith("Kafka at"):
        refused = f"the Kafka brokers at {brokers}: {refused}"
    raise KafkaLoginRefused(refused, field="security_protocol")


async def start_client(
    start: Callable[[], Awaitable[None]], source: Settings | KafkaSecurity, brokers: str | None = None
) -> None:
    """``await start()`` (an aiokafka client's ``start``); when it cannot connect and the client
    logs in or speaks TLS, asks the brokers once more to tell a refused login
    (:class:`KafkaLoginRefused`, which no caller retries) from brokers that are away (the
    original error, retried as before)."""
    from aiokafka.errors import KafkaConnectionError

    try:
        await start()
    except KafkaConnectionError:
        security = source if isinstance(source, KafkaSecurity) else KafkaSecurity.of(source)
        if security.uses_sasl or security.uses_tls:
            try:
                await check_login(security, brokers or (source.brokers if isinstance(source, Settings) else ""))
            except KafkaLoginRefused as refused:
                raise refused from None  # the client's "Unable to bootstrap" says nothing more
            except KafkaConnectionError:
                pass  # none answers: the original error says so
        raise
