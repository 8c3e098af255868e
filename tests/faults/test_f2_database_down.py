"""F2 database down: the workers wait the outage out and lose nothing, notify nothing twice.

PostgreSQL (a server of this test's own) stopped for 30 s while events are posted at
200/s; on SQLite, an exclusive lock held on both databases for 30 s. After recovery every
event answered 202 is in the read model and in the alert store, and no alert change is
sent under two webhook-ids.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from services.alerts.tables import AlertEvent
from services.platform.db import make_engine
from services.projector.readmodel.tables import StoredEvent
from services.stack.postgres import LocalPostgres
from tests.conftest import Broker, RunningStack, make_stack, wait_for
from tests.faults.conftest import Figures
from tests.faults.harness import Poster, fresh_stays, metric_total, notification_duplicates, wait_for_ids
from tests.receiver import Receiver
from tests.workload import realistic_events

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.stack]

RATE = 200.0
OUTAGE_S = 30.0
BEFORE_S = 3.0
AFTER_S = 2.0
SERVICES = ("ingest", "projector-worker", "alerts-worker", "alerts-api")
ENV = {
    "ACCORDWATCH_WORKER_RETRY_MAX_S": "2",
    "ACCORDWATCH_WORKER_SQLITE_BUSY_TIMEOUT_S": "2",
    "ACCORDWATCH_WEBHOOK_RETRY_SCHEDULE": "0,1,1,2,2,5",
}


def workload(run: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Events for the whole run at RATE: history, and a fresh stay request (one webhook each) every 20th."""
    total = int(RATE * (BEFORE_S + OUTAGE_S + AFTER_S))
    stays = fresh_stays(f"f2-{run}", total // 20)
    history = iter(realistic_events(total - len(stays), seed=41, subjects=30))
    mixed: list[dict[str, Any]] = []
    for stay in stays:
        mixed.extend(doc for _, doc in zip(range(19), history, strict=False))
        mixed.append(stay)
    mixed.extend(history)
    return mixed, stays


def subscribe(stack: RunningStack, receiver: Receiver, path: str) -> None:
    url = receiver.endpoint(path)
    response = stack.alerts.post("/v1/subscriptions", json={"url": url, "rules": ["stay-requested"]})
    assert response.status_code == 201, response.text
    receiver.endpoint(path, secret=response.json()["secret"])


def run_outage(stack: RunningStack, receiver: Receiver, figures: Figures, path: str,
               outage: Callable[[], Any]) -> None:
    """Post at RATE, take the database away for OUTAGE_S with `outage` (a context manager), check everything."""
    run = uuid.uuid4().hex[:6]
    subscribe(stack, receiver, path)
    events, stays = workload(run)
    poster = Poster(stack.stack.urls["ingest"], stack.stack.dev_key, events, rate=RATE)
    poster.start()
    time.sleep(BEFORE_S)  # posting and projecting at full speed before the outage (not a synchronisation)
    down_at = time.monotonic()
    with outage():
        time.sleep(OUTAGE_S)
    up_at = time.monotonic()
    posted = poster.join_checked()
    read_model, alert_store = make_engine(stack.stack.db_url), make_engine(stack.stack.alerts_db_url)
    try:
        # The alerts worker works off the outage's backlog at its own pace (a loaded machine: minutes).
        wait_for_ids([("read model", read_model, StoredEvent), ("alert store", alert_store, AlertEvent)],
                     posted.acked, timeout=600)
        recovered = time.monotonic() - up_at
    finally:
        read_model.dispose()
        alert_store.dispose()
    wanted = {s["id"] for s in stays}
    wait_for(lambda: len(receiver.verified(path)) >= len(wanted), timeout=180,
             what="a webhook for every fresh stay request")
    duplicates = notification_duplicates(receiver, path)
    urls = stack.stack.urls
    figures.update(
        posted=len(events), answered_202=len(posted.acked), statuses=posted.statuses(),
        outage_seconds=round(up_at - down_at, 1),
        missing_after_recovery=0, seconds_from_recovery_to_all_applied=round(recovered, 1),
        projector_batch_retries=metric_total(f"{urls['projector-worker']}/metrics",
                                             "accordwatch_projector_batch_retries_total"),
        alerts_batch_retries=metric_total(f"{urls['alerts-worker']}/metrics",
                                          "accordwatch_alerts_batch_retries_total"),
        webhooks_expected=len(wanted), **duplicates,
    )
    assert len(posted.acked) == len(events)
    assert duplicates["changes_delivered"] == len(wanted)
    assert duplicates["sent_twice_with_different_webhook_ids"] == 0


@pytest.fixture
def own_postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL server of this test's own: stopping it touches nobody else."""
    server = LocalPostgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(1200)
def test_f2_postgresql_stopped_for_30s_while_posting_loses_nothing(
    kafka: Broker, own_postgres: LocalPostgres, tmp_path: Path, fault_receiver: Receiver, figures: Figures
) -> None:
    url = own_postgres.create_database("f2")
    stack = make_stack(kafka, tmp_path, database_url=url, services=SERVICES, env=ENV)

    @contextmanager
    def stopped() -> Iterator[None]:
        own_postgres.halt()
        try:
            yield
        finally:
            own_postgres.resume()

    try:
        run_outage(stack, fault_receiver, figures, "/f2-postgresql", stopped)
    finally:
        stack.close()


@pytest.mark.timeout(1200)
def test_f2_sqlite_locked_exclusively_for_30s_while_posting_loses_nothing(
    kafka: Broker, tmp_path: Path, fault_receiver: Receiver, figures: Figures
) -> None:
    stack = make_stack(kafka, tmp_path, services=SERVICES, env=ENV)
    files = [stack.stack.db_url.removeprefix("sqlite:///"), stack.stack.alerts_db_url.removeprefix("sqlite:///")]

    @contextmanager
    def locked() -> Iterator[None]:
        begun: list[sqlite3.Connection] = []
        try:
            for path in files:
                holder = sqlite3.connect(path, isolation_level=None, timeout=60)
                holder.execute("BEGIN EXCLUSIVE")
                begun.append(holder)
            yield
        finally:
            for holder in begun:
                holder.execute("ROLLBACK")
                holder.close()

    try:
        run_outage(stack, fault_receiver, figures, "/f2-sqlite", locked)
    finally:
        stack.close()
