"""Ingest settings."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from services.platform.kafka import MAX_REQUEST_BYTES
from services.platform.settings import CommonSettings


class IngestSettings(CommonSettings):
    """The ingest HTTP service: where it listens, its limits, and how long Kafka may take."""

    host: str = Field(default="127.0.0.1", validation_alias="ACCORDWATCH_INGEST_HOST")
    port: int = Field(default=8080, validation_alias="ACCORDWATCH_INGEST_PORT")
    workers: int = Field(default=1, ge=1, validation_alias="ACCORDWATCH_INGEST_WORKERS")
    max_event_bytes: int = Field(
        default=1_000_000, ge=1024, validation_alias="ACCORDWATCH_INGEST_MAX_EVENT_BYTES",
        description="The largest event, counted as Kafka counts its record (the event JSON, key and headers); "
        "also the body limit of POST /v1/events. Must stay below the producer's max request size.",
    )
    max_batch_bytes: int = Field(default=10_485_760, ge=1024, validation_alias="ACCORDWATCH_INGEST_MAX_BATCH_BYTES")
    max_batch_events: int = Field(default=10_000, ge=1, validation_alias="ACCORDWATCH_INGEST_MAX_BATCH_EVENTS")
    kafka_max_request_bytes: int = Field(
        default=MAX_REQUEST_BYTES, validation_alias="ACCORDWATCH_INGEST_KAFKA_MAX_REQUEST_BYTES",
        description="The producer's max.request.size (keep it within the broker's message.max.bytes).",
    )
    produce_timeout_s: float = Field(
        default=5.0, gt=0, validation_alias="ACCORDWATCH_INGEST_PRODUCE_TIMEOUT_S",
        description="How long a request waits for Kafka's acknowledgement before answering 503.",
    )
    linger_ms: int = Field(default=5, ge=0, validation_alias="ACCORDWATCH_INGEST_LINGER_MS")

    @model_validator(mode="after")
    def _event_fits_a_request(self) -> Self:
        if self.max_event_bytes >= self.kafka_max_request_bytes:
            raise ValueError(
                f"ACCORDWATCH_INGEST_MAX_EVENT_BYTES ({self.max_event_bytes}) must be below the producer's "
                f"max request size ({self.kafka_max_request_bytes}), or Kafka refuses events ingest accepted"
            )
        return self

    @property
    def max_body_bytes(self) -> int:
        """The largest body any route takes (the edge limit; each route applies its own)."""
        return max(self.max_event_bytes, self.max_batch_bytes)
