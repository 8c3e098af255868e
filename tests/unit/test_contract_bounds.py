"""The contract's bounds: only what the fold and both databases can hold is a valid event."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import orjson
import pytest

from schemas.cloudevents import UndecodableRecord, from_record, to_record
from schemas.envelope import MAX_INSTANT, MIN_INSTANT, check_instant, instant
from schemas.registry import InvalidEvent, parse_event
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
    "0001-01-01T00:00:00+01:00",  # the shape: its UTC instant is before year 1
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
