"""Positions come from the database: a Kafka commit that ran ahead of it never skips an event."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from services.alerts.tables import AlertEvent
from services.platform.db import make_engine
from services.projector.readmodel.tables import StoredEvent
from tests.conftest import Broker, RunningStack, make_stack, wait_for
from tests.faults.kafka_ops import commit_to_end
from tests.workload import realistic_events

pytestmark = [pytest.mark.kafka, pytest.mark.stack]

WORKERS = ("projector-worker", "alerts-worker")


@pytest.fixture
def both_workers(kafka: Broker, tmp_path: Path) -> Iterator[RunningStack]:
    running = make_stack(kafka, tmp_path, services=("ingest", *WORKERS))
    try:
        yield running
    finally:
        running.close()


def stored_ids(engine: Engine, table: type[StoredEvent] | type[AlertEvent]) -> set[str]:
    with engine.connect() as conn:
        return {str(i) for i in conn.execute(select(table.id)).scalars()}


def test_a_kafka_commit_ahead_of_the_database_skips_nothing(kafka: Broker, both_workers: RunningStack) -> None:
    stack = both_workers
    events = list(realistic_events(900, seed=21, subjects=60))
    read_model = make_engine(stack.stack.db_url)
    alert_store = make_engine(stack.stack.alerts_db_url)
    stores = (("projector", read_model, StoredEvent), ("alerts", alert_store, AlertEvent))

    def holds_every(engine: Engine, table: type[StoredEvent] | type[AlertEvent]) -> Callable[[], bool]:
        return lambda: acked <= stored_ids(engine, table)

    acked: set[str] = set()
    try:
        acked |= {a["id"] for a in stack.post(*events[:300])}
        for name, engine, table in stores:
            wait_for(holds_every(engine, table), timeout=120, what=f"{name}: first 300")
        for name in WORKERS:
            stack.stack.services[name].stop()
        # While both are down: 600 more, and each group's Kafka commit moved to the end of the topic.
        acked |= {a["id"] for a in stack.post(*events[300:])}
        env = stack.stack.extra_env
        for group in (env["ACCORDWATCH_PROJECTOR_GROUP"], env["ACCORDWATCH_ALERTS_GROUP"]):
            ahead = asyncio.run(commit_to_end(kafka.bootstrap, group, stack.events_topic))
            assert sum(ahead.values()) >= 900
        for name in WORKERS:
            stack.stack.restart(name)
        for name, engine, table in stores:
            wait_for(holds_every(engine, table), timeout=120,
                     what=f"{name}: every event, though Kafka's commit ran ahead of the database")
            assert len(stored_ids(engine, table)) == 900
    finally:
        read_model.dispose()
        alert_store.dispose()
