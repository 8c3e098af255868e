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
from typing import Any

import pytest

from services.alerts.tables import AlertEvent
from services.platform.db import make_engine
from services.projector.readmodel.store import ReadModelStore, active_generation
from services.projector.readmodel.tables import StoredEvent
from services.projector.replay import rebuild
from services.projector.settings import ProjectorSettings
from tests.conftest import Broker, dump_columns, dump_generation, wait_for
from tests.faults.conftest import SHARED_ENV, FaultStack, Figures
from tests.faults.harness import (
    Poster,
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
SECONDS = 36.0
SESSION_TIMEOUT_S = float(SHARED_ENV["ACCORDWATCH_PROJECTOR_SESSION_TIMEOUT_S"])


@pytest.mark.timeout(900)
def test_f3_two_of_each_worker_paused_killed_and_repartitioned_equal_one_clean_worker(
    kafka: Broker, fault_stack: FaultStack, fault_receiver: Receiver, figures: Figures
) -> None:
    running = fault_stack.running
    stack = running.stack
    paused, second_projector = fault_stack.workers("projector-worker", 2)[:2]
    second_alerts = fault_stack.workers("alerts-worker", 2)[1]
    try:
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

        at(4, f"SIGSTOP {paused.name}")
        pause(paused)
        at(4 + SESSION_TIMEOUT_S * 2, f"SIGCONT {paused.name}")
        resume(paused)
        at(18, f"SIGKILL {second_alerts.name}")
        second_alerts.kill()
        at(22, "partitions 6 -> 12")
        before = asyncio.run(partition_count(kafka.bootstrap, running.events_topic))
        asyncio.run(grow_partitions(kafka.bootstrap, running.events_topic, 12))
        posted = poster.join_checked()
        timeline.append((round(time.monotonic() - began, 1), "posting done"))

        read_model, alert_store = make_engine(stack.db_url), make_engine(stack.alerts_db_url)
        try:
            took = wait_for_ids([("read model", read_model, StoredEvent), ("alert store", alert_store, AlertEvent)],
                                posted.acked, timeout=600)
            cases = {s["subject"] for s in stays}
            wait_for(lambda: {r.body["data"]["subject"] for r in fault_receiver.verified(path)} >= cases,
                     timeout=120, what="a webhook for every fresh stay request")
            moved = _subjects_on_two_partitions(read_model)
            behind = sum(metric_total(f"{proc.health_url}", "accordwatch_projector_records_behind_total")
                         for proc in (paused, second_projector))
            # The clean single-worker rebuild of the same topic, beside the live generation.
            for proc in fault_stack.workers("projector-worker", 0):
                proc.stop()
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
        for proc in (paused, second_projector):
            if proc.running():
                resume(proc)  # never leave a stopped process behind


def _subjects_on_two_partitions(engine: Any) -> int:
    with engine.connect() as conn:
        rows = conn.execute(StoredEvent.__table__.select().with_only_columns(
            StoredEvent.subject, StoredEvent.partition)).all()
    partitions: dict[str, set[int]] = {}
    for subject, partition in rows:
        partitions.setdefault(subject, set()).add(partition)
    return sum(1 for p in partitions.values() if len(p) > 1)
