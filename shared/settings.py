"""One settings pattern for every process: environment variables with the ``KAFKAML_`` prefix.

The variable names are public (docs/contracts.md lists them all): rename none. Each field
belongs to one concern below; the processes that run user code get only the Kafka ones
(``shared.workerenv.WORKER_SETTINGS``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAFKAML_", extra="ignore")

    # --- Kafka ---------------------------------------------------------------
    bootstrap_servers: str | None = Field(default=None, description="Kafka brokers")
    # Upstream Kafka-ML's control topic: data sources announce their data sets there.
    control_topic: str = "KAFKA_ML_CONTROL_TOPIC"
    # Prefix for every internal topic, so that stacks (and tests) can share a broker.
    topic_prefix: str = "kafkaml"
    # Idempotent producers need InitProducerId, which the embedded broker lacks.
    enable_idempotence: bool = False
    # The embedded broker holds an empty fetch for the whole wait: keep it short.
    fetch_max_wait_ms: int = 10
    # How long the internal commands, events, validation and dead-letter topics keep records
    # (Apache Kafka applies it to the topics the stack creates; the embedded broker trims nothing).
    topic_retention_h: float = Field(default=168.0, gt=0)
    # A record whose handling keeps failing transiently (broker or database away) is retried this
    # long, then dead-lettered with the reason so that the stream goes on.
    retry_for_s: float = 600.0
    # The largest message the project sends on its own topics: Apache Kafka's default
    # (message.max.bytes). Larger commands are refused with 413 before anything is stored.
    message_max_bytes: int = Field(default=1024 * 1024, ge=256 * 1024)

    # --- database ------------------------------------------------------------
    database_url: str | None = Field(default=None, description="PostgreSQL URL (owner role)")
    # Bounded growth: how often each service tidies its tables, and what it keeps.
    housekeeping_every_s: float = 600.0
    # Ids of handled messages are kept this long to recognise redeliveries (which come in minutes).
    processed_retention_h: float = 168.0
    # Inference statistics older than this are folded into one row per replica and hour.
    statistics_fold_after_h: float = 24.0
    # Chunks of an artifact still incomplete after this long are dropped.
    orphan_chunks_after_h: float = 24.0

    # --- API -----------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_token: str | None = None
    # The API reads through a role that cannot write; `kafkaml up` creates it.
    api_database_url: str | None = None
    # How long a REST mutation waits for its outcome event before answering 202.
    command_timeout_s: float = 15.0
    # A command still waiting for another service's answer after this long ends rejected (504).
    command_deadline_s: float = 120.0
    # Larger request bodies are refused (413) before anything parses them; above the largest
    # valid one (a model's code may be 1,000,000 characters).
    api_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=2 * 1024 * 1024)
    # A browser's sign-in (the session cookie) ends this long after it began, or at sign-out.
    api_session_ttl_s: float = Field(default=12 * 3600.0, gt=0)

    # --- validation (the sandbox that runs a model's code before it is stored) ---
    validation_timeout_s: float = 60.0
    validation_memory_mb: int = 4096
    # The sandbox's confinement (docs/security.md): limits of each job's processes, soft = hard.
    # Process count: also checked from outside; RLIMIT_NPROC holds only under validation_uid.
    validation_processes: int = Field(default=64, ge=1)
    # Address space of each process; the frameworks alone map ~1.1 GB (TensorFlow), ~0.7 GB (PyTorch).
    validation_address_space_mb: int = Field(default=8192, ge=1024)
    validation_file_size_mb: int = Field(default=64, ge=1)
    validation_open_files: int = Field(default=256, ge=16)
    validation_cpu_s: int = Field(default=120, ge=1)
    # Run model code as this uid (and gid; default: the same number), never as the service's own.
    validation_uid: int | None = Field(default=None, ge=1)
    validation_gid: int | None = Field(default=None, ge=1)
    # Where each job's private folder is made (and removed); default: the system's temporary folder.
    validation_work_dir: Path | None = None

    # --- trainer -------------------------------------------------------------
    launcher: str = Field(default="local", description="local | kubernetes")
    trainer_memory_mb: int = 8192
    # Above this, a trainer re-reads its data from Kafka each epoch instead of keeping it decoded.
    trainer_cache_mb: int = 2048
    # How long a trainer waits for its control message before its result fails.
    data_timeout_s: float = 3600.0

    # --- inferencer ----------------------------------------------------------
    # An inference's replicas take everything else from their ServeModel spec (the jobs topic),
    # and the Kafka settings above.

    # --- stack and logging ---------------------------------------------------
    home: Path = Field(default=Path(".kafkaml"), description="State folder of a local stack")
    log_level: str = "INFO"

    # --- Kafka security (every client the project makes: shared/kafka_security.py) ---
    # How clients talk to the brokers: managed Kafka wants SASL_SSL (or SSL with client certificates).
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    # A SecretStr: its repr (in a log line or an error) shows stars, never the password.
    sasl_password: SecretStr | None = None
    # PEM files (paths). Without a CA file the system's trusted CAs verify the brokers.
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # Off only for brokers whose certificates do not name the address clients use (never in production).
    ssl_check_hostname: bool = True
    # --- isolation of user code ------------------------------------------------
    # The uid/gid the processes that run user code (validation children, local trainers and
    # inferencers) switch to. `kafkaml up` run as root sets them to its `kafkaml-sandbox` user.
    sandbox_uid: int | None = Field(default=None, ge=1, description="uid user code runs as (not root)")
    sandbox_gid: int | None = Field(default=None, ge=1, description="gid user code runs as")
    # --- the bus: signed messages (shared.events.signing) ----------------------
    # The key every service signs and verifies messages with; users who publish commands
    # sign them with it too. Comma-separated while a key is rotated: the first signs, all verify.
    bus_key: str | None = Field(default=None, repr=False)
    # The validator's own key (hex of HMAC(bus key, "validator")): `kafkaml up` derives it, so
    # the validator, which runs users' code in its children, never holds the bus key.
    validator_key: str | None = Field(default=None, repr=False)
    # --- fetch waits (docs/performance.md) ----------------------------------------
    # An idle consumer's fetch wait backs off from KAFKAML_FETCH_MAX_WAIT_MS (the busy wait) to
    # this: an idle stack stays quiet, and the first record after idle waits at most this long.
    fetch_idle_wait_ms: int = Field(default=300, ge=1)
    # ... and after 30 s without a record, this (each held fetch costs the embedded broker CPU):
    # a stack nobody uses stays under 5% of a core, its first answer after a pause takes longer.
    fetch_long_idle_wait_ms: int = Field(default=1000, ge=1)
    # --- warm trainers (local launcher) --------------------------------------
    # Frameworks the local launcher keeps one trainer process ready for, its framework imported
    # (comma-separated; empty: none, every trainer starts cold).
    trainer_warm: str = "tensorflow,pytorch"
    # --- the spool launcher (KAFKAML_LAUNCHER=spool) and its runner ---------------
    # The folder the orchestrator hands job specs over in, shared with the runner that starts
    # the workers (services/orchestrator/launchers/spool.py); default: $KAFKAML_HOME/spool.
    spool_dir: Path | None = None
    # --- the workers' own Kafka login ------------------------------------------------
    # Launchers give workers these instead of KAFKAML_SASL_USERNAME/PASSWORD (the services'),
    # so that a broker's ACLs can keep user code to the topics workers need.
    worker_sasl_username: str | None = None
    worker_sasl_password: SecretStr | None = None

    @property
    def brokers(self) -> str:
        if not self.bootstrap_servers:
            raise RuntimeError(
                "KAFKAML_BOOTSTRAP_SERVERS is not set: start a stack with `kafkaml up` "
                "or point it at your Kafka brokers."
            )
        return self.bootstrap_servers

    @property
    def db_url(self) -> str:
        if not self.database_url:
            raise RuntimeError(
                "KAFKAML_DATABASE_URL is not set: start a stack with `kafkaml up` "
                "or point it at your PostgreSQL server."
            )
        return self.database_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
