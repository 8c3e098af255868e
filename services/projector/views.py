"""What the query API answers: one `...Out` model per body, and the functions that build them.

The models are the OpenAPI contract (a client can generate from it); the parts the fold
already models (history, rulings, stay requests, sources) are those models themselves, so a
field the fold gains shows up here and in the contract without a second definition.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Confidence, Event, Moment, Source
from services.domain.fold import Annotation
from services.domain.state import (
    AgreementPart,
    AgreementStatus,
    CasePart,
    CaseStatus,
    Deadline,
    LegalAction,
    Provenance,
    Ruling,
    StayDecision,
    StayRequest,
    SubjectState,
    Transition,
)


class Out(BaseModel):
    """Base of every response body."""

    model_config = ConfigDict(extra="forbid")


class AgreementOut(Out):
    """An agreement's status and key facts, now or as of a date and as known at a time."""

    id: str
    as_of: datetime | None = Field(description="The world time asked about (null: now).")
    known_at: datetime | None = Field(description="The recording time asked about (null: everything recorded).")
    status: AgreementStatus | None = Field(description="null when its events do not give it a status yet.")
    status_since: Moment | None = None
    confidence: Confidence | None = None
    title: str | None = None
    kind: str | None = None
    parties: list[str] = Field(default_factory=list)
    partner: str | None = Field(default=None, description="The one party other than the US, if there is one.")
    proposed_on: Moment | None = None
    signed_on: Moment | None = None
    implementing_since: Moment | None = None
    in_force_on: Moment | None = None
    suspended_on: Moment | None = None
    resumed_on: Moment | None = None
    terminated_on: Moment | None = None
    signatories: list[dict[str, str | None]] = Field(default_factory=list)
    place: str | None = None
    excluded_nationalities: list[str] = Field(default_factory=list)
    eligible_nationalities: list[str] | None = None
    conditions: list[str] = Field(default_factory=list)
    legal_actions: list[LegalAction] = Field(default_factory=list)
    transfers_total: int = 0
    transfers_approximate: bool = False
    transfer_reports: int = 0
    transfer_target: int | None = None
    transfer_target_by: Moment | None = None
    history: list[Transition] = Field(default_factory=list)
    last_event_at: Moment | None = None
    last_event_type: str | None = None
    event_count: int = 0
    sources: dict[str, Provenance] = Field(default_factory=dict, description="The event behind each field.")


class AgreementPageOut(Out):
    """A page of agreements."""

    items: list[AgreementOut]
    next: str | None = Field(description="Token of the next page; null on the last.")


class DeadlineOut(Deadline):
    """A deadline, its status as of now (open, met, stayed, passed) and the time left (negative once due)."""

    model_config = ConfigDict(extra="forbid")

    time_left_seconds: int


class DeadlinePageOut(Out):
    """A page of deadlines, soonest first, with the moment they were measured from."""

    items: list[DeadlineOut]
    next: str | None
    now: datetime


class CaseOut(Out):
    """A court case: rulings, stay requests (pending and decided), deadlines."""

    id: str
    as_of: datetime | None
    known_at: datetime | None
    status: CaseStatus | None = Field(description="null when nothing is known of the case at that time.")
    status_since: Moment | None = None
    title: str | None = None
    court: str | None = None
    filed_on: Moment | None = None
    plaintiffs: list[str] = Field(default_factory=list)
    defendants: list[str] = Field(default_factory=list)
    affects: list[str] = Field(default_factory=list)
    rulings: list[Ruling] = Field(default_factory=list)
    stay_requests: list[StayRequest] = Field(default_factory=list)
    pending_stay_requests: int = 0
    stay_decisions: list[StayDecision] = Field(default_factory=list)
    deadlines: list[DeadlineOut] = Field(default_factory=list)
    last_event_at: Moment | None = None
    event_count: int = 0
    sources: dict[str, Provenance] = Field(default_factory=dict)


class CasePageOut(Out):
    """A page of cases."""

    items: list[CaseOut]
    next: str | None


class EventOut(Out):
    """An event as recorded, with how it stands after retractions and corrections."""

    id: UUID
    type: str
    schema_version: int
    subject: str
    occurred_at: Moment
    recorded_at: datetime | None = None
    sources: list[Source]
    confidence: Confidence
    summary: str | None = None
    data: dict[str, Any] = Field(description="The type's data (its JSON Schema: ingest's GET /v1/schemas/{type}).")
    status: Literal["active", "corrected", "retracted"]
    retracted_by: UUID | None = None
    corrected_by: list[UUID] = Field(default_factory=list)
    original: dict[str, Any] | None = Field(default=None, description="The event as recorded, when corrected.")
    correction_errors: list[str] | None = None


class TimelineEntryOut(EventOut):
    """An event of a timeline, with where it is on the topic."""

    partition: int
    offset: int


class TimelineOut(Out):
    """A page of a subject's events in world order."""

    subject: str
    total: int
    items: list[TimelineEntryOut]
    next: str | None


class TransferOut(Out):
    """Transfers summed over one group (an agreement, and the month and/or nationality asked for)."""

    agreement: str
    month: str | None = None
    nationality: str | None = None
    count: int
    approximate: bool


class TransfersOut(Out):
    """Transfer counts grouped as asked."""

    group_by: list[Literal["month", "nationality"]]
    items: list[TransferOut]


class StatisticOut(Out):
    """One reported figure."""

    event_id: UUID
    subject: str
    metric: str
    value: float
    unit: str | None
    approximate: bool
    region: str | None
    period_start: str | None
    period_end: str | None
    occurred_at: str
    confidence: str


class StatisticPageOut(Out):
    """A page of reported figures."""

    items: list[StatisticOut]
    next: str | None


def _sources(part: AgreementPart | CasePart) -> dict[str, Provenance]:
    return dict(part.provenance)


def agreement_out(
    state: SubjectState | None, subject: str, *, as_of: datetime | None, known_at: datetime | None
) -> AgreementOut:
    """The agreement object of the HTTP contract."""
    a = state.agreement if state is not None else None
    if a is None or state is None:
        return AgreementOut(id=subject, as_of=as_of, known_at=known_at, status=None)
    return AgreementOut(
        id=subject, as_of=as_of, known_at=known_at, status=a.status, status_since=a.status_since,
        confidence=a.confidence, title=a.title, kind=a.kind, parties=a.parties,
        partner=a.partner, proposed_on=a.proposed_on, signed_on=a.signed_on,
        implementing_since=a.implementing_since, in_force_on=a.in_force_on, suspended_on=a.suspended_on,
        resumed_on=a.resumed_on, terminated_on=a.terminated_on, signatories=a.signatories, place=a.place,
        excluded_nationalities=a.excluded_nationalities, eligible_nationalities=a.eligible_nationalities,
        conditions=a.conditions, legal_actions=a.legal_actions, transfers_total=a.transfers_total,
        transfers_approximate=a.transfers_approximate, transfer_reports=a.transfer_reports,
        transfer_target=a.transfer_target, transfer_target_by=a.transfer_target_by, history=a.history,
        last_event_at=state.last_event_at, last_event_type=state.last_event_type, event_count=state.event_count,
        sources=_sources(a),
    )


def deadline_out(d: Deadline, now: datetime) -> DeadlineOut:
    """A deadline, its status (derived as of the state's time) and the time left (negative once due)."""
    left = (d.due_instant - now).total_seconds()
    fields = {name: getattr(d, name) for name in type(d).model_fields}
    return DeadlineOut(**{**fields, "time_left_seconds": round(left)})


def case_out(
    state: SubjectState | None, subject: str, *, as_of: datetime | None, known_at: datetime | None, now: datetime
) -> CaseOut:
    """A case: rulings, stay requests (pending and decided), deadlines."""
    c = state.case if state is not None else None
    if c is None or state is None:
        return CaseOut(id=subject, as_of=as_of, known_at=known_at, status=None)
    return CaseOut(
        id=subject, as_of=as_of, known_at=known_at, status=c.status, status_since=c.status_since, title=c.title,
        court=c.court, filed_on=c.filed_on, plaintiffs=c.plaintiffs, defendants=c.defendants, affects=c.affects,
        rulings=c.rulings, stay_requests=c.stay_requests, pending_stay_requests=len(c.pending_stays),
        stay_decisions=c.stay_decisions, deadlines=[deadline_out(d, as_of or now) for d in state.deadlines],
        last_event_at=state.last_event_at, event_count=state.event_count, sources=_sources(c),
    )


def event_fields(event: Event, note: Annotation) -> dict[str, Any]:
    """An event's fields with how it stands, ready for `EventOut` or `TimelineEntryOut`."""
    out: dict[str, Any] = event.model_dump(mode="json", exclude_none=True)
    out["status"] = note.status
    out["retracted_by"] = note.retracted_by
    out["corrected_by"] = note.corrected_by
    if note.original is not None:
        out["original"] = note.original.model_dump(mode="json", exclude_none=True)
    if note.correction_errors:
        out["correction_errors"] = note.correction_errors
    return out


def event_out(event: Event, note: Annotation) -> EventOut:
    """An event as stored, with how it stands after retractions and corrections."""
    return EventOut.model_validate(event_fields(event, note))
