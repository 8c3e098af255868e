"""The contract's bounds: only what the fold and both databases can hold is a valid event."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import orjson
import pytest

from schemas.cloudevents import UndecodableRecord, from_record, to_record
from schemas.envelope import MAX_COUNT, MAX_INSTANT, MAX_URL_LENGTH, MIN_INSTANT, check_instant, instant
from schemas.registry import InvalidEvent, parse_event
from tests.extremes import COUNTRIES
from tests.samples import event

RECORDED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
EVENT_ID = UUID("0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f61")


def _errors(doc: Any) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as info:
        parse_event(doc)
    return {e.field: e.reason for e in info.value.errors}


# -- instants ------------------------------------------------------------------------------

INSIDE = [
    "1000-01-01",
    "8999-12-31",
    "1000-01-01T00:00:00Z",
    "1000-01-01T23:59:00+23:59",  # 1000-01-01T00:00Z exactly
    "0999-12-31T23:30:00-01:00",  # local year 999, but 1000-01-01T00:30Z
    "8999-12-31T23:59:59.999999Z",
    "8999-12-31T00:00:00-23:59",  # 8999-12-31T23:59Z
    "2019-09-20T10:00:00-00:00",  # RFC 3339's unknown local offset: UTC
]
OUTSIDE = [
    "0001-01-01T00:00:00+01:00",  # the issue's shape: its UTC instant is before year 1
    "0001-01-01",
    "0999-12-31",
    "1000-01-01T00:00:00+00:01",
    "1000-01-01T23:58:59+23:59",
    "9000-01-01",
    "9999-12-31",
    "9999-12-31T23:59:59.999999Z",
    "8999-12-31T23:59:59-00:01",
    "9999-12-31T23:59:59-23:59",
]


@pytest.mark.parametrize("value", INSIDE)
def test_moments_inside_the_range_are_accepted_and_convert_to_utc(value: str) -> None:
    parsed = parse_event(event("AgreementSigned", occurred_at=value))
    assert MIN_INSTANT <= instant(parsed.occurred_at) <= MAX_INSTANT


@pytest.mark.parametrize("value", OUTSIDE)
def test_moments_outside_the_range_are_refused_naming_the_field(value: str) -> None:
    reason = _errors(event("AgreementSigned", occurred_at=value))["occurred_at"]
    assert "out of range" in reason
    assert "between 1000-01-01 and 8999-12-31 (UTC)" in reason


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target: Any = doc
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return doc


MOMENT_FIELDS = [
    ("AgreementSigned", "occurred_at"),
    ("AgreementSigned", "recorded_at"),
    ("AgreementSigned", "sources.0.published_at"),
    ("AgreementInForce", "data.effective_on"),
    ("AgreementTerminated", "data.effective_on"),
    ("TransferReported", "data.period_start"),
    ("TransferReported", "data.period_end"),
    ("TransferTargetAnnounced", "data.by"),
    ("StatisticReported", "data.period_start"),
    ("StatisticReported", "data.period_end"),
    ("CourtRulingIssued", "data.effective_at"),
    ("StayRequested", "data.respond_by"),
    ("DeadlineSet", "data.due_at"),
    ("EventCorrected", "data.changes.occurred_at"),
]


@pytest.mark.parametrize(("event_type", "path"), MOMENT_FIELDS)
@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z"])
def test_every_time_field_of_the_contract_is_bounded(event_type: str, path: str, value: str) -> None:
    doc = _set(event(event_type), path, value)
    field = path.replace(".0.", "[0].")
    assert "out of range" in _errors(doc)[field]


def test_sub_minute_offsets_are_refused() -> None:
    reason = _errors(event("AgreementSigned", occurred_at="2019-09-20T10:00:00+05:30:15"))["occurred_at"]
    assert "whole number of minutes" in reason


def test_a_leap_second_is_refused_with_a_hint() -> None:
    reason = _errors(event("AgreementSigned", occurred_at="2016-12-31T23:59:60Z"))["occurred_at"]
    assert "leap second" in reason


def test_minus_zero_offset_is_utc() -> None:
    parsed = parse_event(event("AgreementSigned", occurred_at="2019-09-20T10:00:00-00:00"))
    assert instant(parsed.occurred_at) == datetime(2019, 9, 20, 10, tzinfo=UTC)


def test_check_instant_takes_dates_and_aware_times_and_refuses_naive_ones() -> None:
    assert check_instant(date(1000, 1, 1)) == date(1000, 1, 1)
    assert check_instant(MAX_INSTANT) == MAX_INSTANT
    far_east = timezone(timedelta(hours=23, minutes=59))
    with pytest.raises(ValueError, match="out of range"):
        check_instant(datetime(1, 1, 1, tzinfo=far_east))
    with pytest.raises(ValueError, match="out of range"):
        check_instant(MAX_INSTANT + timedelta(microseconds=1))
    with pytest.raises(ValueError, match="no UTC offset"):
        check_instant(datetime(2020, 1, 1))


def test_a_correction_to_an_unrepresentable_time_is_refused() -> None:
    doc = event("EventCorrected")
    doc["data"]["changes"] = {"occurred_at": "0001-01-01T00:00:00+01:00"}
    assert "out of range" in _errors(doc)["data.changes.occurred_at"]


def test_a_record_on_the_topic_with_an_out_of_range_time_is_undecodable_not_a_crash() -> None:
    good = parse_event(event("AgreementSigned", id=str(EVENT_ID))).model_copy(update={"recorded_at": RECORDED})
    record = to_record(good, source="test")
    for field, value in [("occurred_at", "0001-01-01T00:00:00+01:00"), ("recorded_at", "9999-12-31T23:59:59-23:59")]:
        body = orjson.loads(record.value)
        body[field] = value
        with pytest.raises(UndecodableRecord) as info:
            from_record(record.key, orjson.dumps(body), record.headers)
        assert info.value.kind == "invalid"
        assert field in info.value.reason


def test_a_bad_source_is_named_without_a_spurious_no_sources_error() -> None:
    doc = event("AgreementSigned")
    doc["sources"][0]["published_at"] = "9999-12-31"
    assert set(_errors(doc)) == {"sources[0].published_at"}


# -- integers and numbers --------------------------------------------------------------------


def test_a_count_past_the_bound_is_refused_and_the_bound_is_accepted() -> None:
    doc = event("TransferReported")
    doc["data"]["count"] = 2**63  # the issue's shape: accepted before, then broke the SQLite write
    assert _errors(doc) == {"data.count": f"Input should be less than or equal to {MAX_COUNT}"}
    doc["data"]["count"] = MAX_COUNT
    assert parse_event(doc).data.count == MAX_COUNT  # type: ignore[attr-defined]


def test_nationalities_may_not_add_up_past_the_count_unless_approximate() -> None:
    doc = event("TransferReported")
    doc["data"].update(count=MAX_COUNT, approximate=False, nationalities=dict.fromkeys(COUNTRIES, MAX_COUNT))
    assert "add up to more than count" in _errors(doc)["data"]
    doc["data"]["approximate"] = True
    assert len(parse_event(doc).data.nationalities) == len(COUNTRIES)  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_statistic_must_be_finite(value: float) -> None:
    doc = event("StatisticReported")
    doc["data"]["value"] = value
    assert "finite" in _errors(doc)["data.value"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e309", b"1" + b"0" * 400])
def test_a_record_on_the_topic_with_a_number_json_cannot_carry_is_undecodable(literal: bytes) -> None:
    """pydantic's JSON parser reads NaN, Infinity and 1e309 (orjson refuses them at ingest): the worker must not."""
    good = parse_event(event("StatisticReported", id=str(EVENT_ID))).model_copy(update={"recorded_at": RECORDED})
    record = to_record(good, source="test")
    body = record.value.replace(b'"value":64006.0', b'"value":' + literal)
    assert body != record.value
    with pytest.raises(UndecodableRecord) as info:
        from_record(record.key, body, record.headers)
    assert "data.value" in info.value.reason


def test_recorded_at_is_a_time_not_a_number() -> None:
    assert "is a number" in _errors(event("AgreementSigned", recorded_at=20190920))["recorded_at"]


# -- text ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("event_type", "name"), [("LawsuitFiled", "title"), ("LawsuitFiled", "court"),
                                                  ("DeadlineSet", "description")])
def test_a_nul_character_is_refused_where_the_issue_found_it(event_type: str, name: str) -> None:
    doc = event(event_type)
    doc["data"][name] = "Innovation Law Lab\x00 v. Wolf"
    reason = _errors(doc)[f"data.{name}"]
    assert "control character U+0000 at position 18" in reason


def test_free_text_keeps_its_lines_and_short_text_is_one_line() -> None:
    doc = event("DeadlineSet")
    doc["data"]["description"] = "order takes effect\n\tunless stayed\r\n"
    assert parse_event(doc).data.description == "order takes effect\n\tunless stayed"  # type: ignore[attr-defined]
    doc = event("LawsuitFiled")
    doc["data"]["court"] = "N.D.\nCal."
    assert "U+000A" in _errors(doc)["data.court"]


@pytest.mark.parametrize("char", ["\x1b", "\x7f", "\x85", "\x9f"])
def test_other_controls_are_refused_in_free_text(char: str) -> None:
    assert "control character" in _errors(event("AgreementSigned", summary=f"a{char}b"))["summary"]


def test_a_lone_surrogate_is_refused_even_from_python() -> None:
    """JSON parsers refuse lone surrogates; a document built in Python must not slip one past either."""
    doc = event("LawsuitFiled")
    doc["data"]["title"] = "a\ud800b"
    assert "data.title" in _errors(doc)


def test_urls_are_bounded_and_free_of_spaces_and_controls() -> None:
    doc = event("AgreementSigned")
    doc["sources"][0]["url"] = "https://example.org/" + "a" * (MAX_URL_LENGTH - 20)
    assert len(parse_event(doc).sources[0].url or "") == MAX_URL_LENGTH
    doc["sources"][0]["url"] += "a"
    assert "at most 2048" in _errors(doc)["sources[0].url"]
    doc["sources"][0]["url"] = "https://example.org/a b"
    assert "U+0020" in _errors(doc)["sources[0].url"]


# -- cross-field rules across date and time forms --------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "valid"),
    [
        ("2020-01-01", "2020-01-01T00:00:00Z", True),  # the same instant
        ("2020-01-01T23:00:00-01:00", "2020-01-02", True),  # 2020-01-02T00:00Z both
        ("2020-01-01", "2020-01-01T00:30:00+01:00", False),  # the end is 2019-12-31T23:30Z
        ("8999-12-31", "1000-01-01", False),
        ("1000-01-01", "8999-12-31T23:59:59.999999Z", True),
    ],
)
def test_period_order_is_judged_in_utc_across_date_and_time_forms(start: str, end: str, valid: bool) -> None:
    for event_type in ("TransferReported", "StatisticReported"):
        doc = event(event_type)
        doc["data"].update(period_start=start, period_end=end)
        if valid:
            parse_event(doc)
        else:
            assert "period_start is after period_end" in _errors(doc)["data"]


# -- corrections -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["occurred_at", "confidence", "summary", "sources", "data"])
def test_a_correction_cannot_set_an_envelope_field_to_null(name: str) -> None:
    """Such an event was accepted, then lost: the topic carries events without null fields, so
    `changes: {"summary": null}` arrived as `changes: {}`, which no worker could decode."""
    doc = event("EventCorrected")
    doc["data"]["changes"] = {name: None}
    assert "null is not a change" in _errors(doc)[f"data.changes.{name}"]


def test_a_correction_keeps_nulls_of_optional_data_fields_through_the_topic() -> None:
    doc = event("EventCorrected", id=str(EVENT_ID), recorded_at="2026-11-22T12:00:00Z")
    doc["data"]["changes"] = {"data": {"reason": None}}
    parsed = parse_event(doc)
    record = to_record(parsed, source="test")
    decoded = from_record(record.key, record.value, record.headers)
    assert decoded.data.changes.data == {"reason": None}  # type: ignore[attr-defined]


def test_correction_data_is_checked_field_by_field_against_the_types_that_have_it() -> None:
    doc = event("EventCorrected")
    doc["data"]["changes"] = {"data": {"count": 2**63, "bogus": 1, "kind": "treaty", "court": "N.D.\x00 Cal.",
                                       "signatories": [{"name": "x", "country": "ZZ"}], "period_end": "9999-12-31"}}
    errors = _errors(doc)
    assert errors["data.changes.data.count"] == f"Input should be less than or equal to {MAX_COUNT}"
    assert errors["data.changes.data.bogus"] == "not a data field of any event type a correction can change"
    assert "valid for no event type that has kind (AgreementProposed:" in errors["data.changes.data.kind"]
    assert "DeadlineSet:" in errors["data.changes.data.kind"]
    assert "U+0000" in errors["data.changes.data.court"]
    assert "not an assigned" in errors["data.changes.data.signatories[0].country"]
    assert "out of range" in errors["data.changes.data.period_end"]


def test_correction_data_valid_for_some_type_is_accepted_and_normalised() -> None:
    doc = event("EventCorrected")
    doc["data"]["changes"] = {"data": {"parties": ["US"], "kind": "filing_due", "place": "  Washington  "}}
    changes = parse_event(doc).data.changes  # type: ignore[attr-defined]
    assert changes.data == {"parties": ["US"], "kind": "filing_due", "place": "Washington"}


def test_correction_data_must_be_an_object() -> None:
    doc = event("EventCorrected")
    doc["data"]["changes"] = {"data": ["count", 5]}
    assert "an object of the data fields" in _errors(doc)["data.changes.data"]
