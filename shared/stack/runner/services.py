"""The services ``up`` runs, and the environment each one gets: the stack's security boundary.

A service receives only the secret settings it is granted; one that runs users' code (the
validator) gets the workers' allow-list environment instead, plus the few settings it reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

import shared
from shared.settings import Settings
from shared.workerenv import worker_environment

ENV_PREFIX = "KAFKAML_"
# The folder holding the `shared` package: children must import the same code.
PROJECT_ROOT = Path(shared.__file__).resolve().parent.parent


@dataclass(frozen=True)
class ServiceDef:
    """One service ``up`` runs as ``python -m MODULE``.

    ``secrets`` names the secret settings (see :func:`is_secret_setting`) the
    service receives; every other setting goes to every service.
    ``scrub_env_prefixes`` removes inherited variables the service must not see.
    ``user_code_settings`` marks a service that runs users' code: it gets the
    workers' environment (``shared.workerenv``) plus these settings, nothing else.
    """

    name: str
    module: str
    secrets: frozenset[str] = frozenset()
    scrub_env_prefixes: tuple[str, ...] = ()
    user_code_settings: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        leaked = [name for name in self.user_code_settings or () if is_secret_setting(name)]
        if leaked:
            raise ValueError(f"{self.name} runs users' code: it may not receive the secret settings {leaked}")


# Settings that are secrets whatever their name; names that look like one are
# treated as secrets too, so a setting added later is withheld until granted.
SECRET_SETTINGS = frozenset({"database_url", "api_database_url", "api_token"})
_SECRET_WORDS = ("url", "token", "password", "secret", "key", "credential")


def is_secret_setting(name: str) -> bool:
    name = name.lower()
    return name in SECRET_SETTINGS or any(word in name for word in _SECRET_WORDS)


# Every service talks to Kafka: each gets the cluster's credentials (none unless configured).
KAFKA_SECRETS = frozenset({"sasl_password", "ssl_keyfile"})

SERVICES: tuple[ServiceDef, ...] = (
    # The REST gateway reads through the read-only role and never sees the owner's URL.
    ServiceDef("api", "services.api", secrets=frozenset({"api_database_url", "api_token", "bus_key"}) | KAFKA_SECRETS),
    # It hands the workers' own Kafka login (not its own) to the trainers and inferencers it starts.
    ServiceDef(
        "orchestrator",
        "services.orchestrator",
        secrets=frozenset({"database_url", "bus_key", "worker_sasl_password"}) | KAFKA_SECRETS,
    ),
    # Builds users' model code in sandboxed children: Kafka, its sandbox limits and its own
    # signing key only (the validator drops the key from its environment before any child starts).
    ServiceDef(
        "validator",
        "services.trainer.validator",
        secrets=frozenset({"validator_key"}) | KAFKA_SECRETS,
        user_code_settings=(
            "validation_timeout_s",
            "validation_memory_mb",
            "validation_processes",
            "validation_address_space_mb",
            "validation_file_size_mb",
            "validation_open_files",
            "validation_cpu_s",
            "validation_uid",
            "validation_gid",
            "validation_work_dir",
        ),
    ),
    ServiceDef(
        "control-logger", "services.control_logger", secrets=frozenset({"database_url", "bus_key"}) | KAFKA_SECRETS
    ),
    ServiceDef("metrics", "services.metrics", secrets=frozenset({"database_url", "bus_key"}) | KAFKA_SECRETS),
)


def setting_value(value: object) -> str:
    """A setting as its environment variable spells it (booleans in lower case)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as the ``KAFKAML_`` variable that reproduces it (unset ones left out)."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is not None:
            env[ENV_PREFIX + name.upper()] = setting_value(value)
    return env


def service_env(service: ServiceDef, settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The complete environment of ``service``: ``base`` (our own) filtered, plus its settings.

    Inherited ``KAFKAML_`` variables are dropped and replaced by the resolved
    settings, so an owner URL exported in the user's shell cannot reach the API
    (pydantic-settings matches names case-insensitively, and so does this).
    """
    base = os.environ if base is None else base
    if service.user_code_settings is not None:
        # A service that runs users' code still logs in to Kafka as a service (its children have
        # no network): the workers' allow-list, without the workers' own login.
        own = settings.model_copy(update={"worker_sasl_username": None, "worker_sasl_password": None})
        env = worker_environment(own, base)
        for name in (*service.user_code_settings, *sorted(service.secrets)):
            value = getattr(settings, name)
            if value is not None:
                env[ENV_PREFIX + name.upper()] = setting_value(value)
    else:
        env = _service_env(service, settings, base)
    env["PYTHONPATH"] = with_project_root(env.get("PYTHONPATH", ""))
    # Log lines reach the log files as they happen, not when a buffer fills.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _service_env(service: ServiceDef, settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
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
    return env


def with_project_root(pythonpath: str) -> str:
    """``pythonpath`` with the project first, so children import this very code."""
    rest = [p for p in pythonpath.split(os.pathsep) if p and p != str(PROJECT_ROOT)]
    return os.pathsep.join([str(PROJECT_ROOT), *rest])
