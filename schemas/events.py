"""Every v1 event type: its `data` model and its envelope, one pair per type.

Required `data` fields are exactly those of DESIGN section 2; the rest are optional.
Names are past-tense facts. A change that is not backwards compatible gets a new
version and an upcaster in `registry.py`, never an edit in place.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, Union
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
