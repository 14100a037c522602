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

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from onepipe.schemas.errors import ConfigError
from onepipe.sinks.lake import LakeStore, S3Options, open_lake
from onepipe.tables.kafka.clients import KafkaClients

ENV_PREFIX = "ONEPIPE_"


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
    data_dir: Path = Field(Path("data"), description="Local state: RocksDB tables, Faust data.")
    lake_url: str = Field(
        "", description="Lake root, file:///path or s3://bucket/prefix; default <data_dir>/lake."
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3 API endpoint for s3:// lakes (MinIO, moto); default: AWS."
    )
    s3_region: str | None = Field(None, description="S3 region; default: the AWS chain's.")
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
    example_agents: bool = Field(
        False,
        description="Run agents/example.py (on by `onepipe dev`): it reads `widgets`, and a "
        "subscription to a missing topic makes brokers with auto-creation create it.",
    )
    registry_topic: str = Field("_onepipe_registry", description="Compacted registry log topic.")
    registry_fetch_wait_ms: int = Field(
        100, ge=1, le=5000,
        description="Longest a registry read waits for new records (bounds write latency).",
    )
    replication_factor: int = Field(1, ge=1, le=32, description="For topics onepipe creates.")
    max_request_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest HTTP request body accepted (413 above)."
    )
    max_records_per_request: int = Field(
        100_000, ge=1, description="Most records one produce request may carry."
    )
    idempotent_producer: bool = Field(
        True,
        description="Kafka idempotent producer; set false for brokers without InitProducerId "
        "(tansu).",
    )
    produce_timeout: float = Field(
        30.0, gt=0, description="Seconds a produce request waits for broker acks."
    )
    linger_ms: int = Field(2, ge=0, le=1000, description="Producer linger: batching vs latency.")
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
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the worker."
    )
    catalog_dir: Path | None = Field(
        None, description="A catalog folder the worker applies at start (optional)."
    )
    compact_memory_limit: str = Field(
        "1GB", description="DuckDB memory_limit of the compactor, e.g. 512MB, 1GB, 4GiB."
    )
    compact_threads: int = Field(2, ge=1, le=256, description="DuckDB threads of the compactor.")
    compact_retention_seconds: float = Field(
        3600.0, ge=0,
        description="How long superseded clean files stay readable after a new version.",
    )
    compact_interval_seconds: float = Field(
        0.0, ge=0,
        description="Compact every registered topic with a raw lake this often (one worker "
        "per topic per interval); 0 turns periodic compaction off.",
    )
    compact_task_timeout_seconds: float = Field(
        300.0, gt=0,
        description="A day task sent to the worker pool without a result for this long is "
        "run by the compacting worker itself.",
    )
    compact_workers_enabled: bool = Field(
        True,
        description="Run a compaction day-task worker in this worker; scheduled compactions "
        "then send their day tasks to the pool.",
    )

    @field_validator("broker")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        servers = [s.strip().removeprefix("kafka://") for s in value.split(",") if s.strip()]
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit():
                msg = f"expected host:port[,host:port...], got {value!r}"
                raise ValueError(msg)
        if not servers:
            msg = "expected at least one host:port"
            raise ValueError(msg)
        return ",".join(servers)

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
        )

    def open_lake(self) -> LakeStore:
        """The lake these settings name (nothing is contacted until first use); S3
        credentials come from the usual AWS variables."""
        s3 = S3Options(endpoint_url=self.s3_endpoint_url, region=self.s3_region)
        return open_lake(self.resolved_lake_url, s3)

    @property
    def resolved_lake_url(self) -> str:
        return self.lake_url or (self.data_dir.resolve() / "lake").as_uri()

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (and explicit overrides); raise ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            received = err.get("input")
            problems.append(f"{name}: {err['msg']} (got {received!r})")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from exc
