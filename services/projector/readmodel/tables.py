"""The projector's read-model tables. Alembic migrations own their schema.

Column widths follow the contract's bounds: a single figure of an event (a count, a target)
is at most MAX_COUNT and fits Integer; sums and counts of events (transfer totals, month
buckets, event counts, rulings) are BigInteger: the fold holds sums within MAX_FIGURE, and a
subject has fewer events than a Kafka partition has offsets (64-bit).

Every read-model table carries a `generation`: `accordwatch replay` rebuilds into the next
generation while queries keep reading the active one, then flips `projection_generation`
in one transaction. No DDL is needed to swap, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, MetaData, String, Text
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


class ProjectionGeneration(Base):
    """Which generation of the read model queries see (one row, id 1)."""

    __tablename__ = "projection_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    active: Mapped[int] = mapped_column(Integer)
    building: Mapped[int | None] = mapped_column(Integer)
    swapped_at: Mapped[datetime | None]


class ConsumerOffset(Base):
    """The next offset to read per partition, committed with the effects it produced."""

    __tablename__ = "consumer_offsets"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class StoredEvent(Base):
    """Every event once (keyed by id), as it was on the topic: the timeline and as-of source."""

    __tablename__ = "events"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    subject: Mapped[str] = mapped_column(String(120))
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    effective_at: Mapped[datetime]  # when it takes effect (default: occurred_at)
    recorded_at: Mapped[datetime]
    confidence: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_events_subject_effective", "generation", "subject", "effective_at"),)


class ParkedEvent(Base):
    """A record the projector could not apply, set aside on the dead-letter topic: in no subject's history."""

    __tablename__ = "parked_events"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[UUID | None] = mapped_column(Uuid)
    subject: Mapped[str | None] = mapped_column(String(200))
    type: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    error: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    parked_at: Mapped[datetime]

    __table_args__ = (Index("ix_parked_events_event", "generation", "event_id"),)


class SubjectSnapshot(Base):
    """The folded state of a subject as of now (JSON), the starting point for the next events."""

    __tablename__ = "subject_states"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(120), primary_key=True)
    state: Mapped[str] = mapped_column(Text)
    event_count: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]
    next_effect_at: Mapped[datetime | None]  # when the state next changes by itself: re-folded then

    __table_args__ = (Index("ix_subject_states_due", "generation", "next_effect_at"),)


class AgreementRow(Base):
    """Agreement status, one row per agreement."""

    __tablename__ = "agreements"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    status: Mapped[str | None] = mapped_column(String(16))
    status_since: Mapped[datetime | None]
    confidence: Mapped[str | None] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(String(300))
    kind: Mapped[str | None] = mapped_column(String(16))
    parties: Mapped[list[Any]]
    partner: Mapped[str | None] = mapped_column(String(8))
    signed_on: Mapped[datetime | None]
    in_force_on: Mapped[datetime | None]
    suspended_on: Mapped[datetime | None]
    terminated_on: Mapped[datetime | None]
    excluded_nationalities: Mapped[list[Any]]
    transfers_total: Mapped[int] = mapped_column(BigInteger)
    transfers_approximate: Mapped[bool] = mapped_column(Boolean)
    transfer_target: Mapped[int | None] = mapped_column(Integer)
    transfer_target_by: Mapped[datetime | None]
    last_event_at: Mapped[datetime | None]
    last_event_type: Mapped[str | None] = mapped_column(String(64))
    event_count: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_agreements_status", "generation", "status"),)


class CaseRow(Base):
    """A court case: status, rulings and stay requests counted."""

    __tablename__ = "cases"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(300))
    court: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16))
    status_since: Mapped[datetime | None]
    affects: Mapped[list[Any]]
    rulings: Mapped[int] = mapped_column(BigInteger)
    latest_outcome: Mapped[str | None] = mapped_column(String(16))
    pending_stay_requests: Mapped[int] = mapped_column(BigInteger)
    last_event_at: Mapped[datetime | None]


class DeadlineRow(Base):
    """A deadline (DeadlineSet, a ruling's or a stay decision's effective_at) and its state as of now."""

    __tablename__ = "deadlines"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(120))
    due_at: Mapped[datetime]
    description: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    origin: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[UUID] = mapped_column(Uuid)
    affects: Mapped[list[Any]]
    regions: Mapped[list[Any]]
    confidence: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # open, met, stayed or passed
    status_by: Mapped[UUID | None] = mapped_column(Uuid)
    status_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_deadlines_due", "generation", "status", "due_at"),)


class TransferRow(Base):
    """People transferred under an agreement, per month and nationality."""

    __tablename__ = "transfers"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    agreement: Mapped[str] = mapped_column(String(120), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    nationality: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    approximate: Mapped[bool] = mapped_column(Boolean)


class StatisticRow(Base):
    """One reported figure (a point of a statistics series)."""

    __tablename__ = "statistics"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    subject: Mapped[str] = mapped_column(String(120))
    metric: Mapped[str] = mapped_column(String(120))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(300))
    approximate: Mapped[bool] = mapped_column(Boolean)
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    region: Mapped[str | None] = mapped_column(String(300))
    occurred_at: Mapped[datetime]
    confidence: Mapped[str] = mapped_column(String(16))

    __table_args__ = (Index("ix_statistics_metric", "generation", "metric", "occurred_at"),)


class PolicyFactRow(Base):
    """What one case says that bears on one policy (`CaseFacts` JSON): rulings, stays, requests."""

    __tablename__ = "policy_facts"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy: Mapped[str] = mapped_column(String(120), primary_key=True)
    case: Mapped[str] = mapped_column(String(120), primary_key=True)
    facts: Mapped[dict[str, Any]]

    __table_args__ = (Index("ix_policy_facts_case", "generation", "case"),)


class PolicyRow(Base):
    """A policy's status now (recomputed from `policy_facts` after each change and at its next effect)."""

    __tablename__ = "policies"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    blocked_in: Mapped[list[Any]]
    since: Mapped[datetime | None]
    next_change_at: Mapped[datetime | None]
    next_change_status: Mapped[str | None] = mapped_column(String(16))
    pending_stay_requests: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]]
    next_effect_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_policies_due", "generation", "next_effect_at"),)


READ_MODEL_TABLES = (
    StoredEvent.__table__, ParkedEvent.__table__, SubjectSnapshot.__table__, AgreementRow.__table__, CaseRow.__table__,
    DeadlineRow.__table__, TransferRow.__table__, StatisticRow.__table__, PolicyFactRow.__table__,
    PolicyRow.__table__, ConsumerOffset.__table__,
)
