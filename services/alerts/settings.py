"""Alerts settings (worker, delivery and the subscriptions API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from services.platform.settings import WorkerSettings

DEFAULT_RULES = Path(__file__).resolve().parents[2] / "deploy" / "alerts" / "rules.yaml"
SVIX_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class AlertsSettings(WorkerSettings):
    """The alerts worker (rules, timers, webhook delivery) and its HTTP API."""

    service: ClassVar[str] = "alerts"

    alerts_database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ACCORDWATCH_ALERTS_DATABASE_URL", "ALERTS_DATABASE_URL"),
        description="SQLAlchemy URL of alert state and outbox (default: SQLite alerts.db in ACCORDWATCH_HOME).",
    )
    status_page_url: str | None = Field(
        default=None, validation_alias="ACCORDWATCH_STATUS_PAGE_URL",
        description="Public URL of the status page (…/status); the alert feed links each entry to its subject there.",
    )
    rules_file: Path = Field(
        default=DEFAULT_RULES, validation_alias="ACCORDWATCH_ALERTS_RULES",
        description="The rules YAML file, validated at start.",
    )
    api_host: str = Field(default="127.0.0.1", validation_alias="ACCORDWATCH_ALERTS_HOST")
    api_port: int = Field(default=8082, validation_alias="ACCORDWATCH_ALERTS_PORT")
    max_body_bytes: int = Field(
        default=65_536, ge=1024, validation_alias="ACCORDWATCH_ALERTS_MAX_BODY_BYTES",
        description="The largest request body the alerts API reads (413 above this, before the key is checked).",
    )
    worker_metrics_port: int = Field(
        default=9182, validation_alias="ACCORDWATCH_ALERTS_METRICS_PORT",
        description="Port of the alerts worker's /metrics.",
    )
    consumer_group: str = Field(default="accordwatch-alerts", validation_alias="ACCORDWATCH_ALERTS_GROUP")
    batch_max: int = Field(default=500, ge=1, validation_alias="ACCORDWATCH_ALERTS_BATCH_MAX")
    batch_within_s: float = Field(default=0.02, gt=0, validation_alias="ACCORDWATCH_ALERTS_BATCH_WITHIN_S")
    session_timeout_s: float = Field(default=10.0, ge=6, validation_alias="ACCORDWATCH_ALERTS_SESSION_TIMEOUT_S")
    tick_s: float = Field(
        default=1.0, gt=0, validation_alias="ACCORDWATCH_ALERTS_TICK_S",
        description="How often the clock is checked for reminders and expiries.",
    )
    notify_max_age_s: float = Field(
        default=7 * 86400, ge=0, validation_alias="ACCORDWATCH_ALERTS_NOTIFY_MAX_AGE_S",
        description="Alerts about facts older than this when first seen are recorded, not sent (history, replays).",
    )
    late_after_s: float = Field(
        default=60.0, ge=0, validation_alias="ACCORDWATCH_ALERTS_LATE_AFTER_S",
        description="A reminder sent more than this after its time is marked late.",
    )
    webhook_allow: str = Field(
        default="", validation_alias=AliasChoices("ACCORDWATCH_WEBHOOK_ALLOW", "ACCORDWATCH_ALERTS_WEBHOOK_ALLOW"),
        description="Comma-separated host names and IP networks webhooks may reach although private.",
    )
    webhook_secret_keys: SecretStr | None = Field(
        default=None, validation_alias="ACCORDWATCH_WEBHOOK_SECRET_KEYS",
        description="Fernet keys that seal webhook signing secrets at rest, comma-separated, newest first "
        "(the first seals, every one opens).",
    )
    webhook_secret_keys_file: Path | None = Field(
        default=None, validation_alias="ACCORDWATCH_WEBHOOK_SECRET_KEYS_FILE",
        description="A file holding those keys (one per line or comma-separated), e.g. a compose secret.",
    )
    secret_grace_s: float = Field(
        default=86400.0, ge=0, le=30 * 86400, validation_alias="ACCORDWATCH_WEBHOOK_SECRET_GRACE_S",
        description="Default time after a secret rotation during which the old secret still signs too.",
    )
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = Field(
        default=SVIX_SCHEDULE, validation_alias="ACCORDWATCH_WEBHOOK_RETRY_SCHEDULE",
        description="Seconds before each delivery attempt, comma-separated (the first is the first attempt).",
    )
    delivery_timeout_s: float = Field(
        default=10.0, gt=0, validation_alias="ACCORDWATCH_WEBHOOK_TIMEOUT_S",
        description="Timeout of one webhook request (connect + response).",
    )
    max_response_bytes: int = Field(
        default=65_536, ge=0, validation_alias="ACCORDWATCH_WEBHOOK_MAX_RESPONSE_BYTES",
        description="How much of a receiver's answer is read; a longer body is cut off and the connection closed.",
    )
    endpoint_concurrency: int = Field(
        default=16, ge=1, validation_alias="ACCORDWATCH_WEBHOOK_ENDPOINT_CONCURRENCY",
        description="Requests in flight per subscription; a slow endpoint only ever holds its own.",
    )
    endpoint_buffer: int = Field(
        default=64, ge=0, validation_alias="ACCORDWATCH_WEBHOOK_ENDPOINT_BUFFER",
        description="Fresh deliveries a subscription may hold in memory beyond its lanes; the rest wait in the outbox.",
    )
    disable_after_failures: int = Field(
        default=5, ge=1, validation_alias="ACCORDWATCH_WEBHOOK_DISABLE_AFTER",
        description="Consecutive deliveries that exhausted their retries before a subscription is disabled.",
    )
    sqlite_cache_mb: int = Field(
        default=16, ge=2, validation_alias="ACCORDWATCH_ALERTS_SQLITE_CACHE_MB",
        description="Page cache of the alerts worker's SQLite connection (the outbox's indexes are written at "
                    "random: with SQLite's 2 MB default every booking re-read its pages as the tables grew).",
    )
    max_retry_after_s: float = Field(
        default=36000.0, ge=0, validation_alias="ACCORDWATCH_WEBHOOK_MAX_RETRY_AFTER_S",
        description="Cap on a receiver's Retry-After.",
    )

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, raw: object) -> object:
        if isinstance(raw, str):
            items = [part.strip() for part in raw.split(",") if part.strip()]
            if not items:
                raise ValueError("the retry schedule needs at least one attempt")
            return tuple(float(item) for item in items)
        return raw

    def sealing_keys(self) -> list[str]:
        """The configured sealing keys, newest first."""
        raw = self.webhook_secret_keys.get_secret_value() if self.webhook_secret_keys else ""
        if self.webhook_secret_keys_file is not None:
            raw += "," + self.webhook_secret_keys_file.read_text()
        return [key.strip() for key in raw.replace("\n", ",").split(",") if key.strip()]

    @property
    def database_url(self) -> str:
        """The alert store's URL."""
        return self.alerts_database_url or f"sqlite:///{self.home / 'alerts.db'}"

    @property
    def allow_list(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.webhook_allow.split(",") if part.strip())
