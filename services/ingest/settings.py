"""Ingest settings."""

from __future__ import annotations

from pydantic import Field

from services.platform.settings import CommonSettings


class IngestSettings(CommonSettings):
    """The ingest HTTP service: where it listens, its limits, and how long Kafka may take."""

    host: str = Field(default="127.0.0.1", validation_alias="ACCORDWATCH_INGEST_HOST")
    port: int = Field(default=8080, validation_alias="ACCORDWATCH_INGEST_PORT")
    workers: int = Field(default=1, ge=1, validation_alias="ACCORDWATCH_INGEST_WORKERS")
    max_event_bytes: int = Field(default=1_048_576, validation_alias="ACCORDWATCH_INGEST_MAX_EVENT_BYTES")
    max_batch_bytes: int = Field(default=10_485_760, validation_alias="ACCORDWATCH_INGEST_MAX_BATCH_BYTES")
    max_batch_events: int = Field(default=10_000, validation_alias="ACCORDWATCH_INGEST_MAX_BATCH_EVENTS")
    produce_timeout_s: float = Field(
        default=5.0, gt=0, validation_alias="ACCORDWATCH_INGEST_PRODUCE_TIMEOUT_S",
        description="How long a request waits for Kafka's acknowledgement before answering 503.",
    )
    linger_ms: int = Field(default=5, ge=0, validation_alias="ACCORDWATCH_INGEST_LINGER_MS")
