"""The projector end to end on the real broker: ingest -> Kafka -> faust worker -> SQL -> query API."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select

from services.platform.db import make_engine
from services.projector.readmodel.store import ReadModelStore, active_generation
from services.projector.readmodel.tables import ParkedEvent, StoredEvent
from services.projector.replay import rebuild
from services.projector.settings import ProjectorSettings
from tests.conftest import Broker, RunningStack, dump_generation, make_stack, read_topic, wait_for
from tests.faults.injection import refuse_subject
from tests.samples import event
from tests.workload import realistic_events

pytestmark = [pytest.mark.kafka, pytest.mark.stack]


def agreement(stack: RunningStack, subject: str, **params: str) -> dict[str, Any] | None:
    response = stack.query.get(f"/v1/agreements/{subject}", params=params)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_posted_events_appear_in_the_query_api(any_stack: RunningStack) -> None:
    stack = any_stack
    subject = "us-ec-aca-2024"
    stack.post(
        event(
            "AgreementSigned",
            subject=subject,
            occurred_at="2024-05-02",
            data={"parties": ["US", "EC"], "excluded_nationalities": ["EC"]},
        ),
        event("TransferReported", subject=subject, occurred_at="2024-06-30", data={"count": 120, "cumulative": True}),
        event("TransferReported", subject=subject, occurred_at="2024-07-15", data={"count": 30, "cumulative": False}),
    )
    found = wait_for(
        lambda: (a := agreement(stack, subject)) and a["transfers_total"] == 150 and a,
        what="the agreement with 150 transfers",
    )
    assert found["status"] == "signed"
    assert found["excluded_nationalities"] == ["EC"]
    # A late report dated before the cumulative one is absorbed by it, not added.
    stack.post(
        event("TransferReported", subject=subject, occurred_at="2024-06-01", data={"count": 40, "cumulative": False})
    )
    wait_for(
        lambda: (a := agreement(stack, subject)) and a["transfer_reports"] == 3, what="the late report to be folded"
    )
    assert agreement(stack, subject)["transfers_total"] == 150  # type: ignore[index]
    # As of a date before any report.
    assert agreement(stack, subject, as_of="2024-06-15")["transfers_total"] == 40  # type: ignore[index]
    unknown = stack.query.get("/v1/agreements/no-such-agreement")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert stack.query.get(f"/v1/agreements/{subject}", params={"as_of": "31/12/2024"}).status_code == 422


def test_poison_records_go_to_the_dlq_and_the_worker_goes_on(kafka: Broker, any_stack: RunningStack) -> None:
    stack = any_stack
    subject = f"us-py-aca-{uuid.uuid4().hex[:6]}"
    refused = f"refused-{uuid.uuid4().hex[:6]}"
    engine = make_engine(stack.stack.db_url)
    refuse_subject(engine, "events", refused)  # the database refuses this subject's rows: an apply error
    good = event("AgreementSigned", subject=subject, occurred_at="2024-03-01", data={"parties": ["US", "PY"]})
    later = event("TransferReported", subject=subject, occurred_at="2024-04-01",
                  data={"count": 12, "cumulative": False})

    def straight(doc: dict[str, Any], on: str = subject) -> dict[str, Any]:
        return {**doc, "subject": on, "id": str(uuid.uuid4()), "recorded_at": "2024-03-01T00:00:00Z"}

    unknown = {**straight(event("AgreementSigned")), "type": "TreatyRatified"}
    invalid = straight(event("TransferReported"))
    invalid["data"] = {"count": -5}
    # Shapes ingest once accepted: an instant past year 9999, a count no column holds (decoded or not,
    # depending on the contract's bounds, they are parked), and an event the database refuses.
    far = straight(event("AgreementSigned", occurred_at="9999-12-31T23:30:00-01:00", data={"parties": ["US", "PY"]}))
    huge = straight(event("TransferReported", occurred_at="2024-03-15", data={"count": 2**63, "cumulative": True}))
    refusing = straight(event("AgreementSigned", data={"parties": ["US", "PY"]}), on=refused)

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
        await producer.start()
        try:
            for value in (b"{not json", orjson.dumps(unknown), orjson.dumps(invalid), orjson.dumps(far),
                          orjson.dumps(huge)):
                await producer.send_and_wait(stack.events_topic, value, key=subject.encode())
            await producer.send_and_wait(stack.events_topic, orjson.dumps(refusing), key=refused.encode())
        finally:
            await producer.stop()

    asyncio.run(produce())
    stack.post(good, later)  # after the poison, on the same partition (same key)
    found = wait_for(lambda: (a := agreement(stack, subject)) and a["transfers_total"] == 12 and a,
                     what="the good events after the poison, folded without it")
    assert found["status"] == "signed"
    dead = [r for r in kafka.read_all(stack.dlq_topic) if r.key in (subject.encode(), refused.encode())]
    headers = [{k: v.decode() for k, v in r.headers} for r in dead]
    kinds = [h["accordwatch-dlq-kind"] for h in headers]
    assert len(dead) == 6
    assert {"not_json", "unknown_type", "invalid", "apply_error"} <= set(kinds) <= {
        "not_json", "unknown_type", "invalid", "apply_error"}
    assert all(h["accordwatch-dlq-reason"] for h in headers)
    assert {h["accordwatch-dlq-group"] for h in headers} == {stack.stack.extra_env["ACCORDWATCH_PROJECTOR_GROUP"]}
    assert all(h["accordwatch-dlq-origin"].startswith(f"{stack.events_topic}/") for h in headers)
    [injected] = [h for h in headers if "injected" in h["accordwatch-dlq-reason"]]
    assert injected["accordwatch-dlq-kind"] == "apply_error"
    assert injected["accordwatch-dlq-error"] in {"DataError", "IntegrityError"}
    assert {r.value for r in dead} >= {b"{not json"}
    try:
        with engine.connect() as conn:
            parked = set(conn.execute(select(ParkedEvent.event_id).where(ParkedEvent.kind == "apply_error"))
                         .scalars())
            stored = set(conn.execute(select(StoredEvent.subject).where(StoredEvent.subject == refused)).scalars())
    finally:
        engine.dispose()
    assert uuid.UUID(refusing["id"]) in parked
    assert stored == set(), "a parked event is in no subject's history"
    metrics = httpx.get(f"{stack.stack.urls['projector-worker']}/metrics").text
    assert 'accordwatch_projector_dlq_records_total{reason="apply_error"}' in metrics


@pytest.fixture
def crash_stack(kafka: Broker, tmp_path: Path, database_url: str) -> Iterator[RunningStack]:
    """A stack of its own, on SQLite and on PostgreSQL."""
    running = make_stack(kafka, tmp_path, database_url=database_url,
                         services=("ingest", "projector-worker", "projector-api"))
    try:
        yield running
    finally:
        running.close()


def test_sigkill_mid_stream_loses_nothing_and_equals_a_clean_rebuild(
    kafka: Broker, crash_stack: RunningStack, tmp_path: Path
) -> None:
    events = list(realistic_events(10_000, seed=11, subjects=120))
    acked: set[str] = set()
    worker = crash_stack.stack.services["projector-worker"]
    engine = make_engine(crash_stack.stack.db_url)
    kills = 0

    def count() -> int:
        with engine.connect() as conn:
            return len(conn.execute(select(StoredEvent.id)).all())

    posting = threading.Event()

    def post_all() -> None:
        for start in range(0, len(events), 250):
            acks = crash_stack.post(*events[start : start + 250])
            acked.update(a["id"] for a in acks)
        posting.set()

    poster = threading.Thread(target=post_all)
    poster.start()
    try:
        for threshold in (2_000, 6_000):
            wait_for(partial(lambda t: count() >= t, threshold), timeout=120, what=f"{threshold} events applied")
            worker.kill()  # SIGKILL in the middle of the stream
            kills += 1
            worker = crash_stack.stack.restart("projector-worker")
    finally:
        poster.join(timeout=300)
    assert posting.is_set()
    assert len(acked) == 10_000
    assert kills == 2
    wait_for(lambda: count() >= 10_000, timeout=180, what="every acknowledged event applied")
    with engine.connect() as conn:
        stored = {str(i) for i in conn.execute(select(StoredEvent.id)).scalars()}
        live_generation = active_generation(conn)
    assert acked <= stored, f"{len(acked - stored)} acknowledged events missing"

    # A clean rebuild of the same topic, into a fresh generation beside the live one.
    settings = ProjectorSettings(
        database_url=crash_stack.stack.db_url,
        kafka_bootstrap_servers=kafka.bootstrap,
        events_topic=crash_stack.events_topic,
    )
    crash_stack.stack.services["projector-worker"].stop()
    writer = make_engine(settings.database_url, writer=True)
    try:
        rebuilt = asyncio.run(rebuild(settings, ReadModelStore(writer), swap=False))
    finally:
        writer.dispose()
    assert rebuilt.records == len(asyncio.run(read_topic(kafka.bootstrap, crash_stack.events_topic)))
    live, clean = dump_generation(engine, live_generation), dump_generation(engine, rebuilt.generation)
    engine.dispose()
    for table in live:
        assert live[table] == clean[table], f"{table} differs from a clean rebuild"


def test_replay_swaps_while_the_api_keeps_answering(kafka: Broker, tmp_path: Path, database_url: str) -> None:
    running = make_stack(kafka, tmp_path, database_url=database_url)
    try:
        events = list(realistic_events(3_000, seed=5, subjects=40))
        for start in range(0, len(events), 1000):
            running.post(*events[start : start + 1000])
        engine = make_engine(running.stack.db_url)

        def applied() -> int:
            with engine.connect() as conn:
                return len(conn.execute(select(StoredEvent.id)).all())

        wait_for(lambda: applied() >= 3_000, timeout=120, what="the stream applied")
        before = running.query.get("/v1/agreements", params={"limit": 500}).json()["items"]
        settings = ProjectorSettings(
            database_url=running.stack.db_url,
            kafka_bootstrap_servers=kafka.bootstrap,
            events_topic=running.events_topic,
        )
        answers: list[int] = []
        stop = threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                answers.append(running.query.get("/v1/agreements", params={"limit": 5}).status_code)

        asker = threading.Thread(target=keep_asking)
        asker.start()
        writer = make_engine(settings.database_url, writer=True)
        try:
            result = asyncio.run(rebuild(settings, ReadModelStore(writer)))
        finally:
            stop.set()
            asker.join()
            writer.dispose()
        assert answers
        assert set(answers) == {200}
        with engine.connect() as conn:
            assert active_generation(conn) == result.generation > 1
        after = running.query.get("/v1/agreements", params={"limit": 500}).json()["items"]
        assert [a["status"] for a in after] == [a["status"] for a in before]
        assert [a["transfers_total"] for a in after] == [a["transfers_total"] for a in before]
        # The live worker goes on writing into the new generation.
        running.post(
            event("AgreementSigned", subject="us-rw-aca-2025", occurred_at="2025-01-05", data={"parties": ["US", "RW"]})
        )
        wait_for(lambda: agreement(running, "us-rw-aca-2025"), what="a new event after the swap")
        engine.dispose()
    finally:
        running.close()
