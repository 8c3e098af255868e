"""The alerts service's tables: what it folded, alert state, timers, subscriptions, outbox.

Alembic migrations in `services/alerts/migrations` own the schema (version table
`alembic_version_alerts`), so the tables can live in the read model's PostgreSQL
database beside the projector's or in their own SQLite file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import Uuid

from services.platform.db import UTCDateTime

Json = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: Json, list[Any]: Json}


class AlertOffset(Base):
    """The next offset to read per partition, committed with the alerts it produced."""

    __tablename__ = "alert_offsets"

    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class AlertEvent(Base):
    """Every event the alerts worker has applied (its id makes redelivery a no-op)."""

    __tablename__ = "alert_events"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    seen_at: Mapped[datetime]


class AlertParked(Base):
    """A record the alerts worker could not apply, set aside on the dead-letter topic."""

    __tablename__ = "alert_parked"

    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[UUID | None] = mapped_column(Uuid, index=True)
    subject: Mapped[str | None] = mapped_column(String(200))
    type: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    error: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    parked_at: Mapped[datetime]


class AlertSubject(Base):
    """The folded state of a subject, as of when the alerts worker last folded it."""

    __tablename__ = "alert_subjects"

    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    is_agreement: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]
    next_effect_at: Mapped[datetime | None]  # when the state next changes by itself: folded again then

    __table_args__ = (Index("ix_alert_subjects_due", "next_effect_at"),)


class AlertPolicyFacts(Base):
    """What one case says that bears on one policy (`CaseFacts` JSON), for the policy rules."""

    __tablename__ = "alert_policy_facts"

    policy: Mapped[str] = mapped_column(String(200), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    facts: Mapped[dict[str, Any]]


class AlertPolicy(Base):
    """A policy's status as the alerts worker last judged it (locked while it is recomputed)."""

    __tablename__ = "alert_policies"

    policy: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    blocked_in: Mapped[list[Any]]
    since: Mapped[datetime | None]
    next_effect_at: Mapped[datetime | None] = mapped_column(index=True)
    updated_at: Mapped[datetime]


class Alert(Base):
    """One alert: stable fingerprint (rule, subject, cause), firing then resolved."""

    __tablename__ = "alerts"

    fingerprint: Mapped[str] = mapped_column(String(400), primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(200))
    cause: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]]
    occurred_at: Mapped[datetime]
    historical: Mapped[bool] = mapped_column(Boolean)
    episode: Mapped[int] = mapped_column(Integer, default=1)  # times it fired: its cause may return
    fired_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_alerts_subject_rule", "subject", "rule"),
        Index("ix_alerts_state_fired", "state", "fired_at"),
    )


class AlertTimer(Base):
    """A moment the clock must act on an alert (a reminder stage, the deadline, an expiry)."""

    __tablename__ = "alert_timers"

    fingerprint: Mapped[str] = mapped_column(ForeignKey("alerts.fingerprint"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    fire_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))  # pending, done, skipped, cancelled
    done_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_alert_timers_status_fire_at", "status", "fire_at"),)


class Notification(Base):
    """One notification-worthy change of an alert; unique per (alert, transition)."""

    __tablename__ = "alert_notifications"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(ForeignKey("alerts.fingerprint"))
    transition: Mapped[str] = mapped_column(String(48))
    type: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    late: Mapped[bool] = mapped_column(Boolean)
    suppressed: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("fingerprint", "transition", name="uq_alert_notifications_change"),)


class Subscription(Base):
    """A webhook endpoint with its filters and signing secret."""

    __tablename__ = "subscriptions"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)  # sealed (Fernet), never the secret itself
    previous_secret: Mapped[str | None] = mapped_column(Text)  # sealed; signs too until previous_secret_until
    previous_secret_until: Mapped[datetime | None]
    description: Mapped[str | None] = mapped_column(Text)
    rules: Mapped[list[Any]]
    severities: Mapped[list[Any]]
    subjects: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(String(16))  # active, disabled, deleted
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]


class Delivery(Base):
    """The outbox: one webhook message for one subscription, retried until it lands or gives up."""

    __tablename__ = "deliveries"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    subscription_id: Mapped[UUID] = mapped_column(ForeignKey("subscriptions.id"))
    notification_id: Mapped[UUID | None] = mapped_column(ForeignKey("alert_notifications.id"))
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending, succeeded, failed, cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    lease_token: Mapped[UUID | None] = mapped_column(Uuid)
    """Which dispatcher holds the lease: a booking counts only while its token still holds it."""
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    """Write order among rows created at the same instant (dispatch order is due time, creation, seq)."""
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_deliveries_subscription_created", "subscription_id", "created_at"),
        Index("ix_deliveries_claim", "subscription_id", "status", "next_attempt_at", "created_at", "seq"),
    )


class DeliveryAttempt(Base):
    """One HTTP attempt of a delivery: the delivery log."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    delivery_id: Mapped[UUID] = mapped_column(ForeignKey("deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None]
