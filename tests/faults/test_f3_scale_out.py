"""F3 scale-out: two projector and two alerts workers, one paused, one killed, partitions grown mid-run.

On PostgreSQL, with events posted throughout: a projector worker is SIGSTOPped past the
session timeout (its partitions move, then it comes back with a stale batch), an alerts
worker is SIGKILLed, and the topic grows from 6 to 12 partitions (subjects move to other
partitions, so two workers fold the same subject). The read model must equal a clean
single-worker rebuild, every 202'd id must be in both stores, and no alert change may be
notified twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from services.alerts.tables import AlertEvent
from services.platform.db import make_engine
from services.projector.readmodel.store import ReadModelStore, active_generation
from services.projector.readmodel.tables import StoredEvent
from services.projector.replay import rebuild
from services.projector.settings import ProjectorSettings
from tests.conftest import Broker, dump_columns, dump_generation, make_stack, wait_for
from tests.faults.conftest import Figures
from tests.faults.harness import (
    Poster,
    add_worker,
    fresh_stays,
    metric_total,
    notification_duplicates,
    pause,
    resume,
    subjects_differing,
    wait_for_ids,
)
from tests.faults.kafka_ops import grow_partitions, partition_count
from tests.receiver import Receiver
from tests.workload import realistic_events

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.stack]

RATE = 150.0
SECONDS = 50.0
SESSION_TIMEOUT_S = 6.0
ENV = {
    "ACCORDWATCH_PROJECTOR_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
    "ACCORDWATCH_ALERTS_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
    "ACCORDWATCH_KAFKA_METADATA_MAX_AGE_S": "2",
    "ACCORDWATCH_WORKER_RETRY_MAX_S": "2",
    "ACCORDWATCH_PROJECTOR_BATCH_MAX": "200",
    "ACCORDWATCH_ALERTS_BATCH_MAX": "200",
    "ACCORDWATCH_WEBHOOK_RETRY_SCHEDULE": "0,1,1,2,2,5",
}


def test_f3_two_of_each_worker_paused_killed_and_repartitioned_equal_one_clean_worker(
    kafka: Broker, postgres: Any, tmp_path: Path, fault_receiver: Receiver, figures: Figures
) -> None:
    url: str = postgres.create_database(f"f3_{uuid.uuid4().hex[:10]}")
    running = make_stack(kafka, tmp_path, database_url=url, env=ENV,
                         services=("ingest", "projector-worker", "alerts-worker", "alerts-api"))
    stack = running.stack
    try:
        second_projector = add_worker(stack, "projector-worker", 2)
        second_alerts = add_worker(stack, "alerts-worker", 2)
        path = "/f3"
        hook = fault_receiver.endpoint(path)
        created = running.alerts.post("/v1/subscriptions", json={"url": hook, "rules": ["stay-requested"]})
        assert created.status_code == 201, created.text
        fault_receiver.endpoint(path, secret=created.json()["secret"])

        total = int(RATE * SECONDS)
        stays = fresh_stays(f"f3-{uuid.uuid4().hex[:6]}", total // 25)
        # Few subjects, many events each: after the growth most subjects have events on two partitions.
        events: list[dict[str, Any]] = list(realistic_events(total - len(stays), seed=51, subjects=60))
        for i, stay in enumerate(stays):
            events.insert(i * 25 + 12, stay)
        poster = Poster(stack.urls["ingest"], stack.dev_key, events, rate=RATE)
        poster.start()
        timeline: list[tuple[float, str]] = []
        began = time.monotonic()

        def at(second: float, what: str) -> None:
            time.sleep(max(0.0, began + second - time.monotonic()))  # the scenario's schedule, not a sync
            timeline.append((round(time.monotonic() - began, 1), what))

        at(6, "SIGSTOP projector-worker")
        paused = stack.services["projector-worker"]
        pause(paused)
        at(6 + SESSION_TIMEOUT_S * 2, "SIGCONT projector-worker")
        resume(paused)
        at(22, "SIGKILL alerts-worker-2")
        second_alerts.kill()
        at(28, "partitions 6 -> 12")
        before = asyncio.run(partition_count(kafka.bootstrap, running.events_topic))
        asyncio.run(grow_partitions(kafka.bootstrap, running.events_topic, 12))
        posted = poster.join_checked()
        timeline.append((round(time.monotonic() - began, 1), "posting done"))

        read_model, alert_store = make_engine(stack.db_url), make_engine(stack.alerts_db_url)
        try:
            took = wait_for_ids([("read model", read_model, StoredEvent), ("alert store", alert_store, AlertEvent)],
                                posted.acked, timeout=300)
            cases = {s["subject"] for s in stays}
            wait_for(lambda: {r.body["data"]["subject"] for r in fault_receiver.verified(path)} >= cases,
                     timeout=120, what="a webhook for every fresh stay request")
            moved = _subjects_on_two_partitions(read_model)
            behind = sum(metric_total(f"{proc.health_url}", "accordwatch_projector_records_behind_total")
                         for proc in (stack.services["projector-worker"], second_projector))
            # The clean single-worker rebuild of the same topic, beside the live generation.
            for name in ("projector-worker", "projector-worker-2"):
                stack.services[name].stop()
            with read_model.connect() as conn:
                live = active_generation(conn)
            settings = ProjectorSettings(database_url=stack.db_url, kafka_bootstrap_servers=kafka.bootstrap,
                                         events_topic=running.events_topic)
            writer = make_engine(stack.db_url, writer=True)
            try:
                rebuilt = asyncio.run(rebuild(settings, ReadModelStore(writer), swap=False))
            finally:
                writer.dispose()
            live_dump, clean_dump = dump_generation(read_model, live), dump_generation(read_model, rebuilt.generation)
        finally:
            read_model.dispose()
            alert_store.dispose()
        differing = subjects_differing(live_dump, clean_dump, dump_columns)
        duplicates = notification_duplicates(fault_receiver, path)
        figures.update(
            timeline=timeline, posted=len(events), answered_202=len(posted.acked), statuses=posted.statuses(),
            partitions_before_and_after=(before, 12), subjects_with_events_on_two_partitions=moved,
            seconds_after_posting_to_all_applied=round(took, 1),
            missing_in_read_model=0, missing_in_alert_store=0,
            subjects_differing_from_a_clean_rebuild=len(differing),
            projector_records_behind_dropped=behind,
            webhooks_expected=len(cases), **duplicates,
        )
        assert len(posted.acked) == len(events)
        assert differing == set(), f"subjects differing from a clean rebuild: {sorted(differing)[:10]}"
        assert moved > 0, "the growth moved no subject: the test did not test two workers on one subject"
        assert duplicates["sent_twice_with_different_webhook_ids"] == 0
        assert duplicates["changes_delivered"] == len(cases)
    finally:
        running.close()


def _subjects_on_two_partitions(engine: Any) -> int:
    with engine.connect() as conn:
        rows = conn.execute(StoredEvent.__table__.select().with_only_columns(
            StoredEvent.subject, StoredEvent.partition)).all()
    partitions: dict[str, set[int]] = {}
    for subject, partition in rows:
        partitions.setdefault(subject, set()).add(partition)
    return sum(1 for p in partitions.values() if len(p) > 1)
