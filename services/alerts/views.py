"""What the alerts API takes and answers: `...In` and `...Out` models, and the functions that fill them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schemas.envelope import SLUG, SLUG_MAX
from services.alerts.delivery import message_id
from services.alerts.rules import Severity
from services.alerts.store import SubscriptionRow

RuleId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
SubjectId = Annotated[str, StringConstraints(min_length=1, max_length=SLUG_MAX, pattern=SLUG)]


class SubscriptionIn(BaseModel):
    """A webhook subscription to create: where to, and which alerts (empty filters pass all)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="http(s) URL of the receiver (a public address).")
    description: str | None = Field(default=None, max_length=500)
    rules: list[RuleId] = Field(default_factory=list, max_length=50, description="Rule ids; empty: every rule.")
    severities: list[Severity] = Field(default_factory=list, max_length=3,
                                       description="Severities; empty: every severity.")
    subjects: list[SubjectId] = Field(
        default_factory=list, max_length=200,
        description="Agreement or case ids (an alert matches by its subject or what it affects); empty: all.",
    )


class Out(BaseModel):
    """Base of every response body."""

    model_config = ConfigDict(extra="forbid")


class SecretRotationIn(BaseModel):
    """How long the secret being replaced keeps signing too (default: ACCORDWATCH_WEBHOOK_SECRET_GRACE_S)."""

    model_config = ConfigDict(extra="forbid")

    grace_period_s: int | None = Field(default=None, ge=0, le=30 * 86400,
                                       description="Seconds; 0 stops the old secret at once.")


class SecretRotatedOut(BaseModel):
    """The new signing secret, shown this once."""

    model_config = ConfigDict(extra="forbid")

    id: UUID
    secret: str = Field(description="The new signing secret (whsec_...): keep it, it is not shown again.")
    previous_valid_until: datetime | None = Field(description="Until when the old secret signs too.")


class RuleOut(Out):
    """One rule in force."""

    id: str
    kind: str
    severity: Severity
    description: str | None
    enabled: bool
    lead_times: list[str] = Field(description="Reminder lead times, longest first (72h, 24h, 1h).")
    resolve_after: str | None


class RulesOut(Out):
    """The rules in force and the policies they track."""

    tracked_policies: list[str]
    items: list[RuleOut]


class AlertOut(Out):
    """An alert: a stable fingerprint (rule/subject/cause), firing then resolved."""

    id: str = Field(description="The fingerprint: rule/subject/cause.")
    rule: str
    severity: Severity
    subject: str
    cause: str
    state: Literal["firing", "resolved"]
    summary: str
    occurred_at: datetime
    fired_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    historical: bool = Field(description="Old news when first seen: recorded, never sent.")
    episode: int = Field(ge=1, description="How many times it fired (its cause may return after it resolved).")
    details: dict[str, Any]


class AlertPageOut(Out):
    """A page of alerts, newest first."""

    items: list[AlertOut]
    next: str | None = Field(description="Token of the next page; null on the last.")


class NotificationOut(Out):
    """One notification-worthy change of an alert."""

    transition: str
    type: str
    at: datetime
    late: bool
    sent: bool
    suppressed: str | None


class AlertDetailOut(AlertOut):
    """An alert with its notifications."""

    notifications: list[NotificationOut]


class SubscriptionOut(Out):
    """A subscription as the API shows it (never its secret, except once at creation or rotation)."""

    id: UUID
    url: str
    description: str | None
    rules: list[str]
    severities: list[Severity]
    subjects: list[str]
    status: Literal["active", "disabled"]
    disabled_reason: str | None
    disabled_at: datetime | None
    consecutive_failures: int
    created_at: datetime


class SubscriptionCreatedOut(SubscriptionOut):
    """A new subscription with its signing secret, shown this once."""

    secret: str = Field(description="The signing secret (whsec_...): keep it, it is not shown again.")


class SubscriptionPageOut(Out):
    """A page of subscriptions."""

    items: list[SubscriptionOut]
    next: str | None


class AttemptOut(Out):
    """One HTTP attempt of a delivery."""

    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float | None


class DeliveryOut(Out):
    """A delivery (one webhook message to one subscription) with its attempts."""

    id: UUID
    webhook_id: str = Field(description="The webhook-id header: the same on every attempt.")
    subscription_id: UUID
    type: str
    status: Literal["pending", "succeeded", "failed", "cancelled"]
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    completed_at: datetime | None
    payload: dict[str, Any]
    log: list[AttemptOut]


class DeliveryPageOut(Out):
    """A page of deliveries, newest first."""

    items: list[DeliveryOut]
    next: str | None


class PingOut(Out):
    """What a test ping got."""

    delivery_id: UUID
    webhook_id: str
    outcome: str
    status_code: int | None
    error: str | None
    duration_ms: float


def subscription_out(sub: SubscriptionRow) -> SubscriptionOut:
    """A subscription as the API shows it (never its secret)."""
    return SubscriptionOut(
        id=sub.id, url=sub.url, description=sub.description, rules=sub.rules,
        severities=sub.severities,
        subjects=sub.subjects, status=sub.status,
        disabled_reason=sub.disabled_reason, disabled_at=sub.disabled_at,
        consecutive_failures=sub.consecutive_failures, created_at=sub.created_at,
    )


def delivery_out(row: Any, attempts: list[AttemptOut]) -> DeliveryOut:
    """A delivery with its attempts."""
    return DeliveryOut(
        id=row.id, webhook_id=message_id(row.id), subscription_id=row.subscription_id, type=row.type,
        status=row.status, attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
        last_status_code=row.last_status_code, last_error=row.last_error, created_at=row.created_at,
        completed_at=row.completed_at, payload=orjson.loads(row.payload), log=attempts,
    )
