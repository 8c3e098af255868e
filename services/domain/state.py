"""What the fold builds for one subject: agreement status, case, deadlines, transfers.

Plain data, serialisable as JSON (the projector keeps a snapshot per subject), with no
behaviour beyond small derived properties. The fold in `fold.py` fills in the facts; the
fields marked *as of* are derived for the time the state was folded to (`litigation.py`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer

from schemas.envelope import Confidence, Event, Moment, Source, instant

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

    @classmethod
    def of(cls, event: Event) -> Provenance:
        """The provenance of a validated event (its sources are not validated twice)."""
        return cls.model_construct(event_id=event.event_id, type=event.type, occurred_at=event.occurred_at,
                                   confidence=event.confidence, sources=tuple(event.sources))


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
    scheduled: list[Transition] = Field(
        default_factory=list, description="changes already decided that take effect later (effect order)"
    )
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
    """A ruling of the case, and (as of) where it stands."""

    event_id: UUID
    court: str
    outcome: str
    occurred_at: Moment
    effective_at: Moment | None
    regions: list[str] = Field(default_factory=list, description="ISO 3166-2; empty: nationwide")
    rulings: list[UUID] = Field(default_factory=list, description="earlier rulings it reviews, as given")
    affects: list[str]
    confidence: Confidence
    state: Literal["scheduled", "in_force", "ended"] = Field(
        default="scheduled", description="as of: not yet in effect, in force, or ended by a later ruling"
    )
    stayed_by: list[UUID] = Field(default_factory=list, description="as of: the stay decisions holding it")


class StayRequest(Model):
    event_id: UUID
    requested_by: str
    court: str
    occurred_at: Moment
    respond_by: Moment | None
    affects: list[str]
    confidence: Confidence
    status: Literal["pending", "granted", "granted_in_part", "denied"] = "pending"
    decided_by: UUID | None = None
    decided_on: Moment | None = None


StayDecisionKind = Literal["granted", "granted_in_part", "denied", "administrative", "lifted"]


class StayDecision(Model):
    event_id: UUID
    court: str
    decision: StayDecisionKind
    occurred_at: Moment
    effective_at: Moment | None = None
    remaining_regions: list[str] = Field(default_factory=list)
    rulings: list[UUID] = Field(default_factory=list, description="the rulings it names, as given")
    affects: list[str]
    request_id: UUID | None = None
    targets: list[UUID] = Field(
        default_factory=list, description="the rulings it concerns: those it names, else the documented default"
    )
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
    def lead_court(self) -> str | None:
        """The court the case was filed in, else the first court that ruled."""
        return self.court or next((r.court for r in self.rulings), None)

    @property
    def pending_stays(self) -> list[StayRequest]:
        """Stay requests not yet decided (as of the state's time)."""
        return [r for r in self.stay_requests if r.status == "pending"]


DeadlineStatus = Literal["open", "met", "stayed", "passed"]


class Deadline(Model):
    """A time something is due or takes effect: a DeadlineSet, a ruling's effective_at, or a stay
    decision's effective_at that lets rulings take effect (in `regions`, or everywhere).

    Its status is derived as of the state's time: `open` (ahead, and nothing holds it), `stayed`
    (a stay holds the ruling there), `met` (the ruling took effect), `passed` (the time came;
    for a ruling: it ended before it took effect).
    """

    id: str
    subject: str
    due_at: Moment
    description: str
    kind: str
    origin: Literal["DeadlineSet", "CourtRulingIssued", "StayDecided"]
    event_id: UUID
    affects: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list, description="where it takes effect; empty: everywhere")
    rulings: list[UUID] = Field(default_factory=list, description="the rulings that take effect")
    confidence: Confidence
    status: DeadlineStatus = "open"
    status_by: UUID | None = None
    status_reason: str | None = None

    @property
    def due_instant(self) -> datetime:
        """When it is due, in UTC."""
        return instant(self.due_at)


SortKey = tuple[datetime, datetime, datetime, str]
"""Effect order: (effective time, occurred_at, recorded_at, id), all UTC but the id."""


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
    last_key: SortKey | None = Field(default=None, description="effect key of the last fact in effect")
    meta_targets: set[UUID] = Field(
        default_factory=set, description="ids named by retractions and corrections"
    )
    upcoming: datetime | None = Field(
        default=None, description="the first effect time (or decision time) among the facts folded to come"
    )
    next_effect_at: datetime | None = Field(
        default=None, description="when this state, as of its time, next changes by itself (no event needed)"
    )

    @field_serializer("meta_targets")
    def _sorted_targets(self, targets: set[UUID]) -> list[str]:
        return sorted(map(str, targets))  # the same state, the same JSON


def read_state(raw: str | bytes) -> SubjectState | None:
    """A stored state, or None if an earlier version of the fold wrote it (then it must be folded again)."""
    try:
        return SubjectState.model_validate_json(raw)
    except ValidationError:
        return None
