"""The event contract: every type validates, rejects what it must, and its schema file is current."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import orjson
import pytest

from schemas.cloudevents import UndecodableRecord, from_record, to_record
from schemas.envelope import instant
from schemas.generate import expected_files
from schemas.registry import EVENT_TYPES, InvalidEvent, NotJSON, Upcasters, catalogue, parse_event, parse_event_json
from tests.samples import DATA, event

RECORDED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
EVENT_ID = UUID("0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f61")


def _errors(doc: Any) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as info:
        parse_event(doc)
    return {e.field: e.reason for e in info.value.errors}


def test_samples_cover_every_type() -> None:
    assert set(DATA) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_each_type_accepts_a_valid_example(event_type: str) -> None:
    parsed = parse_event(event(event_type))
    assert parsed.type == event_type
    assert type(parsed).__name__ == event_type
    assert parsed.schema_version == EVENT_TYPES[event_type].SCHEMA_VERSION


def _required_data_fields() -> list[tuple[str, str]]:
    return [(entry["type"], field) for entry in catalogue() for field in entry["required_data"]]


def test_required_fields_are_exactly_those_of_the_design() -> None:
    required = {entry["type"]: set(entry["required_data"]) for entry in catalogue()}
    assert required == {
        "AgreementProposed": {"parties"},
        "NegotiationReported": set(),
        "AgreementSigned": {"parties"},
        "LegalActionCompleted": {"country", "action"},
        "ImplementationPlanAdopted": set(),
        "AgreementInForce": set(),
        "AgreementSuspended": set(),
        "AgreementTerminated": set(),
        "TransferReported": {"count", "cumulative"},
        "TransferTargetAnnounced": {"target"},
        "LawsuitFiled": {"court"},
        "CourtRulingIssued": {"court", "outcome"},
        "StayRequested": {"requested_by", "court"},
        "StayDecided": {"court", "decision"},
        "DeadlineSet": {"due_at", "description"},
        "StatisticReported": {"metric", "value"},
        "EventRetracted": {"event_id"},
        "EventCorrected": {"event_id", "changes"},
    }


@pytest.mark.parametrize(("event_type", "field"), _required_data_fields())
def test_each_type_rejects_each_missing_required_data_field(event_type: str, field: str) -> None:
    doc = event(event_type)
    del doc["data"][field]
    assert _errors(doc) == {f"data.{field}": "missing: this field is required"}


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
@pytest.mark.parametrize("field", ["subject", "occurred_at", "sources"])
def test_each_type_rejects_a_missing_envelope_field(event_type: str, field: str) -> None:
    doc = event(event_type)
    del doc[field]
    assert field in _errors(doc)


def test_unknown_type_is_named() -> None:
    errors = _errors(event("AgreementSigned", type="AgreementRatified"))
    assert "unknown event type 'AgreementRatified'" in errors["type"]


def test_missing_type_is_named() -> None:
    doc = event("AgreementSigned")
    del doc["type"]
    assert set(_errors(doc)) == {"type"}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2019-13-01", "not a valid date or time"),
        ("20 September 2019", "not a valid date or time"),
        ("2019-09-20T10:00:00", "no UTC offset"),
        (20190920, "expected a date"),
    ],
)
def test_bad_dates_are_rejected_with_a_hint(value: Any, fragment: str) -> None:
    reason = _errors(event("AgreementSigned", occurred_at=value))["occurred_at"]
    assert fragment in reason
    assert "YYYY-MM-DD" in reason


def test_dates_and_rfc3339_times_are_both_accepted() -> None:
    as_date = parse_event(event("AgreementSigned", occurred_at="2019-09-20"))
    as_time = parse_event(event("AgreementSigned", occurred_at="2019-09-20T17:25:00-04:00"))
    zulu = parse_event(event("AgreementSigned", occurred_at="2019-09-20T21:25:00Z"))
    assert as_date.occurred_at == date(2019, 9, 20)
    assert instant(as_date.occurred_at) == datetime(2019, 9, 20, tzinfo=UTC)
    assert instant(as_time.occurred_at) == instant(zulu.occurred_at)
    assert as_time.model_dump(mode="json")["occurred_at"] == "2019-09-20T17:25:00-04:00"


@pytest.mark.parametrize(
    ("parties", "fragment"),
    [(["US", "XX"], "not an assigned"), (["US", "sv"], "uppercase"), (["US", "USA"], "uppercase")],
)
def test_bad_country_codes_are_named(parties: list[str], fragment: str) -> None:
    doc = event("AgreementSigned")
    doc["data"]["parties"] = parties
    assert fragment in _errors(doc)["data.parties[1]"]


def test_negative_count_is_rejected() -> None:
    doc = event("TransferReported")
    doc["data"]["count"] = -5
    assert _errors(doc) == {"data.count": "Input should be greater than or equal to 0"}


def test_no_sources_is_rejected() -> None:
    assert _errors(event("AgreementSigned", sources=[])) == {
        "sources": "no sources: every event needs at least one"
    }


def test_unknown_fields_are_rejected() -> None:
    doc = event("AgreementSigned")
    doc["data"]["parites"] = ["US", "SV"]
    assert _errors(doc) == {"data.parites": "not a field of this event type"}


def test_subject_must_be_a_slug() -> None:
    assert "subject" in _errors(event("AgreementSigned", subject="US-SV ACA"))


def test_transfer_nationalities_cannot_exceed_count() -> None:
    doc = event("TransferReported")
    doc["data"].update(count=10, approximate=False, nationalities={"SV": 8, "HN": 5})
    assert "add up to more than count" in _errors(doc)["data"]


def test_correction_must_change_something() -> None:
    doc = event("EventCorrected")
    doc["data"]["changes"] = {}
    assert "names no field" in _errors(doc)["data.changes"]


def test_events_are_frozen() -> None:
    parsed = parse_event(event("AgreementSigned"))
    with pytest.raises(ValueError, match="frozen"):
        parsed.subject = "other"  # type: ignore[misc]


def _v0_upcasters() -> Upcasters:
    """An upcaster from a version 0 of AgreementSigned that called its parties `countries`."""
    upcasters = Upcasters()

    @upcasters.register("AgreementSigned", 0)
    def upcast_agreement_signed_v0_v1(raw: dict[str, Any]) -> dict[str, Any]:
        data = dict(raw["data"])
        data["parties"] = data.pop("countries")
        return {**raw, "data": data}

    return upcasters


def test_upcaster_lifts_an_old_version() -> None:
    upcasters = _v0_upcasters()

    old = event("AgreementSigned", schema_version=0)
    old["data"]["countries"] = old["data"].pop("parties")
    parsed = parse_event(old, upcasters=upcasters)
    assert parsed.schema_version == 1
    assert parsed.data.parties == ("US", "SV")  # type: ignore[attr-defined]


def test_version_without_upcaster_is_rejected() -> None:
    errors = _errors(event("AgreementSigned", schema_version=7))
    assert "no upcaster from version 7" in errors["schema_version"]


def test_json_schema_files_are_current() -> None:
    stale = [
        path.name
        for path, text in expected_files().items()
        if not path.exists() or path.read_text() != text
    ]
    assert stale == [], "run `python -m schemas.generate` and commit schemas/json"


def _recorded(event_type: str) -> Any:
    return parse_event(event(event_type)).model_copy(update={"id": EVENT_ID, "recorded_at": RECORDED})


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_cloudevents_mapping_round_trips(event_type: str) -> None:
    original = _recorded(event_type)
    record = to_record(original, source="accordwatch/ingest/test")
    headers = dict(record.headers)
    assert record.key == original.subject.encode()
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == str(EVENT_ID).encode()
    assert headers["ce_type"] == event_type.encode()
    assert headers["ce_subject"] == original.subject.encode()
    assert headers["ce_source"] == b"accordwatch/ingest/test"
    assert headers["ce_time"] == b"2019-09-20T00:00:00+00:00"
    assert headers["content-type"] == b"application/json"
    assert from_record(record.key, record.value, record.headers) == original


def test_only_recorded_events_go_to_kafka() -> None:
    with pytest.raises(ValueError, match="recorded"):
        to_record(parse_event(event("AgreementSigned")), source="x")


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b"{not json", "not_json"),
        (b'{"type": "Nope", "subject": "x", "occurred_at": "2020-01-01", "sources": [{"publisher": "a"}], "data": {}}', "unknown_type"),
        (b'{"type": "AgreementSigned", "subject": "x", "occurred_at": "2020-01-01", "sources": [], "data": {}}', "invalid"),
        (b"", "invalid"),
    ],
)
def test_undecodable_records_say_why(value: bytes, kind: str) -> None:
    with pytest.raises(UndecodableRecord) as info:
        from_record(b"x", value, [])
    assert info.value.kind == kind
    assert info.value.reason


def test_record_with_mismatched_key_is_undecodable() -> None:
    record = to_record(_recorded("AgreementSigned"), source="x")
    with pytest.raises(UndecodableRecord, match="key"):
        from_record(b"someone-else", record.value, record.headers)


BAD_DOCUMENTS: list[Any] = [
    event("AgreementSigned", sources=[]),
    event("AgreementSigned", occurred_at="2019-09-20T10:00:00"),
    {**event("AgreementSigned"), "type": "Nope"},
    {**event("TransferReported"), "data": {"count": -5}},
    {"type": "AgreementSigned"},
    [1, 2],
    None,
    "text",
]


@pytest.mark.parametrize("doc", BAD_DOCUMENTS, ids=range(len(BAD_DOCUMENTS)))
def test_json_bytes_are_judged_like_decoded_documents(doc: Any) -> None:
    """parse_event_json validates bytes directly; it must reject exactly as parse_event does."""
    with pytest.raises(InvalidEvent) as direct:
        parse_event(doc)
    with pytest.raises(InvalidEvent) as from_bytes:
        parse_event_json(orjson.dumps(doc))
    assert from_bytes.value.errors == direct.value.errors


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_json_bytes_decode_like_decoded_documents(event_type: str) -> None:
    doc = _recorded(event_type).model_dump(mode="json", exclude_none=True)
    assert parse_event_json(orjson.dumps(doc)) == parse_event(doc)


def test_not_json_is_told_apart() -> None:
    with pytest.raises(NotJSON, match="not valid JSON"):
        parse_event_json(b'{"type": ')


def test_records_of_an_old_version_are_upcast_on_the_way_out_of_kafka() -> None:
    upcasters = _v0_upcasters()

    current = to_record(_recorded("AgreementSigned"), source="x")
    old = orjson.loads(current.value)
    old["schema_version"] = 0
    old["data"]["countries"] = old["data"].pop("parties")
    decoded = from_record(current.key, orjson.dumps(old), current.headers, upcasters=upcasters)
    assert decoded == _recorded("AgreementSigned")
    with pytest.raises(UndecodableRecord) as info:
        from_record(current.key, orjson.dumps(old), current.headers)
    assert info.value.kind == "invalid"
    with pytest.raises(UndecodableRecord) as info:
        from_record(current.key, b"{not json", current.headers, upcasters=upcasters)
    assert info.value.kind == "not_json"
