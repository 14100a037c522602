"""Worker settings: one frozen object read from ``ONEPIPE_*`` environment variables.

Read once, when :func:`load_settings` is called (never at import time), so tests and the
CLI build settings explicitly. A wrong value fails at start with a
:class:`~onepipe.schemas.errors.ConfigError` that names the variable, what it got and what it
takes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from onepipe.app.settings_checks import ENV_PREFIX, kafka_security_problem, pairing_problem
from onepipe.schemas.errors import ConfigError
from onepipe.schemas.schema_limits import SchemaLimits
from onepipe.sinks.lake import LakeStore, S3Options, open_lake
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.security import KafkaSecurity, Protocol, SaslMechanism


class Settings(BaseSettings):
    """Everything a worker needs; every field is ``ONEPIPE_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", validate_default=True
    )

    broker: str = Field(
        "127.0.0.1:9092",
        description="Kafka bootstrap servers, comma-separated host:port (kafka:// allowed).",
    )
    app_id: str = Field("onepipe", description="Faust app id: consumer-group and topic prefix.")
    web_host: str = Field("127.0.0.1", description="Interface the HTTP API listens on.")
    web_port: int = Field(8080, ge=0, le=65535, description="Port of the HTTP API.")
    tokens_file: Path | None = Field(
        None, description="API tokens file (`onepipe tokens add`); unset: the API is open.")
    auth_reads: Literal["open", "token"] = Field(
        "open", description="`token`: reads need a token too (the probes never do).")
    rate_limit_per_second: float = Field(0.0, ge=0, description="Requests/s per token; 0: off.")
    rate_limit_burst: int | None = Field(
        None, ge=1, description="Requests a token may send at once; default twice the rate.")
    allow_open_network: bool = Field(
        False, description="Let a worker without a tokens file listen beyond loopback.")
    token: SecretStr | None = Field(None, description="The token CLI commands send a worker.")
    data_dir: Path = Field(Path("data"), description="Local state: RocksDB tables, Faust data.")
    lake_url: str = Field(
        "", description="Lake root, file:///path or s3://bucket/prefix; default <data_dir>/lake."
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3 API endpoint for s3:// lakes (MinIO, moto); default: AWS."
    )
    s3_region: str | None = Field(None, description="S3 region; default: the AWS chain's.")
    iceberg_catalog_uri: str = Field(
        "", description="SQLAlchemy URI of the Iceberg SQL catalog of the clean lake "
        "(postgresql+psycopg://user@host/db in production); default "
        "sqlite:///<data_dir>/iceberg.db. Every worker of one lake must use the same one.")
    archive_buffer_bytes: int = Field(
        256 * 1024 * 1024, ge=1024 * 1024,
        description="Memory all archive buffers of a worker may hold before flushing.",
    )
    archive_enabled: bool = Field(True, description="Run the archive agent in the worker.")
    dedup_enabled: bool = Field(
        True, description="Run the dedup agent in the worker: keyed topics into <topic>.unique."
    )
    checksums_enabled: bool = Field(
        True, description="Run the checksum agent in the worker: <topic>.unique into per-day "
        "checksum tables, published to <topic>.checksums (compared by verify).")
    sinks_enabled: bool = Field(
        True, description="Run the online sinks the catalog declares (<topic>.unique into "
        "SQLite/PostgreSQL/MySQL tables); each sink's DSN comes from its dsn_env variable.")
    checksum_retention_days: int = Field(
        400, ge=1, description="Days of checksum-table figures kept; older days are dropped.")
    example_agents: bool = Field(False, description="Run the example agent (on by `onepipe "
                                 "dev`): price alerts from `widgets`, both in catalog/.")
    agents: str = Field("", description="Modules of developers' agents to run, comma-"
                        "separated (and entry points of the group onepipe.agents).")
    registry_topic: str = Field("_onepipe_registry", description="Compacted registry log topic.")
    registry_fetch_wait_ms: int = Field(
        100, ge=1, le=5000,
        description="Longest a registry read waits for new records (bounds write latency).",
    )
    replication_factor: int = Field(1, ge=1, le=32, description="For topics onepipe creates.")
    # Limits of the HTTP API (README "Limits"); each refusal names its variable.
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024,
                                   description="Largest HTTP request body accepted (413).")
    max_records_per_request: int = Field(100_000, ge=1,
                                         description="Most records one produce request takes.")
    max_record_bytes: int = Field(1_000_000, ge=1024, description="Largest encoded record "
                                  "accepted (413): Kafka's default message limit is 1 MB.")
    max_schema_bytes: int = Field(512 * 1024, ge=1024, description="Largest schema accepted "
                                  "(the registry log keeps each in one Kafka record).")
    max_schema_depth: int = Field(  # at most what every worker's replay parses (REPLAY_LIMITS)
        64, ge=8, le=100, description="Deepest JSON nesting of a schema accepted (bounds the "
        "recursion of every parser that reads it, at every worker's start).")
    max_schema_fields: int = Field(
        2_000, ge=10, le=10_000, description="Most fields (plus branches of unions wider than "
        "two) of a schema accepted; Avro's compatibility check costs their square.")
    max_schema_union: int = Field(100, ge=2, le=1_000, description="Most branches of one "
                                  "union accepted (a union against a union costs more).")
    schema_check_seconds: float = Field(10.0, gt=0, description="Longest parsing and checking "
                                        "one submitted schema may take (422 after).")
    request_read_seconds: float = Field(30.0, gt=0, description="Longest a request body (or a "
                                        "v3 stream's silence) may take to arrive (408 after).")
    idle_connection_seconds: float = Field(15.0, gt=0, description="An HTTP connection idle "
                                           "(or still sending its headers) this long is closed.")
    idempotent_producer: bool = Field(
        True,
        description="Kafka idempotent producer; set false for brokers without InitProducerId "
        "(tansu).",
    )
    produce_timeout: float = Field(
        30.0, gt=0, description="Seconds a produce request waits for broker acks.")
    linger_ms: int = Field(2, ge=0, le=1000, description="Producer linger: batching vs latency.")
    kafka_client: Literal["librdkafka", "aiokafka"] = Field(
        "librdkafka", description="Client of the produce endpoint, registry and replay.")
    session_timeout: float = Field(
        10.0, gt=0, description="Consumer-group session timeout in seconds (short on tansu)."
    )
    rebalance_timeout: float = Field(10.0, gt=0, description="Group rebalance timeout, seconds.")
    monitor_interval_seconds: float = Field(
        5.0, ge=0,
        description="Seconds between consumer-lag samples (/status, /metrics); 0 turns the "
        "lag monitor off.",
    )
    stuck_after_seconds: float = Field(
        60.0, gt=0,
        description="A consumer whose lag has not shrunk for this long while records keep "
        "arriving is flagged stuck.",
    )
    state_memory_bytes: int = Field(
        128 * 1024 * 1024, ge=8 * 1024 * 1024,
        description="The block cache all RocksDB stores of a worker share (dedup and "
        "checksum tables; index and filter blocks included). Memtables come on top: 2 x 16 "
        "MiB per deduplicated partition, 2 x 4 MiB per checksum column family at most.",
    )
    stop_timeout_seconds: float = Field(
        8.0, gt=0, le=300,
        description="Longest a stop may take after SIGTERM or SIGINT: the agents flush and "
        "commit, and whatever has not ended by then is cut short (logged) and the process "
        "exits, child processes included. Keep it under the platform's grace period "
        "(Kubernetes 30 s, docker stop 10 s).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the worker."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Worker log lines: text for people, json for log collectors "
        "(one object per line: time, level, logger, message, topic/partition/offset when "
        "known, exception).")
    event_loop: Literal["uvloop", "asyncio"] = Field("uvloop", description="The worker's "
        "event loop: uvloop (BENCHMARKS.md) or asyncio (the fallback without uvloop).")
    kafka_consumer_client: Literal["librdkafka", "aiokafka"] = Field(
        "librdkafka", description="Client of the batch agents' group consumers: librdkafka "
        "(hands records over as columns, off the event loop) or aiokafka (BENCHMARKS.md)."
    )
    kafka_security_protocol: Protocol = Field(
        "PLAINTEXT", description="The brokers' listener protocol: PLAINTEXT, SSL, "
        "SASL_PLAINTEXT or SASL_SSL; reaches every Kafka client, Faust's included.")
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* protocols).")
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (never logged).")
    kafka_ssl_cafile: FilePath | None = Field(
        None, description="PEM file of the CA(s) that signed the brokers' certificates; "
        "default: the system's CAs (SSL and SASL_SSL).")
    kafka_ssl_certfile: FilePath | None = Field(
        None, description="PEM client certificate, for brokers that require one.")
    kafka_ssl_keyfile: FilePath | None = Field(
        None, description="PEM private key of the client certificate, if not inside it.")
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted client key (never logged).")
    catalog_dir: Path | None = Field(
        None, description="A catalog folder the worker applies at start (optional)."
    )
    compact_memory_limit: str = Field(
        "1GB", description="DuckDB memory_limit of the compactor, e.g. 512MB, 1GB, 4GiB."
    )
    compact_threads: int = Field(2, ge=1, le=256, description="DuckDB threads of the compactor.")
    compact_retention_seconds: float = Field(
        3600.0, ge=0,
        description="How long an Iceberg snapshot of the clean lake stays readable (time "
        "travel, readers pinned to it) after a newer one; then it is expired and its files "
        "deleted.",
    )
    compact_interval_seconds: float = Field(
        0.0, ge=0,
        description="Compact every registered topic with a raw lake this often (one worker "
        "per topic per interval); 0 turns periodic compaction off.",
    )
    compact_task_timeout_seconds: float = Field(
        300.0, gt=0, description="A day task sent to the worker pool without a result for "
        "this long is run by the compacting worker itself.")
    compact_workers_enabled: bool = Field(
        True, description="Run a compaction day-task worker in this worker; scheduled "
        "compactions then send their day tasks to the pool.")
    agent_processes: int = Field(
        1, ge=1, le=64, description="Processes the archive, dedup, checksum and sink agents "
        "run in: each one more member of their groups (as a further worker is), on a core "
        "of its own; the worker's memory budgets are shared among them.")
    agent_processes_only: bool = Field(
        False, description="Run those agents in the agent processes only, none in the "
        "worker's own process: its event loop then serves the HTTP API, the registry and "
        "the developers' agents alone. Needs ONEPIPE_AGENT_PROCESSES of 2 or more.")

    @field_validator("broker")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        servers = [s.strip().removeprefix("kafka://") for s in value.split(",") if s.strip()]
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not (port.isascii() and port.isdigit()):
                msg = f"expected host:port[,host:port...], got {value!r}"
                raise ValueError(msg)
        if not servers:
            msg = "expected at least one host:port"
            raise ValueError(msg)
        return ",".join(servers)

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _together(self) -> Settings:
        """Values that only make sense together (onepipe.app.settings_checks)."""
        problem = kafka_security_problem(self) or pairing_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @field_validator("compact_memory_limit")
    @classmethod
    def _memory_size(cls, value: str) -> str:
        if not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B|B)", value.strip(), re.IGNORECASE):
            msg = f"expected a size like 512MB, 1GB or 4GiB, got {value!r}"
            raise ValueError(msg)
        return value.strip()

    @field_validator("lake_url")
    @classmethod
    def _lake_scheme(cls, value: str) -> str:
        if value and not value.startswith(("file://", "s3://")):
            msg = f"expected file:///path or s3://bucket/prefix, got {value!r}"
            raise ValueError(msg)
        return value

    @property
    def kafka(self) -> KafkaClients:
        """The one Kafka client factory, configured from these settings."""
        return KafkaClients(
            bootstrap=self.broker,
            idempotent=self.idempotent_producer,  # tansu has none (DESIGN.md)
            request_timeout=self.produce_timeout,
            session_timeout=self.session_timeout,
            rebalance_timeout=self.rebalance_timeout,
            security=self.kafka_security,
            consumer_client=self.kafka_consumer_client,
        )

    @property
    def kafka_security(self) -> KafkaSecurity:
        """The TLS/SASL part of :attr:`kafka` (the Faust app takes it too)."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=_secret(self.kafka_sasl_password),
            ssl_cafile=_path(self.kafka_ssl_cafile),
            ssl_certfile=_path(self.kafka_ssl_certfile),
            ssl_keyfile=_path(self.kafka_ssl_keyfile),
            ssl_key_password=_secret(self.kafka_ssl_key_password),
        )

    def open_lake(self) -> LakeStore:
        """The lake these settings name (nothing is contacted until first use); S3
        credentials come from the usual AWS variables."""
        s3 = S3Options(endpoint_url=self.s3_endpoint_url, region=self.s3_region)
        return open_lake(self.resolved_lake_url, s3)

    @property
    def schema_limits(self) -> SchemaLimits:
        """What a schema sent to the registry or the catalog may be."""
        return SchemaLimits(max_bytes=self.max_schema_bytes, max_depth=self.max_schema_depth,
                            max_fields=self.max_schema_fields, max_union=self.max_schema_union)

    @property
    def registry_journal_path(self) -> Path:
        """The worker's copy of the registry log (onepipe.tables.registry_journal)."""
        return self.data_dir / "registry" / f"{self.registry_topic}.journal"

    @property
    def resolved_catalog_uri(self) -> str:
        """The clean lake's Iceberg catalog (onepipe.sinks.lake.iceberg)."""
        return self.iceberg_catalog_uri or f"sqlite:///{self.data_dir.resolve() / 'iceberg.db'}"

    @property
    def resolved_lake_url(self) -> str:
        return self.lake_url or (self.data_dir.resolve() / "lake").as_uri()

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _path(value: Path | None) -> str | None:
    return str(value) if value is not None else None


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (and explicit overrides); raise ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:
                # A check across fields: its message names the variables, and the input
                # (every value, secrets included) is not repeated.
                problems.append(err["msg"].removeprefix("Value error, "))
                continue
            name = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            received = err.get("input")
            problems.append(f"{name}: {err['msg']} (got {received!r})")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from exc
