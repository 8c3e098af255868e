"""The read model on SQLite and on a real PostgreSQL server: migrations, idempotent batches, queries, swap."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import uuid_utils
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from schemas.envelope import instant
from schemas.registry import parse_event, parse_event_json
from services.platform.db import make_engine
from services.projector.api import create_app
from services.projector.readmodel.migrate import upgrade
from services.projector.readmodel.store import Consumed, ReadModelStore, active_generation
from services.projector.readmodel.tables import Base, StoredEvent
from services.projector.settings import ProjectorSettings
from tests.conftest import dump_generation
from tests.samples import event
from tests.workload import realistic_events

RECORDED = "2026-01-05T10:00:00Z"


def _engine(url: str) -> Engine:
    engine = make_engine(url, writer=True)
    upgrade(engine)
    return engine


def _consumed(docs: list[dict[str, Any]], topic: str = "t") -> list[Consumed]:
    return [Consumed(topic, i % 3, i, parse_event({"id": str(uuid_utils.uuid7()), **d, "recorded_at": RECORDED}))
            for i, d in enumerate(docs)]


def test_migrations_on_an_empty_database_match_the_models(database_url: str) -> None:
    engine = _engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": "alembic_version_projector"})
        diff = [d for d in compare_metadata(context, Base.metadata)
                if not (d[0] == "remove_table" and d[1].name == "alembic_version_projector")]
    assert diff == []
    with engine.connect() as conn:
        assert active_generation(conn) == 1
    engine.dispose()


def test_batches_in_any_split_with_redelivery_equal_one_clean_pass(database_url: str) -> None:
    docs = list(realistic_events(1_500, seed=3, subjects=25))
    items = _consumed(docs)
    engine = _engine(database_url)
    store = ReadModelStore(engine)
    rng = random.Random(1)
    position = 0
    while position < len(items):  # uneven batches, each redelivered once in part (as after a crash)
        size = rng.randrange(1, 300)
        batch = items[position:position + size]
        store.apply(batch)
        store.apply(batch[: rng.randrange(0, len(batch) + 1)])
        position += size
    assert store.positions("t") == {p: max(i.offset for i in items if i.partition == p) + 1 for p in range(3)}
    crashed = dump_generation(engine, 1)

    clean_store = ReadModelStore(engine)
    building = clean_store.start_generation()
    clean_store.apply(items, generation=building)
    assert dump_generation(engine, building) == crashed
    assert clean_store.swap(building, "t")
    engine.dispose()


def test_long_histories_with_late_events_and_retractions_equal_one_clean_pass(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Late events re-fold from in-memory checkpoints; retractions and corrections from the start.

    Few subjects with hundreds of events each, in small batches, so that late events land
    behind several checkpoints; a few events are retracted or moved in time later on.
    """
    docs = list(realistic_events(2_400, seed=11, subjects=4))
    ids = [str(uuid_utils.uuid7()) for _ in docs]
    rng = random.Random(4)
    stream: list[dict[str, Any]] = [{"id": i, **d} for i, d in zip(ids, docs, strict=True)]
    for at in sorted(rng.sample(range(1_000, len(stream)), 6), reverse=True):
        target = stream[rng.randrange(at - 300, at)]
        if target["type"] in ("EventRetracted", "EventCorrected"):
            continue
        meta = (event("EventRetracted", subject=target["subject"], occurred_at=target["occurred_at"],
                      data={"event_id": target["id"], "reason": "wrong figure"}) if at % 2 else
                event("EventCorrected", subject=target["subject"], occurred_at=target["occurred_at"],
                      data={"event_id": target["id"], "changes": {"occurred_at": "2019-08-01"}}))
        stream.insert(at, {"id": str(uuid_utils.uuid7()), **meta})
    items = [Consumed("t", i % 3, i, parse_event({**d, "recorded_at": RECORDED})) for i, d in enumerate(stream)]
    engine = _engine(database_url)
    expected = _clean_pass(engine, items)

    from services.projector.readmodel import store as store_module

    hits: list[bool] = []
    real = store_module._from_checkpoint

    def spied(*args: Any) -> Any:
        result = real(*args)
        hits.append(result is not None)
        return result

    monkeypatch.setattr(store_module, "_from_checkpoint", spied)
    store = ReadModelStore(engine)
    building = store.start_generation()
    position = 0
    while position < len(items):
        size = rng.randrange(1, 60)
        store.apply(items[position:position + size], generation=building)
        position += size
    assert dump_generation(engine, building) == expected
    assert sum(hits) >= 20, "late events should have re-folded from checkpoints"
    engine.dispose()


def _clean_pass(engine: Engine, items: list[Consumed]) -> dict[str, list[tuple[Any, ...]]]:
    """The read model of one fresh store applying every item in one batch, in a generation of its own."""
    store = ReadModelStore(engine)
    building = store.start_generation()
    store.apply(items, generation=building)
    return dump_generation(engine, building)


def test_deferred_folding_with_redelivery_equals_one_clean_pass(database_url: str) -> None:
    items = _consumed(list(realistic_events(1_500, seed=5, subjects=25)))
    engine = _engine(database_url)
    expected = _clean_pass(engine, items)
    store = ReadModelStore(engine, hold_events=400)  # folds part way through, then at the end
    building = store.start_generation()
    rng = random.Random(2)
    position = 0
    while position < len(items):
        size = rng.randrange(1, 200)
        batch = items[position:position + size]
        store.apply(batch, generation=building, defer_fold=True)
        store.apply(batch[: rng.randrange(0, len(batch) + 1)], generation=building, defer_fold=True)
        if store.holding(building) >= store.hold_events:  # as the rebuild does
            assert store.fold_deferred(building) > 0
            assert store.holding(building) == 0
        position += size
    assert store.fold_deferred(building) > 0
    assert store.fold_deferred(building) == 0
    assert dump_generation(engine, building) == expected
    engine.dispose()


def test_two_writers_taking_turns_on_the_same_subjects_equal_one_clean_pass(database_url: str) -> None:
    """As after a rebalance and back: a store must not trust what it cached once another wrote."""
    items = _consumed(list(realistic_events(1_200, seed=8, subjects=10)))
    engine = _engine(database_url)
    expected = _clean_pass(engine, items)
    first, second = ReadModelStore(engine), ReadModelStore(engine)
    building = first.start_generation()
    rng = random.Random(3)
    position = 0
    while position < len(items):
        size = rng.randrange(1, 120)
        rng.choice((first, second)).apply(items[position:position + size], generation=building)
        position += size
    assert dump_generation(engine, building) == expected
    engine.dispose()


def test_two_workers_folding_the_same_subjects_at_once_equal_one_clean_pass(database_url: str) -> None:
    """Two workers' stores writing the active generation at the same time (a rebalance, partitions growing).

    Each gets the events of its own partitions plus some of the other's (redelivered), so the
    same subjects are folded in concurrent transactions: on PostgreSQL the subject rows are
    locked, on SQLite writers take turns.
    """
    items = _consumed(list(realistic_events(1_500, seed=9, subjects=8)))
    engine = _engine(database_url)
    expected = _clean_pass(engine, items)
    rng = random.Random(4)
    shares = [[c for i, c in enumerate(items) if i % 2 == w or rng.random() < 0.2] for w in (0, 1)]
    engines = [make_engine(database_url, writer=True) for _ in shares]
    errors: list[BaseException] = []

    def work(store: ReadModelStore, share: list[Consumed], seed: int) -> None:
        sizes = random.Random(seed)
        position = 0
        try:
            while position < len(share):
                size = sizes.randrange(1, 60)
                store.apply(share[position:position + size])
                position += size
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ReadModelStore(e), share, n))
               for n, (e, share) in enumerate(zip(engines, shares, strict=True))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        live = active_generation(conn)
    assert dump_generation(engine, live) == expected
    for e in engines:
        e.dispose()
    engine.dispose()


def test_a_failed_batch_leaves_no_trace_in_the_cache(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    items = _consumed(list(realistic_events(600, seed=11, subjects=5)))
    engine = _engine(database_url)
    expected = _clean_pass(engine, items)
    store = ReadModelStore(engine)
    building = store.start_generation()
    store.apply(items[:300], generation=building)

    def broken(*_: Any) -> None:
        raise RuntimeError("the database went away before commit")

    with monkeypatch.context() as patched:
        patched.setattr(store, "_save_offsets", broken)
        with pytest.raises(RuntimeError):
            store.apply(items[300:450], generation=building)
    store.apply(items[300:], generation=building)
    assert dump_generation(engine, building) == expected
    engine.dispose()


def test_stored_events_read_back_as_they_were_given(database_url: str) -> None:
    """Events go in through the driver's executemany; SQLAlchemy must read them back unchanged."""
    items = _consumed(list(realistic_events(50, seed=13, subjects=5)))
    engine = _engine(database_url)
    ReadModelStore(engine).apply(items)
    with engine.connect() as conn:
        stored = {row.id: row for row in conn.execute(select(StoredEvent))}
    assert len(stored) == len(items)
    for item in items:
        assert item.event is not None
        row = stored[item.event.event_id]
        assert (row.subject, row.type, row.confidence) == (item.event.subject, item.event.type,
                                                           item.event.confidence)
        assert row.occurred_at == instant(item.event.occurred_at)
        assert row.recorded_at == item.event.recorded_at
        assert (row.partition, row.offset) == (item.partition, item.offset)
        assert parse_event_json(row.body) == item.event
    engine.dispose()


def test_bulk_insert_stores_what_sqlalchemy_would(database_url: str) -> None:
    """The driver-level insert must store the very values a SQLAlchemy insert stores.

    On SQLite times are text compared as text, so the format must match to the character:
    offsets other than UTC, whole seconds and microseconds included.
    """
    moments = ["2019-09-20", "2020-03-12T09:00:00-04:00", "2020-03-12T13:00:00.000001Z", "1000-01-01",
               "8999-12-31T23:59:59.999999+00:01"]
    docs = [event("AgreementSigned", subject=f"s-{i}", occurred_at=at) for i, at in enumerate(moments)]
    items = [
        Consumed("t", 0, i, parse_event({"id": str(uuid_utils.uuid7()), **doc,
                                         "recorded_at": f"2026-11-22T1{i}:00:00{'.5' if i % 2 else ''}+01:00"}))
        for i, doc in enumerate(docs)
    ]
    engine = _engine(database_url)
    ReadModelStore(engine).apply(items, generation=1)
    with engine.begin() as conn:
        conn.execute(insert(StoredEvent), [
            {"generation": 2, "id": item.event.event_id, "subject": item.event.subject, "type": item.event.type,
             "occurred_at": instant(item.event.occurred_at), "effective_at": instant(item.event.occurred_at),
             "recorded_at": item.event.recorded_at,
             "confidence": item.event.confidence, "body": item.event.model_dump_json(exclude_none=True),
             "partition": item.partition, "offset": item.offset}
            for item in items if item.event is not None
        ])

    def raw(generation: int) -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.exec_driver_sql(
                "SELECT id, subject, type, occurred_at, effective_at, recorded_at, confidence, body, partition, "
                "\"offset\" "
                f"FROM {StoredEvent.__tablename__} WHERE generation = {generation} ORDER BY subject")]

    assert raw(1) == raw(2)
    assert len(raw(1)) == len(moments)
    engine.dispose()


def test_query_api_over_the_backend(database_url: str) -> None:
    engine = _engine(database_url)
    now = datetime(2020, 3, 10, 12, tzinfo=UTC)
    ReadModelStore(engine, clock=lambda: now).apply(_consumed([
        event("AgreementSigned", subject="us-gt-aca-2019", occurred_at="2019-07-26",
              data={"parties": ["US", "GT"]}),
        event("AgreementInForce", subject="us-gt-aca-2019", occurred_at="2019-11-21",
              data={"effective_on": "2019-11-21"}),
        event("TransferReported", subject="us-gt-aca-2019", occurred_at="2020-03-10",
              data={"count": 800, "cumulative": True, "approximate": True}),
        event("CourtRulingIssued", subject="innovation-law-lab-v-wolf", occurred_at="2020-03-04",
              data={"court": "9th Cir.", "outcome": "blocked", "effective_at": "2020-03-12", "affects": ["mpp"]}),
    ]))
    settings = ProjectorSettings(database_url=database_url, dev_key="k" * 32)
    with TestClient(create_app(settings, engine=engine, clock=lambda: now)) as client:
        client.headers["Authorization"] = "Bearer " + "k" * 32
        listed = client.get("/v1/agreements").json()["items"]
        assert [(a["id"], a["status"], a["transfers_total"], a["transfers_approximate"]) for a in listed] == [
            ("us-gt-aca-2019", "in_force", 800, True)]
        assert client.get("/v1/agreements/us-gt-aca-2019", params={"as_of": "2019-08-01"}).json()["status"] == "signed"
        known = client.get("/v1/agreements/us-gt-aca-2019", params={"known_at": "2020-01-01"}).json()
        assert known["status"] is None  # nothing of it was recorded by then
        deadlines = client.get("/v1/deadlines", params={"status": "open"}).json()["items"]
        assert [(d["subject"], d["kind"]) for d in deadlines] == [("innovation-law-lab-v-wolf", "ruling_effective")]
        assert client.get("/v1/cases/innovation-law-lab-v-wolf").json()["status"] == "ruled"
        assert client.get("/v1/cases/nope").status_code == 404
    engine.dispose()


def test_an_event_is_served_with_how_it_stands(database_url: str) -> None:
    """GET /v1/events/{id}: active without amendments; corrected and retracted ones say by what."""
    engine = _engine(database_url)
    batch = _consumed([
        event("AgreementSigned", subject="us-gt-aca-2019", occurred_at="2019-07-26", data={"parties": ["US", "GT"]}),
        event("TransferReported", subject="us-hn-aca-2019", occurred_at="2020-01-31",
              data={"count": 500, "cumulative": False}),
        event("TransferReported", subject="us-hn-aca-2019", occurred_at="2020-02-29",
              data={"count": 20, "cumulative": False}),
    ])
    signed, wrong, doubled = (c.event for c in batch)
    assert signed is not None
    assert wrong is not None
    assert doubled is not None
    amendments = _consumed([
        event("EventCorrected", subject="us-hn-aca-2019", occurred_at="2020-02-01",
              data={"event_id": str(wrong.event_id), "changes": {"data": {"count": 50}}}),
        event("EventRetracted", subject="us-hn-aca-2019", occurred_at="2020-03-01",
              data={"event_id": str(doubled.event_id), "reason": "double report"}),
    ])
    store = ReadModelStore(engine)
    store.apply(batch)
    store.apply([Consumed("t", 9, i, c.event) for i, c in enumerate(amendments)])
    fix, retraction = (c.event for c in amendments)
    assert fix is not None
    assert retraction is not None
    settings = ProjectorSettings(database_url=database_url, dev_key="k" * 32)
    with TestClient(create_app(settings, engine=engine)) as client:
        client.headers["Authorization"] = "Bearer " + "k" * 32
        plain = client.get(f"/v1/events/{signed.event_id}").json()
        assert (plain["status"], plain["retracted_by"], plain["corrected_by"]) == ("active", None, [])
        corrected = client.get(f"/v1/events/{wrong.event_id}").json()
        assert (corrected["status"], corrected["corrected_by"]) == ("corrected", [str(fix.event_id)])
        assert corrected["data"]["count"] == 500  # as recorded; the timeline shows the corrected figure
        retracted = client.get(f"/v1/events/{doubled.event_id}").json()
        assert (retracted["status"], retracted["retracted_by"]) == ("retracted", str(retraction.event_id))
        assert client.get(f"/v1/events/{uuid_utils.uuid7()}").status_code == 404
    engine.dispose()
