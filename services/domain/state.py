"""What the fold builds for one subject: agreement status, case, deadlines, transfers.

Plain data, serialisable as JSON (the projector keeps a snapshot per subject), with no
behaviour beyond small derived properties. The fold in `fold.py` is what fills it in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Confidence, Moment, Source, instant

AgreementStatus = Literal[
    "proposed", "negotiating", "signed", "implementing", "in_force", "suspended", "terminated"
]
Progress = Literal["proposed", "negotiating", "signed", "implementing", "in_force"]
PROGRESS_ORDER: dict[str, int] = {
    "proposed": 1, "negotiating": 2, "signed": 3, "implementing": 4, "in_force": 5,
}
UNSPECIFIED = "unspecified"
"""The nationality bucket of transfers a report does not break down."""
MAX_FIGURE = 2**53 - 1
"""The largest magnitude of a sum the fold keeps (transfer totals, month buckets, running figures).

Each report states at most MAX_COUNT people, but a subject may have any number of reports; a
sum beyond this is held at it and flagged approximate. Every figure is then exact as a float64
(JSON readers, JavaScript, Grafana) and far inside a 64-bit column.
"""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class Provenance(Model):
    """The event behind a field: what it was, when, how sure, and who says so."""

    event_id: UUID
    type: str
    occurred_at: Moment
    confidence: Confidence
    sources: tuple[Source, ...]


class Transition(Model):
    """A change of an agreement's status, dated when it took effect."""

    status: AgreementStatus
    on: Moment
    event_id: UUID


class LegalAction(Model):
    country: str
    action: str
    on: Moment
    event_id: UUID


class Cumulative(Model):
    """The latest cumulative transfer report, and what it said per nationality."""

    count: int
    approximate: bool
    event_id: UUID
    on: Moment


class MonthBucket(Model):
    count: int = 0
    approximate: bool = False


class AgreementPart(Model):
    """The folded status of an agreement."""

    progress: Progress | None = None
    override: Literal["suspended", "terminated"] | None = None
    status: AgreementStatus | None = None
    status_since: Moment | None = None
    confidence: Confidence | None = None
    history: list[Transition] = Field(default_factory=list)
    title: str | None = None
    kind: str | None = None
    parties: list[str] = Field(default_factory=list)
    signatories: list[dict[str, str | None]] = Field(default_factory=list)
    place: str | None = None
    excluded_nationalities: list[str] = Field(default_factory=list)
    eligible_nationalities: list[str] | None = None
    conditions: list[str] = Field(default_factory=list)
    legal_actions: list[LegalAction] = Field(default_factory=list)
    proposed_on: Moment | None = None
    signed_on: Moment | None = None
    implementing_since: Moment | None = None
    in_force_on: Moment | None = None
    suspended_on: Moment | None = None
    resumed_on: Moment | None = None
    terminated_on: Moment | None = None
    transfers_total: int = 0
    transfers_approximate: bool = False
    transfer_reports: int = 0
    latest_cumulative: Cumulative | None = None
    running_by_nationality: dict[str, int] = Field(default_factory=dict)
    transfer_target: int | None = None
    transfer_target_by: Moment | None = None
    months: dict[str, dict[str, MonthBucket]] = Field(
        default_factory=dict, description="transfers per month (YYYY-MM) and nationality"
    )
    provenance: dict[str, Provenance] = Field(default_factory=dict)

    @property
    def partner(self) -> str | None:
        """The other party of a bilateral agreement with the US (None when not exactly one)."""
        partners = [p for p in self.parties if p != "US"]
        return partners[0] if len(partners) == 1 else None


class Ruling(Model):
    event_id: UUID
    court: str
    outcome: str
    occurred_at: Moment
    effective_at: Moment | None
    affects: list[str]
    confidence: Confidence


class StayRequest(Model):
    event_id: UUID
    requested_by: str
    court: str
    occurred_at: Moment
    respond_by: Moment | None
    affects: list[str]
    confidence: Confidence
    status: Literal["pending", "granted", "denied", "administrative"] = "pending"
    decided_by: UUID | None = None
    decided_on: Moment | None = None


class StayDecision(Model):
    event_id: UUID
    court: str
    decision: Literal["granted", "denied", "administrative"]
    occurred_at: Moment
    affects: list[str]
    request_id: UUID | None
    confidence: Confidence


CaseStatus = Literal["filed", "ruled", "stay_requested", "stayed"]


class CasePart(Model):
    """The folded state of a court case."""

    title: str | None = None
    court: str | None = None
    filed_on: Moment | None = None
    plaintiffs: list[str] = Field(default_factory=list)
    defendants: list[str] = Field(default_factory=list)
    affects: list[str] = Field(default_factory=list)
    rulings: list[Ruling] = Field(default_factory=list)
    stay_requests: list[StayRequest] = Field(default_factory=list)
    stay_decisions: list[StayDecision] = Field(default_factory=list)
    status: CaseStatus = "filed"
    status_since: Moment | None = None
    provenance: dict[str, Provenance] = Field(default_factory=dict)

    @property
    def pending_stays(self) -> list[StayRequest]:
        """Stay requests not yet decided."""
        return [r for r in self.stay_requests if r.status == "pending"]


class Deadline(Model):
    """A date something takes effect or is due, from a DeadlineSet or a ruling's effective_at."""

    id: str
    subject: str
    due_at: Moment
    description: str
    kind: str
    origin: Literal["DeadlineSet", "CourtRulingIssued"]
    event_id: UUID
    affects: list[str] = Field(default_factory=list)
    confidence: Confidence
    status: Literal["open", "closed"] = "open"
    closed_by: UUID | None = None
    closed_reason: str | None = None

    @property
    def due_instant(self) -> datetime:
        """When it is due, in UTC."""
        return instant(self.due_at)

    def state_at(self, now: datetime) -> Literal["open", "past", "closed"]:
        """Closed (by a stay decision), open (still ahead of `now`) or past."""
        if self.status == "closed":
            return "closed"
        return "open" if self.due_instant > now else "past"


SortKey = tuple[datetime, datetime, str]


class SubjectState(Model):
    """Everything folded for one subject; the agreement and case parts exist when it has such events."""

    subject: str
    agreement: AgreementPart | None = None
    case: CasePart | None = None
    deadlines: list[Deadline] = Field(default_factory=list)
    event_count: int = 0
    last_event_at: Moment | None = None
    last_event_id: UUID | None = None
    last_event_type: str | None = None
    last_key: SortKey | None = None
    meta_targets: set[UUID] = Field(
        default_factory=set, description="ids named by retractions and corrections"
    )
