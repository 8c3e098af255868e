"""Every v1 event type: its `data` model and its envelope, one pair per type.

Required `data` fields are exactly those of DESIGN section 2; the rest are optional.
Names are past-tense facts. A change that is not backwards compatible gets a new
version and an upcaster in `registry.py`, never an edit in place.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, NonNegativeInt, model_validator

from schemas.envelope import (
    Confidence,
    Country,
    Event,
    EventData,
    Frozen,
    MetricSlug,
    Moment,
    ShortText,
    Slug,
    Source,
    Text,
    instant,
)

Parties = Annotated[tuple[Country, ...], Field(min_length=2, max_length=20)]
Countries = Annotated[tuple[Country, ...], Field(max_length=250)]
Affects = Annotated[
    tuple[Slug, ...],
    Field(max_length=50, description="Agreement ids or policy slugs (e.g. mpp) this concerns."),
]
Names = Annotated[tuple[ShortText, ...], Field(max_length=100)]


def _distinct(values: tuple[str, ...], what: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} lists a value more than once")


# -- agreements -----------------------------------------------------------------------


class AgreementProposedData(EventData):
    parties: Parties
    title: ShortText | None = None
    kind: Literal["aca", "stca", "mou", "other"] | None = None

    @model_validator(mode="after")
    def _distinct_parties(self) -> AgreementProposedData:
        _distinct(self.parties, "parties")
        return self


class AgreementProposed(Event):
    """An agreement between two or more countries was proposed or announced."""

    type: Literal["AgreementProposed"]
    data: AgreementProposedData


class NegotiationReportedData(EventData):
    parties: Countries | None = None
    note: Text | None = None


class NegotiationReported(Event):
    """Negotiations (meetings, drafts, talks) on an agreement were reported."""

    type: Literal["NegotiationReported"]
    data: NegotiationReportedData


class Signatory(Frozen):
    name: ShortText
    role: ShortText | None = None
    country: Country | None = None


class AgreementSignedData(EventData):
    parties: Parties
    signatories: Annotated[tuple[Signatory, ...], Field(max_length=50)] = ()
    place: ShortText | None = None
    excluded_nationalities: Countries = ()
    conditions: Annotated[tuple[Text, ...], Field(max_length=50)] = ()

    @model_validator(mode="after")
    def _distinct_parties(self) -> AgreementSignedData:
        _distinct(self.parties, "parties")
        return self


class AgreementSigned(Event):
    """The agreement was signed."""

    type: Literal["AgreementSigned"]
    data: AgreementSignedData


class LegalActionCompletedData(EventData):
    country: Country
    action: Text


class LegalActionCompleted(Event):
    """A party completed a legal step the agreement needs (e.g. a rule was published)."""

    type: Literal["LegalActionCompleted"]
    data: LegalActionCompletedData


class ImplementationPlanAdoptedData(EventData):
    eligible_nationalities: Countries | None = None
    note: Text | None = None


class ImplementationPlanAdopted(Event):
    """An implementation plan for the agreement was adopted."""

    type: Literal["ImplementationPlanAdopted"]
    data: ImplementationPlanAdoptedData


class AgreementInForceData(EventData):
    effective_on: Moment | None = Field(
        default=None, description="When it took effect; defaults to occurred_at."
    )


class AgreementInForce(Event):
    """The agreement entered into force; after a suspension it means it resumed."""

    type: Literal["AgreementInForce"]
    data: AgreementInForceData


class AgreementSuspendedData(EventData):
    reason: Text | None = None


class AgreementSuspended(Event):
    """The agreement was suspended."""

    type: Literal["AgreementSuspended"]
    data: AgreementSuspendedData


class AgreementTerminatedData(EventData):
    reason: Text | None = None
    effective_on: Moment | None = None


class AgreementTerminated(Event):
    """The agreement was terminated."""

    type: Literal["AgreementTerminated"]
    data: AgreementTerminatedData


# -- transfers and figures ------------------------------------------------------------


class TransferReportedData(EventData):
    count: NonNegativeInt
    cumulative: bool = Field(
        description="true: the running total to date; false: people moved in this report's period."
    )
    approximate: bool = False
    period_start: Moment | None = None
    period_end: Moment | None = None
    nationalities: Annotated[dict[Country, NonNegativeInt], Field(max_length=250)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TransferReportedData:
        if self.period_start and self.period_end and _after(self.period_start, self.period_end):
            raise ValueError("period_start is after period_end")
        if self.nationalities and not self.approximate and sum(self.nationalities.values()) > self.count:
            raise ValueError("nationalities add up to more than count")
        return self


class TransferReported(Event):
    """People were transferred under the agreement (a cumulative or a period figure)."""

    type: Literal["TransferReported"]
    data: TransferReportedData


class TransferTargetAnnouncedData(EventData):
    target: NonNegativeInt
    by: Moment | None = None
    note: Text | None = None


class TransferTargetAnnounced(Event):
    """A target number of transfers under the agreement was announced."""

    type: Literal["TransferTargetAnnounced"]
    data: TransferTargetAnnouncedData


class StatisticReportedData(EventData):
    metric: MetricSlug
    value: float
    unit: ShortText | None = None
    approximate: bool = False
    period_start: Moment | None = None
    period_end: Moment | None = None
    region: ShortText | None = None

    @model_validator(mode="after")
    def _consistent(self) -> StatisticReportedData:
        if self.period_start and self.period_end and _after(self.period_start, self.period_end):
            raise ValueError("period_start is after period_end")
        return self


class StatisticReported(Event):
    """An official or reported figure (apprehensions, returns, shares)."""

    type: Literal["StatisticReported"]
    data: StatisticReportedData


# -- litigation -------------------------------------------------------------------------


class LawsuitFiledData(EventData):
    court: ShortText
    title: ShortText | None = None
    plaintiffs: Names = ()
    defendants: Names = ()
    affects: Affects = ()


class LawsuitFiled(Event):
    """A lawsuit was filed; the subject is the case id."""

    type: Literal["LawsuitFiled"]
    data: LawsuitFiledData


Outcome = Literal["blocked", "upheld", "vacated", "remanded", "granted", "denied", "other"]


class CourtRulingIssuedData(EventData):
    court: ShortText
    outcome: Outcome
    effective_at: Moment | None = Field(default=None, description="When the ruling takes effect.")
    affects: Affects = ()


class CourtRulingIssued(Event):
    """A court ruled in the case."""

    type: Literal["CourtRulingIssued"]
    data: CourtRulingIssuedData


class StayRequestedData(EventData):
    requested_by: ShortText
    court: ShortText = Field(description="The court asked for the stay.")
    respond_by: Moment | None = None
    affects: Affects = ()


class StayRequested(Event):
    """A party asked a court to stay an order in the case."""

    type: Literal["StayRequested"]
    data: StayRequestedData


class StayDecidedData(EventData):
    court: ShortText
    decision: Literal["granted", "denied", "administrative"]
    affects: Affects = ()


class StayDecided(Event):
    """A court decided a stay request in the case."""

    type: Literal["StayDecided"]
    data: StayDecidedData


class DeadlineSetData(EventData):
    due_at: Moment = Field(description="A time; a bare date means the start of that day, UTC.")
    description: Text
    kind: Literal["ruling_effective", "response_due", "filing_due", "implementation", "other"] = (
        "other"
    )


class DeadlineSet(Event):
    """A deadline was set for the subject (a case or an agreement)."""

    type: Literal["DeadlineSet"]
    data: DeadlineSetData


# -- corrections ------------------------------------------------------------------------


class EventRetractedData(EventData):
    event_id: UUID
    reason: Text | None = None


class EventRetracted(Event):
    """An earlier event of the same subject is withdrawn; it no longer counts."""

    type: Literal["EventRetracted"]
    data: EventRetractedData


class EventChanges(Frozen):
    """Fields that replace those of the corrected event; `data` fields merge into its data."""

    occurred_at: Moment | None = None
    confidence: Confidence | None = None
    summary: Annotated[str, Field(max_length=4000)] | None = None
    sources: Annotated[tuple[Source, ...], Field(min_length=1, max_length=50)] | None = None
    data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> EventChanges:
        if not self.model_fields_set:
            raise ValueError("changes names no field to replace")
        return self


class EventCorrectedData(EventData):
    event_id: UUID
    changes: EventChanges


class EventCorrected(Event):
    """An earlier event of the same subject is corrected; its changed fields replace the old."""

    type: Literal["EventCorrected"]
    data: EventCorrectedData


def _after(a: date | datetime, b: date | datetime) -> bool:
    return instant(a) > instant(b)


EVENT_CLASSES: tuple[type[Event], ...] = (
    AgreementProposed,
    NegotiationReported,
    AgreementSigned,
    LegalActionCompleted,
    ImplementationPlanAdopted,
    AgreementInForce,
    AgreementSuspended,
    AgreementTerminated,
    TransferReported,
    TransferTargetAnnounced,
    StatisticReported,
    LawsuitFiled,
    CourtRulingIssued,
    StayRequested,
    StayDecided,
    DeadlineSet,
    EventRetracted,
    EventCorrected,
)
