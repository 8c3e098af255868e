"""Every field of every event type at its extremes (generated from the contract): judged, then folded."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.cloudevents import from_record, to_record
from schemas.envelope import MAX_INSTANT, MIN_INSTANT, Event
from schemas.registry import EVENT_TYPES, InvalidEvent, parse_event, parse_event_json
from services.alerts.engine import Context, evaluate, transitions
from services.alerts.rules import load_rules
from services.alerts.settings import DEFAULT_RULES
from services.domain.fold import advance, project, resolve
from services.domain.state import SubjectState
from tests.extreme_scenario import CORRECTED, Scenario, scenario
from tests.extremes import Case, cases, minimal, unbounded

RECORDED = "2026-11-22T12:00:00Z"
RULES = load_rules(DEFAULT_RULES)
EDGES: list[datetime | None] = [None, MIN_INSTANT, MAX_INSTANT]
ALL = cases()


@pytest.fixture(scope="module")
def accepted() -> Scenario:
    return scenario()


def _judge(case: Case, errors: list[Any] | None) -> str | None:
    """What is wrong with how a case was judged (None: as designed)."""
    if case.valid and errors is not None:
        return f"{case.name}: refused: {[(e.field, e.reason) for e in errors][:3]}"
    if not case.valid and errors is None:
        return f"{case.name}: accepted"
    if errors is not None and not any(case.named_by(e.field) for e in errors):
        return f"{case.name}: refused without naming {case.field}: {[(e.field, e.reason) for e in errors][:3]}"
    return None


def test_no_field_of_the_contract_is_unbounded() -> None:
    assert unbounded() == []


def test_the_cases_cover_every_field_of_every_type() -> None:
    covered = {(c.event_type, c.path[0]) for c in ALL} | {(c.event_type, c.path[:2]) for c in ALL}
    for event_type, cls in EVENT_TYPES.items():
        for name in cls.model_fields:
            if name != "type":
                assert (event_type, name) in covered, (event_type, name)
        for name in cls.model_fields["data"].annotation.model_fields:  # type: ignore[union-attr]
            assert (event_type, ("data", name)) in covered, (event_type, name)
    assert sum(c.valid for c in ALL) > 1500
    assert sum(not c.valid for c in ALL) > 3000


def test_extremes_inside_the_bounds_are_accepted_and_outside_refused_naming_the_field() -> None:
    wrong = []
    for case in ALL:
        try:
            parse_event(case.doc)
            errors = None
        except InvalidEvent as exc:
            errors = exc.errors
        if (problem := _judge(case, errors)) is not None:
            wrong.append(problem)
    assert wrong == []


def _outcome(judge: Callable[[Any], Event], raw: Any) -> Any:
    try:
        return judge(raw).model_dump(mode="json")
    except InvalidEvent as exc:
        return sorted(e.field for e in exc.errors)


def test_bytes_from_the_topic_are_judged_like_posted_documents() -> None:
    """The workers decode records with pydantic's own JSON parser: it must judge exactly as ingest does."""
    differ = []
    for case in ALL:
        raw = json.dumps({**case.doc, "recorded_at": RECORDED}, ensure_ascii=False).encode()
        outcomes = [_outcome(parse_event, json.loads(raw)), _outcome(parse_event_json, raw)]
        if outcomes[0] != outcomes[1]:
            differ.append((case.name, outcomes))
    assert differ == []


def _recorded(doc: dict[str, Any]) -> Event:
    return parse_event({**doc, "recorded_at": RECORDED})


def _state(state: SubjectState) -> dict[str, Any]:
    return state.model_dump(mode="json")


def test_accepted_extremes_survive_the_topic_and_fold_at_the_range_edges(accepted: Scenario) -> None:
    """Round trip through the record format; fold in any order, as of and as known at the range's edges;
    the alert rules evaluated on every folded state with the clock at the edges too."""
    by_subject: dict[str, list[Event]] = defaultdict(list)
    for doc in accepted.docs:
        event = _recorded(doc)
        record = to_record(event, source="accordwatch/test")
        assert from_record(record.key, record.value, record.headers) == event
        by_subject[event.subject].append(event)
    rng = random.Random(12)
    for subject, events in by_subject.items():
        whole = project(subject, events)
        assert SubjectState.model_validate_json(whole.model_dump_json()) == whole
        shuffled = rng.sample(events, len(events))
        assert _state(project(subject, shuffled)) == _state(whole), subject
        for as_of in EDGES:
            for known_at in EDGES:
                project(subject, events, as_of=as_of, known_at=known_at)
        assert project(subject, events, known_at=MIN_INSTANT).event_count == 0
        half = len(events) // 2
        advanced = advance(project(subject, shuffled[:half]), shuffled[half:])
        assert advanced is None or _state(advanced) == _state(whole), subject
        for now in (datetime(2026, 11, 22, tzinfo=UTC), MIN_INSTANT, MAX_INSTANT):
            for desired in evaluate(RULES, whole, events, Context(now=now)):
                transitions(None, desired, now)


def test_corrections_apply_to_events_they_fit_and_are_recorded_as_not_applied_elsewhere(accepted: Scenario) -> None:
    events = [_recorded(doc) for doc in accepted.docs if doc["subject"] == CORRECTED]
    notes = resolve(events).annotations
    assert accepted.applied
    assert accepted.not_applied
    for correction, target in accepted.applied.items():
        assert UUID(correction) in notes[UUID(target)].corrected_by, notes[UUID(target)].correction_errors
    for correction, target in accepted.not_applied.items():
        assert not notes[UUID(target)].corrected_by
        assert any(f"correction {correction} not applied" in e for e in notes[UUID(target)].correction_errors)


def test_a_retraction_chain_thousands_deep_folds_in_any_order(accepted: Scenario) -> None:
    events = [_recorded(doc) for doc in accepted.docs if doc["subject"] == "extremes-chain"]
    assert len(events) == len(accepted.chain) > 1000
    forward = resolve(events)
    backward = resolve(list(reversed(events)))
    status = [forward.annotations[UUID(eid)].status for eid in accepted.chain]
    assert status == [backward.annotations[UUID(eid)].status for eid in accepted.chain]
    # The last retraction stands, so the one before it is retracted, and so on down to the fact.
    assert status[-1] == "active"
    assert status[-2] == "retracted"
    assert (project("extremes-chain", events).agreement is None) == (status[0] == "retracted")


def _mix(event_type: str, picks: list[Case]) -> dict[str, Any]:
    """A document of the type with the varied field of every picked case at once."""
    doc = deepcopy(minimal(event_type))
    for case in picks:
        for key, value in case.doc.items():
            if key == "data" and isinstance(value, dict) and isinstance(doc.get("data"), dict):
                doc["data"].update(deepcopy(value))
            else:
                doc[key] = deepcopy(value)
    return doc


BY_TYPE: dict[str, list[Case]] = defaultdict(list)
for _case in ALL:
    BY_TYPE[_case.event_type].append(_case)


@st.composite
def mixes(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from(sorted(BY_TYPE)))
    pool = BY_TYPE[event_type]
    valid_only = draw(st.booleans())
    candidates = [c for c in pool if c.valid] if valid_only else pool
    return _mix(event_type, draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=8)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(mixes(), min_size=1, max_size=6), as_of=st.sampled_from(EDGES),
       known_at=st.sampled_from(EDGES))
def test_any_mix_of_extremes_is_refused_cleanly_or_folds(
    docs: list[dict[str, Any]], as_of: datetime | None, known_at: datetime | None
) -> None:
    """Many fields at their extremes at once: ingest's judgement is an InvalidEvent or an event that folds."""
    events: list[Event] = []
    for i, doc in enumerate(docs):
        try:
            event = parse_event({**doc, "id": str(UUID(int=i + 1)), "recorded_at": RECORDED, "subject": "mix"})
        except InvalidEvent:
            continue
        record = to_record(event, source="accordwatch/test")
        assert from_record(record.key, record.value, record.headers) == event
        events.append(event)
    state = project("mix", events, as_of=as_of, known_at=known_at)
    assert SubjectState.model_validate_json(state.model_dump_json()) == state
    assert _state(project("mix", list(reversed(events)), as_of=as_of, known_at=known_at)) == _state(state)


def test_recorded_at_of_the_edges_orders_events() -> None:
    first = parse_event({**minimal("AgreementSigned"), "id": str(UUID(int=1)), "recorded_at": "1000-01-01T00:00:00Z"})
    last = parse_event({**minimal("AgreementSuspended"), "id": str(UUID(int=2)),
                        "recorded_at": "8999-12-31T23:59:59.999999Z"})
    assert project("x", [first, last], known_at=MIN_INSTANT).event_count == 1
    assert project("x", [first, last], known_at=datetime(2026, 1, 1, tzinfo=UTC)).event_count == 1
    assert project("x", [first, last], known_at=MAX_INSTANT).event_count == 2
