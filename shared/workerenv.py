"""The environment of a process that runs user code: an allow-list, nothing inherited by accident.

Trainers, inferencers and the validator's sandbox children run code that
strangers wrote. They get the Kafka settings a worker needs and the variables
a Python process and its numeric libraries read, and nothing else: no database
URL, no API token, no Kubernetes credentials, no state folder (``KAFKAML_HOME``, ``HOME``).
On a local stack run as root they also run as another user (``shared.stack.sandboxuser``),
so what they cannot be given, they cannot read either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import SecretStr

from shared.settings import Settings

# The settings a worker reads (as KAFKAML_ variables). Everything it needs beyond these
# travels in its job spec, which its launcher hands to it directly (never on a topic).
WORKER_SETTINGS = (
    "bootstrap_servers",
    "topic_prefix",
    "control_topic",
    "enable_idempotence",
    "fetch_max_wait_ms",
    "fetch_idle_wait_ms",
    "fetch_long_idle_wait_ms",
    "message_max_bytes",
    "log_level",
    # How to reach a secured cluster. On Kubernetes the password is left out of the pod's
    # spec: it comes from a Secret the pod references (the launcher's KAFKAML_K8S_KAFKA_SECRET).
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
)

# Variables passed through by exact name, and by prefix.
ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "PYTHONPATH",
        "PYTHONUNBUFFERED",
        "PYTHONHASHSEED",
        "VIRTUAL_ENV",
        "LD_LIBRARY_PATH",
        "CUDA_VISIBLE_DEVICES",
        "TF_CPP_MIN_LOG_LEVEL",
        "TF_ENABLE_ONEDNN_OPTS",
        "KAFKAML_ALIVE_FILE",
    }
)
ALLOWED_PREFIXES = ("LC_", "OMP_", "MKL_", "OPENBLAS_", "NVIDIA_")


def allowed(name: str) -> bool:
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def worker_login(settings: Settings) -> dict[str, str]:
    """The workers' own Kafka login (``KAFKAML_WORKER_SASL_*``) as the variables a worker reads;
    empty when none is set (workers then log in as the services do)."""
    if settings.worker_sasl_username is None:
        return {}
    login = {"KAFKAML_SASL_USERNAME": settings.worker_sasl_username}
    if settings.worker_sasl_password is not None:
        login["KAFKAML_SASL_PASSWORD"] = settings.worker_sasl_password.get_secret_value()
    return login


def worker_has_own_login(settings: Settings) -> bool:
    return settings.worker_sasl_username is not None


def worker_environment(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: ours) reduced to the allow-list, plus the worker's Kafka settings."""
    source = os.environ if base is None else base
    env = {name: value for name, value in source.items() if allowed(name)}
    for name in WORKER_SETTINGS:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            env[f"KAFKAML_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    if worker_has_own_login(settings):
        env.pop("KAFKAML_SASL_PASSWORD", None)  # the services' password, never a worker's
        env.update(worker_login(settings))
    env["PYTHONUNBUFFERED"] = "1"
    # A second guard: no allowed variable may carry a secret setting's value (an owner URL
    # someone put into PYTHONPATH's neighbours, say); such a variable is dropped, not passed.
    secrets = [s for s in (settings.api_token, settings.database_url, settings.api_database_url) if s]
    if worker_has_own_login(settings) and settings.sasl_password is not None:
        secrets.append(settings.sasl_password.get_secret_value())  # the services' login stays theirs
    return {name: value for name, value in env.items() if not any(secret in value for secret in secrets)}
