"""Version 2 of CourtRulingIssued and StayDecided: the new fields, their checks, and the v1 -> v2 upcasters."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.cloudevents import from_record, to_record
from schemas.events import CourtRulingIssued, StayDecided
from schemas.registry import InvalidEvent, parse_event, parse_event_json
from tests.samples import event

CASE = "innovation-law-lab-v-wolf"
RULING_ID = "0170a1b2-0000-7000-8000-000000000001"


def _errors(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as info:
        parse_event(doc)
    return {e.field: e.reason for e in info.value.errors}


def _v1(event_type: str, **data: Any) -> dict[str, Any]:
    doc = event(event_type, subject=CASE, schema_version=1)
    doc["data"] = data
    return doc


def test_a_v1_ruling_reads_as_a_nationwide_v2_ruling_reviewing_nothing() -> None:
    old = _v1("CourtRulingIssued", court="N.D. Cal.", outcome="vacated", affects=["mpp"])
    parsed = parse_event(old)
    assert isinstance(parsed, CourtRulingIssued)
    assert parsed.schema_version == 2
    assert (parsed.data.regions, parsed.data.rulings, parsed.data.outcome) == ((), (), "vacated")


def test_a_v1_stay_decision_reads_as_v2_with_the_default_rulings_effective_when_made() -> None:
    old = _v1("StayDecided", court="Supreme Court of the United States", decision="administrative")
    parsed = parse_event(old)
    assert isinstance(parsed, StayDecided)
    assert parsed.schema_version == 2
    assert (parsed.data.rulings, parsed.data.effective_at, parsed.data.remaining_regions) == ((), None, ())


def test_v1_records_already_on_the_topic_still_decode() -> None:
    recorded = parse_event({"id": "0170a1b2-0000-7000-8000-0000000000aa", "recorded_at": "2020-03-10T00:00:00Z",
                            **event("StayDecided", subject=CASE)})
    record = to_record(recorded, source="test")
    v1 = orjson.loads(record.value)
    v1["schema_version"] = 1
    del v1["data"]["rulings"], v1["data"]["remaining_regions"]
    decoded = from_record(record.key, orjson.dumps(v1), record.headers)
    assert decoded == recorded
    assert parse_event_json(orjson.dumps(v1)) == recorded


def test_a_document_without_a_version_speaks_the_current_one() -> None:
    doc = event("StayDecided", subject=CASE)
    doc.pop("schema_version", None)
    doc["data"] = {"court": "9th Cir.", "decision": "granted_in_part", "remaining_regions": ["US-AZ", "US-CA"],
                   "effective_at": "2020-03-12", "rulings": [RULING_ID]}
    parsed = parse_event(doc)
    assert parsed.schema_version == 2
    assert parsed.data.remaining_regions == ("US-AZ", "US-CA")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("data", "field", "words"), [
    ({"court": "c", "outcome": "blocked", "regions": ["US-ZZ"]}, "data.regions[0]", "not an assigned ISO 3166-2"),
    ({"court": "c", "outcome": "blocked", "regions": ["us-az"]}, "data.regions[0]", "uppercase"),
    ({"court": "c", "outcome": "blocked", "regions": ["US-AZ", "US-AZ"]}, "data", "regions lists a value more"),
    ({"court": "c", "outcome": "reversed", "rulings": ["not-a-uuid"]}, "data.rulings[0]", "UUID"),
])
def test_a_ruling_with_bad_regions_or_references_is_refused_naming_the_field(
    data: dict[str, Any], field: str, words: str
) -> None:
    doc = event("CourtRulingIssued", subject=CASE)
    doc["data"] = data
    errors = _errors(doc)
    assert field in errors, errors
    assert words in errors[field]


@pytest.mark.parametrize(("data", "words"), [
    ({"court": "c", "decision": "granted_in_part"}, "granted_in_part needs remaining_regions"),
    ({"court": "c", "decision": "granted", "remaining_regions": ["US-AZ"]}, "only goes with the decision"),
    ({"court": "c", "decision": "vacated"}, "Input should be"),
])
def test_a_stay_decision_that_does_not_hold_together_is_refused(data: dict[str, Any], words: str) -> None:
    doc = event("StayDecided", subject=CASE)
    doc["data"] = data
    reasons = " ".join(_errors(doc).values())
    assert words in reasons
