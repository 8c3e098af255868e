"""F4 broker paused: ingest says 503 in time, clients retry, every event lands once.

A broker of this test's own is SIGSTOPped for 10 s while events are posted and projected.
Ingest answers 503 within its produce timeout; the client posts the same batch (same
ids) again until 202; afterwards every acknowledged id is in the read model and the alert
store exactly once, although some are on the topic twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.alerts.tables import AlertEvent
from services.platform.db import make_engine
from services.projector.readmodel.tables import StoredEvent
from services.stack.broker import LocalBroker, default_topics, ensure_topics, free_port
from tests.conftest import Broker, make_stack, read_topic
from tests.faults.conftest import Figures
from tests.faults.harness import Posted, Poster, metric_total, pause, resume, wait_for_ids
from tests.workload import realistic_events

pytestmark = [pytest.mark.kafka, pytest.mark.stack]

RATE = 100.0
CLIENTS = 4
PAUSE_S = 10.0
PRODUCE_TIMEOUT_S = 3.0
SLACK_S = 2.0


@pytest.fixture
def own_broker(tmp_path: Path, kafka_libs: Path) -> Iterator[Broker]:
    """A broker of this test's own: pausing it touches nobody else."""
    broker = LocalBroker(tmp_path / "kafka", port=free_port(), controller_port=free_port(), libs=kafka_libs)
    broker.start()
    try:
        broker.wait_ready()
        asyncio.run(ensure_topics(broker.bootstrap, default_topics()))
        yield Broker(broker)
    finally:
        broker.stop()


@pytest.mark.timeout(900)
def test_f4_broker_paused_for_10s_answers_503_in_time_and_every_retried_id_lands_once(
    own_broker: Broker, tmp_path: Path, figures: Figures
) -> None:
    running = make_stack(own_broker, tmp_path / "stack", services=("ingest", "projector-worker", "alerts-worker"),
                         env={"ACCORDWATCH_INGEST_PRODUCE_TIMEOUT_S": str(PRODUCE_TIMEOUT_S)})
    try:
        events = list(realistic_events(2000, seed=61, subjects=60))
        # Four clients at once, so the pause meets several requests in flight.
        posters = [Poster(running.stack.urls["ingest"], running.stack.dev_key, events[i::CLIENTS],
                          rate=RATE / CLIENTS, retry_s=0.5) for i in range(CLIENTS)]
        for poster in posters:
            poster.start()
        time.sleep(4)  # posting and projecting before the pause (the scenario's schedule, not a sync)
        assert own_broker.local.proc is not None
        pause(own_broker.local)
        paused_at = time.monotonic() - posters[0].started_at
        time.sleep(PAUSE_S)
        resume(own_broker.local)
        posted = Posted.merged(poster.join_checked() for poster in posters)
        read_model = make_engine(running.stack.db_url)
        alert_store = make_engine(running.stack.alerts_db_url)
        try:
            took = wait_for_ids([("read model", read_model, StoredEvent), ("alert store", alert_store, AlertEvent)],
                                posted.acked, timeout=600)
            with read_model.connect() as conn:
                rows = conn.execute(select(func.count()).select_from(StoredEvent)).scalar_one()
            with alert_store.connect() as conn:
                alert_rows = conn.execute(select(func.count()).select_from(AlertEvent)).scalar_one()
        finally:
            read_model.dispose()
            alert_store.dispose()
        on_topic = Counter(dict(r.headers)["ce_id"].decode()
                           for r in asyncio.run(read_topic(own_broker.bootstrap, running.events_topic)))
        during = [(at, status, s) for at, status, s in posted.answers if paused_at - 1 <= at <= paused_at + PAUSE_S]
        figures.update(
            posted=len(events), answered_202=len(posted.acked), statuses=posted.statuses(),
            answers_during_the_pause=dict(Counter(status for _, status, _ in during)),
            slowest_503_seconds=round(posted.slowest(503), 2), bound_seconds=PRODUCE_TIMEOUT_S + SLACK_S,
            clients=CLIENTS, batches_retried=len(posted.retried) // 10, ids_retried=len(posted.retried),
            ids_on_the_topic_twice=sum(1 for n in on_topic.values() if n > 1),
            read_model_rows=rows, alert_store_rows=alert_rows, missing=len(posted.acked - set(on_topic)),
            seconds_after_posting_to_all_applied=round(took, 1),
            projector_duplicates_skipped=metric_total(f"{running.stack.urls['projector-worker']}/metrics",
                                                      "accordwatch_projector_duplicates_total"),
        )
        assert posted.statuses().get(503, 0) > 0, "the pause never reached a client: nothing was tested"
        assert posted.slowest(503) <= PRODUCE_TIMEOUT_S + SLACK_S
        assert posted.statuses().get(0, 0) == 0, "ingest always answered"
        assert len(posted.acked) == len(events)
        assert rows == alert_rows == len(posted.acked), "each id once, although some are on the topic twice"
    finally:
        running.close()
