"""Settings shared by every service, read from the environment in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
    dlq_topic: str = Field(default=DLQ_TOPIC, description="Dead-letter topic for undecodable records.")
    dev_key: SecretStr | None = Field(
        default=None, description="A development API key with every scope (local stack only)."
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="JSON file of API keys: [{name, sha256, scopes}], hashes only (see `accordwatch keys`).",
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
