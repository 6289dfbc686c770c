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


async def check_connection(settings: Settings, timeout_s: float = 30.0) -> None:
    """Connects once as the settings say; a broker that refuses the login or the TLS handshake
    becomes a clear :class:`KafkaSecurityError`.

    Services call it before anything else, so that wrong credentials stop them with a message
    that names the user, the mechanism and the settings to check, instead of a client's
    traceback (aiokafka's own clients report any failure as "Unable to bootstrap"). The password
    never appears: the cause's text is scrubbed of it too. Brokers that cannot be reached at
    all raise ``KafkaConnectionError`` as before.
    """
    from aiokafka.conn import collect_hosts, create_conn
    from aiokafka.errors import KafkaConnectionError

    security = KafkaSecurity.of(settings)
    options = security_options(security)
    refused: str | None = None
    for host, port, _family in collect_hosts(settings.brokers):
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
            refused = (
                f"the login {security.describe()} was refused ({cause}); check "
                "KAFKAML_SASL_USERNAME, KAFKAML_SASL_PASSWORD and KAFKAML_SASL_MECHANISM"
            )
        else:
            conn.close()
            return
    if refused is None:
        raise KafkaConnectionError(f"no Kafka broker answers at {settings.brokers}")
    if security.sasl_password:
        refused = refused.replace(security.sasl_password, "***")
    raise KafkaSecurityError(f"the Kafka brokers at {settings.brokers}: {refused}", field="security_protocol")
