"""A rebuild split over processes by partition equals one rebuilt in a single process, on both backends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.cloudevents import to_record
from schemas.registry import parse_event
from services.platform.db import make_engine
from services.platform.kafka import make_producer
from services.projector.readmodel.migrate import upgrade
from services.projector.readmodel.store import ReadModelStore, active_generation
from services.projector.replay import rebuild
from services.projector.settings import ProjectorSettings
from tests.conftest import Broker, dump_generation
from tests.samples import event
from tests.workload import realistic_events

pytestmark = pytest.mark.kafka


def _history() -> list[dict[str, Any]]:
    """A realistic stream (late reports included) with a retraction and a correction in it."""
    docs = list(realistic_events(2_500, seed=21, subjects=60))
    target = next(d for d in docs if d["type"] == "TransferReported")
    later = {"subject": target["subject"], "occurred_at": "2024-01-01"}
    docs.append({**event("EventRetracted", **later), "id": "0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f99",
                 "data": {"event_id": target["id"], "reason": "reported twice"}})
    other = next(d for d in docs if d["type"] == "TransferReported" and d["subject"] != target["subject"])
    docs.append({**event("EventCorrected", subject=other["subject"], occurred_at="2024-01-02"),
                 "id": "0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f98",
                 "data": {"event_id": other["id"], "changes": {"data": {"count": 7}}}})
    return docs


async def _fill(bootstrap: str, topic: str, docs: list[dict[str, Any]]) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC).isoformat()
    producer = make_producer(bootstrap, client_id="test-fill")
    await producer.start()
    try:
        pending = []
        for doc in docs:
            record = to_record(parse_event({**doc, "recorded_at": now}), source="test")
            pending.append(await producer.send(topic, record.value, key=record.key, headers=record.headers))
        pending.append(await producer.send(topic, b"{not json", key=b"poison"))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def test_rebuild_in_two_processes_equals_one_process(kafka: Broker, database_url: str) -> None:
    topic = kafka.topic()
    docs = _history()
    asyncio.run(_fill(kafka.bootstrap, topic, docs))
    settings = ProjectorSettings(database_url=database_url, kafka_bootstrap_servers=kafka.bootstrap,
                                 events_topic=topic)
    engine = make_engine(database_url, writer=True)
    try:
        upgrade(engine)
        store = ReadModelStore(engine)
        single = asyncio.run(rebuild(settings, store, swap=False, processes=1, batch=700))
        shown: list[tuple[int, int]] = []
        split = asyncio.run(rebuild(settings, store, swap=False, processes=2, batch=700,
                                    progress=lambda done, known, _: shown.append((done, known))))
        assert (single.records, single.parked) == (split.records, split.parked) == (len(docs) + 1, 1)
        assert split.generation != single.generation
        assert shown[-1] == (split.records, split.records), "the progress bar ends at the whole topic"
        assert [d for d, _ in shown] == sorted(d for d, _ in shown)
        one, two = dump_generation(engine, single.generation), dump_generation(engine, split.generation)
        assert sum(map(len, one.values())) > len(docs)
        for table in one:
            assert one[table] == two[table], f"{table} differs between one and two processes"
        assert store.positions(topic, generation=split.generation) == store.positions(
            topic, generation=single.generation)
        # And swapped in like any rebuild, with the records that came after the processes started.
        late = event("AgreementSigned", subject="us-rw-aca-2030", data={"parties": ["US", "RW"]})
        asyncio.run(_fill(kafka.bootstrap, topic, [{**late, "id": "0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f97"}]))
        swapped = asyncio.run(rebuild(settings, store, processes=2))
        assert swapped.records == len(docs) + 3
        with engine.connect() as conn:
            assert active_generation(conn) == swapped.generation
    finally:
        engine.dispose()
