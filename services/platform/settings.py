"""Settings shared by every service, read from the environment in one place."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

EVENTS_TOPIC = "accordwatch.events"
DLQ_TOPIC = "accordwatch.events.dlq"


class CommonSettings(BaseSettings):
    """What every accordwatch process needs: Kafka, topics, API keys, logging."""

    model_config = SettingsConfigDict(
        env_prefix="ACCORDWATCH_", extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("ACCORDWATCH_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma-separated host:port.",
    )
    events_topic: str = Field(default=EVENTS_TOPIC, description="The events topic.")
    dlq_topic: str = Field(
        default=DLQ_TOPIC, description="Dead-letter topic: records a worker parked (not decodable, or not applicable).")
    dev_key: SecretStr | None = Field(
        default=None, description="A development API key with every scope (local stack only)."
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="JSON file of API keys: [{name, sha256, scopes}], hashes only (see `accordwatch keys`).",
    )
    page_token_key: SecretStr | None = Field(
        default=None,
        description="Key that signs page tokens (any secret string; without one tokens are still checked for "
        "edits, but anyone could mint one). Give every replica of a service the same key.",
    )
    home: Path = Field(
        default=Path(".local"), validation_alias="ACCORDWATCH_HOME",
        description="Folder for the local stack's state (broker data, SQLite file, worker data, logs).",
    )
    public_status: bool = Field(
        default=False,
        description="Serve the status pages, the deadline calendar and the alert feed without an API key "
        "(the local stack sets it; it binds loopback only).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level of the process."
    )
    kafka_metadata_max_age_s: float = Field(
        default=30.0, gt=0,
        description="How often Kafka clients refresh topic metadata (so added partitions are used within this).",
    )
    clock_file: Path | None = Field(
        default=None,
        description="A file holding the time the services take as now (an RFC 3339 instant), for demos and "
        "tests; unset: the system clock.",
    )


class WorkerSettings(CommonSettings):
    """What every faust worker (projector, alerts) needs; each service names its own variables."""

    service: ClassVar[str] = "worker"
    """The service name in metric names (accordwatch_<service>_...)."""

    api_host: str = Field(default="127.0.0.1", description="Address the worker's /metrics binds to.")
    worker_metrics_port: int = Field(default=9180, description="Port of the worker's /metrics.")
    consumer_group: str = Field(default="accordwatch-worker", description="Kafka consumer group.")
    batch_max: int = Field(default=1000, ge=1, description="Most records applied in one transaction.")
    batch_within_s: float = Field(default=0.02, gt=0, description="How long to wait to fill a batch.")
    session_timeout_s: float = Field(default=10.0, ge=6, description="How soon a dead worker's partitions move.")
    retry_max_s: float = Field(
        default=30.0, gt=0, validation_alias="ACCORDWATCH_WORKER_RETRY_MAX_S",
        description="Longest wait between two tries of a batch while the database or the DLQ is away.",
    )
    sqlite_busy_timeout_s: float = Field(
        default=60.0, ge=0, validation_alias="ACCORDWATCH_WORKER_SQLITE_BUSY_TIMEOUT_S",
        description="How long a worker's SQLite write waits for a lock before the batch is retried.",
    )
