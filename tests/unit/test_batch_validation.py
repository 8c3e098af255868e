"""The one-pass batch validation ingest tries first accepts only what `parse_event` accepts, as the same events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.cloudevents import to_record, to_records
from schemas.envelope import Event, instant
from schemas.registry import EVENT_TYPES, InvalidEvent, parse_event, parse_events_json
from tests.samples import event
from tests.workload import realistic_events

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "seed-timeline.ndjson"


def _judged_alone(doc: Any) -> Event | None:
    """What the contract says of one decoded document: the event, or None if it is refused."""
    try:
        return parse_event(doc)
    except InvalidEvent:
        return None


def _assert_fast_agrees(docs: list[Any], raw: bytes, *, wrapped: bool = False) -> list[Event] | None:
    """The one-pass result is None, or exactly the events `parse_event` makes of each document."""
    fast = parse_events_json(raw, wrapped=wrapped)
    alone = [_judged_alone(doc) for doc in docs]
    if fast is not None:
        assert fast == alone
    return fast


def _workload() -> list[dict[str, Any]]:
    docs = [orjson.loads(line) for line in EXAMPLES.read_bytes().splitlines() if line.strip()]
    docs += [event(t) for t in sorted(EVENT_TYPES)]
    docs += list(realistic_events(3000, seed=5))
    return docs


def test_whole_workload_validates_in_one_pass_as_event_by_event() -> None:
    docs = _workload()
    fast = _assert_fast_agrees(docs, orjson.dumps(docs))
    assert fast is not None
    assert len(fast) == len(docs)
    assert _assert_fast_agrees(docs, orjson.dumps({"events": docs, "note": "ignored"}), wrapped=True) == fast
    for doc in docs[:200]:  # one at a time, as a single POST does
        assert _assert_fast_agrees([doc], b"[" + orjson.dumps(doc) + b"]") == [parse_event(doc)]


def test_one_bad_event_sends_the_batch_the_slow_way() -> None:
    docs = [event("AgreementSigned"), {**event("TransferReported"), "data": {"count": -5, "cumulative": True}}]
    assert parse_events_json(orjson.dumps(docs)) is None


def test_integers_beyond_64_bits_are_judged_from_the_decoded_document() -> None:
    """orjson reads them as floats (the contract refuses those); pydantic's parser would read them exactly."""
    raw = orjson.dumps(event("TransferReported")).replace(b'"count":800', b'"count":123456789012345678901234567890')
    assert b"123456789012345678901234567890" in raw
    assert parse_events_json(b"[" + raw + b"]") is None
    assert _judged_alone(orjson.loads(raw)) is None


EXTREME_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8", categories=("Cc", "Zs", "Lu", "Nd")), max_size=20),
    st.sampled_from(["", " ", "  x  ", "\t", "0001-01-01", "9999-12-31T23:59:59+23:59", "2020-02-30",
                     "2020-03-12T09:00:00", "2020-03-12T09:00:00Z", "2020-03-12T09:00:00.123456789+00:00",
                     "US", "us", "XX", "https://x", "ftp://x.org", "0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f60",
                     "x" * 5000, "confirmed", "granted", "\x00", "\u202e", "\ud7ff"]),
    st.lists(st.sampled_from(["US", "SV", "GT", "", "us", 1]), max_size=4),
    st.dictionaries(st.sampled_from(["a", "count", "name"]), st.integers(-(2**63), 2**63 - 1), max_size=2),
)


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    """A valid example of some type with one envelope, data or source field set to an extreme value."""
    doc = event(draw(st.sampled_from(sorted(EVENT_TYPES))))
    doc["sources"] = [dict(doc["sources"][0])]  # the sample's source is shared
    value = draw(EXTREME_VALUES)
    where = draw(st.sampled_from(["envelope", "data", "source"]))
    target = {"envelope": doc, "data": doc["data"], "source": doc["sources"][0]}[where]
    keys = [*sorted(target), "id", "recorded_at", "schema_version", "extra"]
    target[draw(st.sampled_from(keys))] = value
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated_documents(), min_size=1, max_size=4))
def test_extreme_documents_are_accepted_in_one_pass_only_as_parse_event_accepts_them(docs: list[Any]) -> None:
    _assert_fast_agrees(docs, orjson.dumps(docs))


def test_records_of_a_batch_carry_each_event_its_own_headers_and_body() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    events = [parse_event({**doc, "recorded_at": now.isoformat()}) for doc in realistic_events(300, seed=9)]
    records = to_records(events, source="accordwatch/ingest/dev")
    for record, e in zip(records, events, strict=True):
        assert record.key == e.subject.encode()
        assert record.value == e.model_dump_json(exclude_none=True).encode()
        assert record.headers == [
            ("ce_specversion", b"1.0"), ("ce_id", str(e.id).encode()), ("ce_type", e.type.encode()),
            ("ce_source", b"accordwatch/ingest/dev"), ("ce_subject", e.subject.encode()),
            ("ce_time", instant(e.occurred_at).isoformat().encode()),
            ("ce_dataschema", f"urn:accordwatch:schema:{e.type}:v{e.schema_version}".encode()),
            ("ce_recordedat", now.isoformat().encode()), ("content-type", b"application/json"),
        ]
    assert to_record(events[0], source="accordwatch/ingest/dev") == records[0]


@pytest.mark.parametrize("bad", [b"[1, 2]", b'[{"type": "AgreementSigned"}]', b"[null]", b'{"events": 3}'])
def test_documents_that_are_not_events_take_the_slow_way(bad: bytes) -> None:
    assert parse_events_json(bad, wrapped=bad.startswith(b"{")) is None
