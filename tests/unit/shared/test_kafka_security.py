"""The one mapping from the security settings to client options (shared/kafka_security.py)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import AuthProtocol, SASLMechanism
from pydantic import SecretStr

from shared.kafka_security import (
    KafkaSecurity,
    KafkaSecurityError,
    faust_credentials,
    login_refused,
    security_options,
)
from shared.settings import Settings
from shared.stack.certs import ensure_server_certificate
from shared.stack.runner.services import SERVICES, service_env
from shared.workerenv import worker_environment

PASSWORD = "s3cret-Kafka-pass"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_server_certificate(tmp_path_factory.mktemp("home")).ca


def secured(ca: Path, **changes: object) -> Settings:
    values: dict[str, object] = {
        "bootstrap_servers": "kafka:9096",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "kafkaml",
        "sasl_password": SecretStr(PASSWORD),
        "ssl_cafile": ca,
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]  # pydantic validates the mix of types


def test_plaintext_by_default() -> None:
    assert security_options(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


def test_sasl_ssl_gives_the_login_and_a_verifying_context(ca: Path) -> None:
    options = security_options(secured(ca))
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "kafkaml")
    assert options["sasl_plain_password"] == PASSWORD
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert not security_options(secured(ca, ssl_check_hostname=False))["ssl_context"].check_hostname


def test_sasl_plaintext_has_no_tls_and_ssl_has_no_login(ca: Path) -> None:
    options = security_options(secured(ca, security_protocol="SASL_PLAINTEXT", ssl_cafile=None))
    assert "ssl_context" not in options and options["sasl_mechanism"] == "SCRAM-SHA-512"
    tls = security_options(secured(ca, security_protocol="SSL", sasl_username=None, sasl_password=None))
    assert set(tls) == {"security_protocol", "ssl_context"}


def test_faust_gets_the_same_login(ca: Path) -> None:
    credentials = faust_credentials(secured(ca))
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol == AuthProtocol.SASL_SSL and credentials.mechanism == SASLMechanism.SCRAM_SHA_512
    assert (credentials.username, credentials.password) == ("kafkaml", PASSWORD)
    assert PASSWORD not in repr(credentials)
    tls = faust_credentials(secured(ca, security_protocol="SSL", sasl_username=None, sasl_password=None))
    assert isinstance(tls, SSLCredentials) and tls.protocol == AuthProtocol.SSL


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"sasl_password": None}, "KAFKAML_SASL_PASSWORD"),
        ({"sasl_username": None}, "KAFKAML_SASL_USERNAME"),
        ({"security_protocol": "PLAINTEXT", "ssl_cafile": None}, "KAFKAML_SASL_USERNAME"),
        ({"security_protocol": "SASL_PLAINTEXT"}, "KAFKAML_SSL_CAFILE"),
        ({"ssl_cafile": Path("/nonexistent/ca.pem")}, "KAFKAML_SSL_CAFILE"),
        ({"ssl_keyfile": Path(__file__)}, "KAFKAML_SSL_CERTFILE"),
        ({"ssl_certfile": Path(__file__)}, "KAFKAML_SSL_CERTFILE"),
    ],
)
def test_what_cannot_work_is_refused_naming_the_setting_never_the_password(
    ca: Path, changes: dict[str, object], named: str
) -> None:
    with pytest.raises(KafkaSecurityError) as error:
        security_options(secured(ca, **changes))
    assert named in str(error.value)
    assert PASSWORD not in str(error.value)


def test_unknown_protocol_and_mechanism_are_refused(ca: Path) -> None:
    for security in (
        KafkaSecurity(security_protocol="SASL_TLS"),
        KafkaSecurity(
            security_protocol="SASL_PLAINTEXT", sasl_mechanism="GSSAPI", sasl_username="u", sasl_password="p"
        ),
    ):
        with pytest.raises(KafkaSecurityError, match="must be one of"):
            security_options(security)


def test_the_password_stays_out_of_reprs(ca: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKAML_SASL_PASSWORD", PASSWORD)
    settings = Settings()
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    security = KafkaSecurity.of(settings)
    assert security.sasl_password == PASSWORD and PASSWORD not in repr(security)
    assert PASSWORD not in security.describe()


def test_stack_json_round_trip(ca: Path) -> None:
    security = KafkaSecurity.of(secured(ca))
    again = KafkaSecurity.from_mapping({**security.as_mapping(), "a_later_field": 1})
    assert again == KafkaSecurity(**{**security.__dict__, "ssl_cafile": str(ca)})
    updated = Settings().model_copy(update=again.settings_update())
    assert security_options(updated)["sasl_plain_password"] == PASSWORD


def test_workers_and_every_service_get_the_login(ca: Path) -> None:
    settings = secured(ca, database_url="postgresql://o:o-secret@db/k", api_token="tok")
    env = worker_environment(settings, base={})
    assert env["KAFKAML_SASL_PASSWORD"] == PASSWORD  # the value, not pydantic's stars
    assert env["KAFKAML_SECURITY_PROTOCOL"] == "SASL_SSL" and env["KAFKAML_SSL_CAFILE"] == str(ca)
    assert env["KAFKAML_SSL_CHECK_HOSTNAME"] == "true"
    for service in SERVICES:
        got = service_env(service, settings, base={})
        assert got["KAFKAML_SASL_PASSWORD"] == PASSWORD, service.name
        assert got["KAFKAML_SASL_MECHANISM"] == "SCRAM-SHA-512", service.name


def test_a_refused_login_names_the_user_mechanism_and_settings_never_the_password() -> None:
    security = KafkaSecurity(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="alice", sasl_password="pw-Secret-1"
    )
    text = login_refused(security, "kafka:9096", "the broker said: bad password pw-Secret-1")
    assert text.startswith("Kafka at kafka:9096 refused the login for user alice (SASL_SSL (SCRAM-SHA-256 as alice))")
    assert "KAFKAML_SASL_USERNAME, KAFKAML_SASL_PASSWORD" in text and "pw-Secret-1" not in text and "***" in text
