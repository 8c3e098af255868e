"""Projector settings (worker and query API)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import AliasChoices, Field

from services.platform.settings import WorkerSettings

DEFAULT_DATABASE_URL = "sqlite:///.local/accordwatch.db"


class ProjectorSettings(WorkerSettings):
    """The projector worker and its query API."""

    service: ClassVar[str] = "projector"

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("ACCORDWATCH_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL of the read model (SQLite file or postgresql://).",
    )
    api_host: str = Field(default="127.0.0.1", validation_alias="ACCORDWATCH_PROJECTOR_HOST")
    api_port: int = Field(default=8081, validation_alias="ACCORDWATCH_PROJECTOR_PORT")
    gauges_ttl_s: float = Field(
        default=5.0, ge=0, validation_alias="ACCORDWATCH_PROJECTOR_GAUGES_TTL_S",
        description="How long the query API's domain gauges are kept before /metrics reads them again.",
    )
    max_body_bytes: int = Field(
        default=16_384, ge=0, validation_alias="ACCORDWATCH_PROJECTOR_MAX_BODY_BYTES",
        description="The largest request body the query API reads (it takes none; 413 above this).",
    )
    worker_metrics_port: int = Field(
        default=9181, validation_alias="ACCORDWATCH_PROJECTOR_METRICS_PORT",
        description="Port of the projector worker's /metrics.",
    )
    consumer_group: str = Field(
        default="accordwatch-projector", validation_alias="ACCORDWATCH_PROJECTOR_GROUP"
    )
    batch_max: int = Field(default=1000, ge=1, validation_alias="ACCORDWATCH_PROJECTOR_BATCH_MAX")
    batch_within_s: float = Field(
        default=0.02, gt=0, validation_alias="ACCORDWATCH_PROJECTOR_BATCH_WITHIN_S",
        description="How long the worker waits to fill a batch before applying what it has.",
    )
    state_cache_subjects: int = Field(
        default=1000, ge=0, validation_alias="ACCORDWATCH_PROJECTOR_STATE_CACHE_SUBJECTS",
        description="How many subjects' folded states the writer keeps in memory between batches.",
    )
    replay_hold_events: int = Field(
        default=100_000, ge=1, validation_alias="ACCORDWATCH_PROJECTOR_REPLAY_HOLD_EVENTS",
        description="How many events a replay holds in memory (about 3 KB each) before folding them.",
    )
    replay_processes: int = Field(
        default=2, ge=1, validation_alias="ACCORDWATCH_PROJECTOR_REPLAY_PROCESSES",
        description="Processes a replay rebuilds partitions in (a rebuild has no order across subjects).",
    )
    due_check_s: float = Field(
        default=1.0, gt=0, validation_alias="ACCORDWATCH_PROJECTOR_DUE_CHECK_S",
        description="How often the worker looks for subjects and policies whose scheduled effect has come.",
    )
    session_timeout_s: float = Field(
        default=10.0, ge=6, validation_alias="ACCORDWATCH_PROJECTOR_SESSION_TIMEOUT_S",
        description="Consumer-group session timeout: how soon a dead worker's partitions are reassigned.",
    )
