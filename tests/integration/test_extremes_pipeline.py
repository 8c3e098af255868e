"""Every field of every event type at its extremes, through the real ingest API, Kafka, the fold and both databases.

The cases come from the contract (tests/extremes.py walks the event types' JSON Schemas): what
ingest refuses is a 422 naming the field and never reaches the topic; what it accepts comes
back off the topic, folds, is written by the read-model store on SQLite and on the real
PostgreSQL server, and is served by the query API, at the instant range's edges too.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
import uuid_utils
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from schemas.cloudevents import from_record
from schemas.envelope import MAX_COUNT, Event
from schemas.registry import parse_event
from services.domain.fold import project, resolve
from services.domain.state import SubjectState
from services.platform.db import make_engine
from services.projector.api import create_app
from services.projector.readmodel.migrate import upgrade
from services.projector.readmodel.store import Consumed, ReadModelStore
from services.projector.readmodel.tables import AgreementRow, StoredEvent, SubjectSnapshot, TransferRow
from services.projector.settings import ProjectorSettings
from tests.conftest import Broker, RunningStack, make_stack
from tests.extreme_scenario import CORRECTED, Scenario, scenario
from tests.extremes import Case, cases, minimal

pytestmark = pytest.mark.kafka

CHUNK_BYTES = 8 * 1024 * 1024
CHUNK_EVENTS = 2000
KEY = "k" * 32


def _body(docs: list[dict[str, Any]]) -> bytes:
    # The standard library writes what orjson cannot (integers past 64 bits); non-ASCII stays UTF-8.
    return json.dumps({"events": docs}, ensure_ascii=False).encode()


def _chunks(docs: list[Any], size: Any) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    weight = 0
    for doc in docs:
        heavy = len(json.dumps(size(doc), ensure_ascii=False).encode())
        if chunk and (weight + heavy > CHUNK_BYTES or len(chunk) >= CHUNK_EVENTS):
            yield chunk
            chunk, weight = [], 0
        chunk.append(doc)
        weight += heavy
    if chunk:
        yield chunk


@dataclass
class Pipeline:
    """What went through ingest and came back off the topic."""

    scenario: Scenario
    refused: list[tuple[Case, list[dict[str, Any]]]] = field(default_factory=list)
    """Each refused case with the errors ingest gave for its index."""
    singles: list[tuple[Case, int, dict[str, Any]]] = field(default_factory=list)
    consumed: list[Consumed] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    """Ids on the topic that were never accepted."""
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def pipeline(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    started = time.monotonic()
    stack = make_stack(kafka, tmp_path_factory.mktemp("extremes"), services=("ingest",))
    try:
        yield _run(stack, kafka, started)
    finally:
        stack.close()


def _run(stack: RunningStack, kafka: Broker, started: float) -> Pipeline:
    out = Pipeline(scenario())
    headers = {"Content-Type": "application/json"}
    refused = [c for c in cases() if not c.valid]
    for chunk in _chunks(refused, lambda case: case.doc):
        response = stack.ingest.post("/v1/events/batch", content=_body([c.doc for c in chunk]), headers=headers)
        assert response.status_code == 422, response.text[:500]
        assert response.headers["content-type"] == "application/problem+json"
        by_index: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for error in response.json()["errors"]:
            by_index[error["index"]].append(error)
        out.refused.extend((case, by_index[i]) for i, case in enumerate(chunk))
    first_of_type: dict[str, Case] = {}
    for case in refused:
        first_of_type.setdefault(case.event_type, case)
    for case in first_of_type.values():
        response = stack.ingest.post("/v1/events", content=json.dumps(case.doc, ensure_ascii=False).encode(),
                                     headers=headers)
        out.singles.append((case, response.status_code, response.json()))
    out.seconds["refused"] = time.monotonic() - started
    accepted = {_id(doc) for doc in out.scenario.docs}
    for chunk in _chunks(out.scenario.docs, lambda doc: doc):
        response = stack.ingest.post("/v1/events/batch", content=_body(chunk), headers=headers)
        assert response.status_code == 202, response.text[:2000]
        assert [a["id"] for a in response.json()["events"]] == [_id(d) for d in chunk]
    out.seconds["accepted"] = time.monotonic() - started - out.seconds["refused"]
    records = kafka.read_all(stack.events_topic, expect=len(accepted), timeout=180)
    for record in records:
        event = from_record(record.key, record.value, record.headers)
        if str(event.event_id) not in accepted:
            out.foreign.append(str(event.event_id))
        out.consumed.append(Consumed(stack.events_topic, record.partition, record.offset, event, record.value))
    out.seconds["total"] = time.monotonic() - started
    return out


def test_refused_extremes_are_422_naming_the_field(pipeline: Pipeline) -> None:
    unnamed = [(case.name, [(e["field"], e["reason"]) for e in errors][:3])
               for case, errors in pipeline.refused if not any(case.named_by(e["field"]) for e in errors)]
    assert unnamed == []
    assert len(pipeline.refused) > 3000
    for case, status, body in pipeline.singles:
        assert status == 422, body
        assert body["type"].endswith("invalid-event")
        assert any(case.named_by(e["field"]) for e in body["errors"]), (case.name, body)


def test_every_accepted_extreme_is_on_the_topic_once_and_nothing_refused_is(pipeline: Pipeline) -> None:
    print(f"\nextremes through ingest: {len(pipeline.refused)} refused, {len(pipeline.scenario.docs)} accepted, "
          f"seconds {({k: round(v, 1) for k, v in pipeline.seconds.items()})}")
    ids = [str(c.event.event_id) for c in pipeline.consumed if c.event is not None]
    assert sorted(ids) == sorted(_id(doc) for doc in pipeline.scenario.docs)
    assert pipeline.foreign == []


def _id(doc: dict[str, Any]) -> str:
    """An event's id as ingest writes it (a client may send it without hyphens or in capitals)."""
    return str(UUID(doc["id"]))


def _by_subject(consumed: list[Consumed]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = defaultdict(list)
    for item in consumed:
        assert item.event is not None
        out[item.event.subject].append(item.event)
    return out


def _snapshots(engine: Any) -> dict[str, SubjectState]:
    with engine.connect() as conn:
        rows = conn.execute(select(SubjectSnapshot.subject, SubjectSnapshot.state)
                            .where(SubjectSnapshot.generation == 1))
        return {subject: SubjectState.model_validate_json(state) for subject, state in rows}


def test_accepted_extremes_are_stored_folded_and_served_on_both_backends(
    pipeline: Pipeline, database_url: str
) -> None:
    started = time.monotonic()
    engine = make_engine(database_url, writer=True)
    upgrade(engine)
    now = datetime.now(UTC)
    store = ReadModelStore(engine, clock=lambda: now)  # it folds as of now: compared with project as of now
    rng = random.Random(5)
    position = 0
    while position < len(pipeline.consumed):  # batches of varying size, as a worker takes them
        size = rng.randint(100, 1500)
        store.apply(pipeline.consumed[position:position + size])
        position += size
    store.apply(pipeline.consumed[:300])  # redelivery changes nothing
    by_subject = _by_subject(pipeline.consumed)
    with engine.connect() as conn:
        stored = set(conn.execute(select(StoredEvent.id).where(StoredEvent.generation == 1)).scalars())
    assert stored == {UUID(d["id"]) for d in pipeline.scenario.docs}
    snapshots = _snapshots(engine)
    assert set(snapshots) == set(by_subject)
    for subject, events in by_subject.items():
        assert snapshots[subject] == project(subject, events, as_of=now), subject
    _sums_past_32_bits(engine, pipeline.scenario)
    notes = resolve(by_subject[CORRECTED]).annotations
    assert all(UUID(c) in notes[UUID(t)].corrected_by for c, t in pipeline.scenario.applied.items())
    _served(database_url, engine, snapshots, pipeline)
    engine.dispose()
    print(f"\nextremes in the read model ({database_url.split(':')[0]}): {time.monotonic() - started:.1f} s")


def _sums_past_32_bits(engine: Any, sc: Scenario) -> None:
    with engine.connect() as conn:
        total = conn.execute(select(AgreementRow.transfers_total).where(AgreementRow.id == sc.sums)).scalar_one()
        counts = conn.execute(select(TransferRow.nationality, TransferRow.count)
                              .where(TransferRow.agreement == sc.sums)).all()
    assert total == 5 * MAX_COUNT > 2**31
    assert {count for _, count in counts} == {5 * MAX_COUNT, 5 * MAX_COUNT - 249 * 5 * MAX_COUNT}


EDGE_PARAMS: list[dict[str, str]] = [
    {}, {"as_of": "1000-01-01", "known_at": "8999-12-31T23:59:59.999999Z"},
    {"as_of": "8999-12-31T23:59:59.999999+00:00", "known_at": "1000-01-01T00:00:00Z"},
]


def _served(database_url: str, engine: Any, states: dict[str, SubjectState], pipeline: Pipeline) -> None:
    settings = ProjectorSettings(database_url=database_url, dev_key=KEY)
    with TestClient(create_app(settings, engine=engine)) as client:
        client.headers["Authorization"] = f"Bearer {KEY}"
        for subject, state in states.items():
            kinds = [k for k, part in (("agreements", state.agreement), ("cases", state.case)) if part is not None]
            for kind in kinds:
                for params in EDGE_PARAMS:
                    response = client.get(f"/v1/{kind}/{subject}", params=params)
                    assert response.status_code == 200, (subject, params, response.text[:300])
                _every_page(client, f"/v1/{kind}/{subject}/timeline")
        for path in ("/v1/agreements", "/v1/cases", "/v1/deadlines?status=all", "/v1/statistics"):
            _every_page(client, path)
        for group_by in ("month", "nationality", "month,nationality", "none"):
            assert client.get("/v1/transfers", params={"group_by": group_by}).status_code == 200
        # Every type's largest event, and a few others (each read re-resolves its subject's amendments).
        sample = [d["id"] for d in pipeline.scenario.docs if d["subject"] == "a" * 120]
        sample += random.Random(3).sample([d["id"] for d in pipeline.scenario.docs], 20)
        for event_id in sample:
            assert client.get(f"/v1/events/{event_id}").status_code == 200, event_id
        some = next(s for s, st in states.items() if st.agreement is not None)
        for bound in ("as_of", "known_at"):
            for beyond in ("9999-12-31", "0999-12-31T23:59:59Z"):
                response = client.get(f"/v1/agreements/{some}", params={bound: beyond})
                assert response.status_code == 422, response.text


def _every_page(client: TestClient, path: str) -> None:
    token: str | None = None
    while True:
        response = client.get(path, params={"limit": 500, **({"page_token": token} if token else {})})
        assert response.status_code == 200, (path, response.text[:300])
        token = response.json().get("next")
        if not token:
            return


def test_the_same_id_on_two_subjects_is_stored_once_without_an_error(database_url: str) -> None:
    """Ingest is stateless: an id reused for another subject (in another batch) is accepted twice.
    The store keeps the first it applies and counts the second a duplicate; nothing raises."""
    shared = str(uuid_utils.uuid7())
    first, second = (parse_event({**minimal("AgreementSigned"), "id": shared, "subject": subject,
                                  "recorded_at": "2026-11-22T12:00:00Z"}) for subject in ("dup-a", "dup-b"))
    engine = make_engine(database_url, writer=True)
    upgrade(engine)
    applied = ReadModelStore(engine).apply([Consumed("t", 0, 0, first), Consumed("t", 1, 0, second)])
    assert (applied.new_events, applied.duplicates) == (1, 1)
    assert set(_snapshots(engine)) == {"dup-a"}
    engine.dispose()


def test_what_was_stored_before_the_bounds_tightened_does_not_stop_its_subject(database_url: str) -> None:
    """A read model written before this contract may hold an event it now refuses (a year-999 date)
    and a snapshot it cannot read (a source URL with a space). The next event of that subject is
    folded from the events that still stand, as a replay that parks the old one would fold it."""
    def doc(kind: str, occurred: str, **data: Any) -> Event:
        base = minimal(kind)
        base["data"].update(data)
        return parse_event({**base, "id": str(uuid_utils.uuid7()), "subject": "old-data", "occurred_at": occurred,
                            "recorded_at": "2026-11-22T12:00:00Z",
                            "sources": [{"publisher": "AP", "url": "https://example.org/a"}]})

    signed = doc("AgreementSigned", "2019-07-26")
    report = doc("TransferReported", "2020-01-31", count=40, cumulative=False)
    engine = make_engine(database_url, writer=True)
    upgrade(engine)
    store = ReadModelStore(engine)
    store.apply([Consumed("t", 0, 0, signed), Consumed("t", 0, 1, report)])
    with engine.begin() as conn:  # what an older contract let in
        conn.execute(update(StoredEvent).where(StoredEvent.id == report.event_id).values(
            body=report.model_dump_json(exclude_none=True).replace('"2020-01-31"', '"0999-01-31"')))
        state = conn.execute(select(SubjectSnapshot.state).where(SubjectSnapshot.subject == "old-data")).scalar_one()
        assert "https://example.org/a" in state
        conn.execute(update(SubjectSnapshot).where(SubjectSnapshot.subject == "old-data").values(
            state=state.replace("https://example.org/a", "https://example.org/a b")))
    settings = ProjectorSettings(database_url=database_url, dev_key=KEY)
    with TestClient(create_app(settings, engine=engine)) as client:  # before the next event: still served
        client.headers["Authorization"] = f"Bearer {KEY}"
        assert client.get("/v1/agreements/old-data").json()["transfers_total"] == 0
    later = doc("TransferReported", "2020-02-29", count=7, cumulative=False)
    ReadModelStore(engine).apply([Consumed("t", 0, 2, later)])
    state_now = _snapshots(engine)["old-data"]
    assert state_now.agreement is not None
    assert state_now.agreement.transfers_total == 7
    with TestClient(create_app(settings, engine=engine)) as client:
        client.headers["Authorization"] = f"Bearer {KEY}"
        assert client.get("/v1/agreements/old-data").json()["transfers_total"] == 7
        timeline = client.get("/v1/agreements/old-data/timeline").json()["items"]
        assert len(timeline) == 2
        assert client.get(f"/v1/events/{report.event_id}").status_code == 404
    engine.dispose()
