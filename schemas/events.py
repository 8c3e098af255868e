"""Every event type at its current version: its `data` model and its envelope, one pair per type.

Required `data` fields are exactly those of DESIGN section 2; the rest are optional.
Names are past-tense facts. A change that is not backwards compatible gets a new
version and an upcaster in `registry.py`, never an edit in place.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal, Union
from uuid import UUID

from pydantic import (
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.envelope import (
    Confidence,
    Count,
    Country,
    Event,
    EventData,
    Frozen,
    MetricSlug,
    Moment,
    Region,
    ShortText,
    Slug,
    Source,
    Summary,
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
Regions = Annotated[
    tuple[Region, ...],
    Field(max_length=100, description="ISO 3166-2 codes (US-AZ, US-CA); empty: nationwide."),
]
RulingRefs = Annotated[
    tuple[UUID, ...],
    Field(max_length=50, description="Event ids of earlier CourtRulingIssued events of the same case."),
]


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
    count: Count
    cumulative: bool = Field(
        description="true: the running total to date; false: people moved in this report's period."
    )
    approximate: bool = False
    period_start: Moment | None = None
    period_end: Moment | None = None
    nationalities: Annotated[dict[Country, Count], Field(max_length=250)] | None = None

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
    target: Count
    by: Moment | None = None
    note: Text | None = None


class TransferTargetAnnounced(Event):
    """A target number of transfers under the agreement was announced."""

    type: Literal["TransferTargetAnnounced"]
    data: TransferTargetAnnouncedData


class StatisticReportedData(EventData):
    metric: MetricSlug
    value: float = Field(allow_inf_nan=False, description="A finite number (JSON has no infinity or NaN).")
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


Outcome = Literal["blocked", "upheld", "vacated", "reversed", "remanded", "granted", "denied", "other"]
BLOCKING_OUTCOMES: frozenset[str] = frozenset({"blocked", "vacated"})
"""Outcomes that block what the ruling `affects` (`vacated` only when it names no earlier ruling)."""
ENDING_OUTCOMES: frozenset[str] = frozenset({"vacated", "reversed"})
"""Outcomes that end the earlier rulings they name in `rulings`."""


class CourtRulingIssuedData(EventData):
    court: ShortText
    outcome: Outcome
    effective_at: Moment | None = Field(
        default=None, description="When the ruling takes effect; defaults to occurred_at."
    )
    affects: Affects = ()
    regions: Regions = ()
    rulings: RulingRefs = Field(
        default=(),
        description="The earlier rulings of the case it upholds, vacates or reverses. `vacated` or "
        "`reversed` with rulings ends them; `blocked`, or `vacated` without rulings, blocks what it affects.",
    )

    @model_validator(mode="after")
    def _distinct_lists(self) -> CourtRulingIssuedData:
        _distinct(self.regions, "regions")
        _distinct(tuple(map(str, self.rulings)), "rulings")
        return self


class CourtRulingIssued(Event):
    """A court ruled in the case (v2: with the regions it applies to and the rulings it reviews)."""

    SCHEMA_VERSION: ClassVar[int] = 2
    schema_version: int = Field(default=2, ge=1, le=1000, description="Version of this type's schema.")
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


StayDecision = Literal["granted", "granted_in_part", "denied", "administrative", "lifted"]


class StayDecidedData(EventData):
    court: ShortText
    decision: StayDecision = Field(
        description="granted (stayed everywhere), granted_in_part (stayed except in remaining_regions), "
        "denied, administrative (stayed until the same court decides), lifted (its earlier stay ends).",
    )
    affects: Affects = ()
    rulings: RulingRefs = Field(
        default=(),
        description="The rulings it concerns. Absent or empty: every ruling of the case that blocks something "
        "(`blocked`, or `vacated` without rulings) issued by the time of the decision and, when the decision "
        "names `affects`, affecting one of them.",
    )
    effective_at: Moment | None = Field(
        default=None, description="When the decision takes effect; defaults to occurred_at."
    )
    remaining_regions: Regions = Field(
        default=(), description="granted_in_part: where the ruling is not stayed and takes effect."
    )

    @model_validator(mode="after")
    def _scope(self) -> StayDecidedData:
        if self.decision == "granted_in_part" and not self.remaining_regions:
            raise ValueError("granted_in_part needs remaining_regions: where the ruling still takes effect")
        if self.decision != "granted_in_part" and self.remaining_regions:
            raise ValueError("remaining_regions only goes with the decision granted_in_part")
        _distinct(self.remaining_regions, "remaining_regions")
        _distinct(tuple(map(str, self.rulings)), "rulings")
        return self


class StayDecided(Event):
    """A court decided on a stay of rulings in the case (v2: which rulings, from when, where)."""

    SCHEMA_VERSION: ClassVar[int] = 2
    schema_version: int = Field(default=2, ge=1, le=1000, description="Version of this type's schema.")
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


FACT_CLASSES: tuple[type[Event], ...] = (
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
)
"""Every type that states a fact (and so may be corrected); retractions and corrections follow."""


# -- corrections ------------------------------------------------------------------------


class EventRetractedData(EventData):
    event_id: UUID
    reason: Text | None = None


class EventRetracted(Event):
    """An earlier event of the same subject is withdrawn; it no longer counts."""

    type: Literal["EventRetracted"]
    data: EventRetractedData


def _any_of(name: str, rules: list[tuple[Any, list[str]]]) -> Any:
    """A field whose value must satisfy the rules of at least one of the types that have it."""
    adapters = [(", ".join(types), TypeAdapter(rule)) for rule, types in rules]

    def check(value: Any) -> Any:
        reasons = []
        for types, adapter in adapters:
            try:
                return adapter.dump_python(adapter.validate_python(value), mode="json")
            except ValidationError as exc:
                first = exc.errors(include_url=False, include_input=False)[0]
                where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
                reasons.append(f"{types}: {where + ': ' if where else ''}{first['msg']}")
        raise PydanticCustomError("correction_data", "valid for no event type that has {name} ({reasons})",
                                  {"name": name, "reasons": "; ".join(reasons)})

    return Annotated[Any, PlainValidator(check, json_schema_input_type=Union[tuple(r for r, _ in rules)])]  # noqa: UP007


def _absent_means_unchanged(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # not a default value: an absent field keeps the corrected event's


def _never_null(schema: dict[str, Any]) -> None:
    _absent_means_unchanged(schema)
    options = [option for option in schema.pop("anyOf", []) if option != {"type": "null"}]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options


def _unchanged(*, null: bool = True) -> Any:
    """The default of a field a correction may leave out (the corrected event keeps its value)."""
    return Field(default=None, json_schema_extra=_absent_means_unchanged if null else _never_null)


def _changed_data_model(classes: tuple[type[Event], ...]) -> type[Frozen]:
    """A model with every `data` field of `classes`, each validated by the rules of a type that has it."""
    by_name: dict[str, list[tuple[Any, list[str]]]] = {}
    for cls in classes:
        data_model = cls.model_fields["data"].annotation
        for name, info in data_model.model_fields.items():  # type: ignore[union-attr]
            rule = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
            known = by_name.setdefault(name, [])
            same = next((types for seen, types in known if seen == rule), None)
            if same is None:
                known.append((rule, [cls.__name__]))
            else:
                same.append(cls.__name__)
    fields: dict[str, Any] = {
        name: (rules[0][0] if len(rules) == 1 else _any_of(name, rules), _unchanged())
        for name, rules in by_name.items()
    }
    return create_model("ChangedData", __base__=Frozen, __doc__=_CHANGED_DATA_DOC, **fields)


_CHANGED_DATA_DOC = (
    "Fields that replace those of the corrected event's data. The corrected event's type is not "
    "known at ingest, so each field must be valid by the rules of at least one event type that has it; "
    "the correction applies only if the corrected event, with these fields, is a valid event of its type."
)
ChangedData = _changed_data_model(FACT_CLASSES)


def _changed_data(value: Any) -> dict[str, Any]:
    """Validate a correction's `data` field by field; keep exactly the fields given, as JSON."""
    if not isinstance(value, dict):
        raise ValueError("expected an object of the data fields to replace")
    return ChangedData.model_validate(value).model_dump(mode="json", exclude_unset=True)


class EventChanges(Frozen):
    """Fields that replace those of the corrected event; `data` fields merge into its data."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    # Absent means unchanged; null is refused (and the schema shows no null either).
    occurred_at: Moment | None = _unchanged(null=False)
    confidence: Confidence | None = _unchanged(null=False)
    summary: Summary | None = _unchanged(null=False)
    sources: Annotated[tuple[Source, ...], Field(min_length=1, max_length=50)] | None = _unchanged(null=False)
    data: (
        Annotated[dict[str, Any], PlainValidator(_changed_data, json_schema_input_type=ChangedData)] | None
    ) = _unchanged(null=False)

    @field_validator("occurred_at", "confidence", "summary", "sources", "data", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # The topic carries events without their null fields: a null here would arrive as no change at all.
        if value is None:
            raise ValueError("null is not a change: leave the field out to keep it, or give its new value")
        return value

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


EVENT_CLASSES: tuple[type[Event], ...] = (*FACT_CLASSES, EventRetracted, EventCorrected)
