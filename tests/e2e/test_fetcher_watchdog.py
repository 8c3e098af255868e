"""A worker whose aiokafka fetcher has died exits non-zero, and its restart resumes from the stored positions.

aiokafka's fetch task can end on an error it does not catch (under uvloop a write to a
closed transport raises RuntimeError, aio-libs/aiokafka#1038); nothing restarts it, and the
worker would stay up consuming nothing. The real alerts worker runs here with that error
injected at aiokafka's fetch request (tests/fetcher_fault.py) once a trigger file exists.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from services.alerts.tables import AlertEvent
from services.platform.db import make_engine
from services.stack.processes import ServiceProcess
from tests.conftest import Broker, RunningStack, make_stack, wait_for
from tests.workload import realistic_events

pytestmark = [pytest.mark.kafka, pytest.mark.stack]


@pytest.fixture
def alerts_stack(kafka: Broker, tmp_path: Path) -> Iterator[RunningStack]:
    running = make_stack(kafka, tmp_path, services=("ingest",))
    try:
        yield running
    finally:
        running.close()


def stored_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {str(i) for i in conn.execute(select(AlertEvent.id)).scalars()}


def faulty_worker(running: RunningStack, trigger: Path) -> ServiceProcess:
    """The real alerts worker, its fetch requests failing as under uvloop while `trigger` exists."""
    proc = running.stack.service("alerts-worker")
    proc.args[2:3] = ["tests.fetcher_fault", "services.alerts.worker"]
    proc.env["ACCORDWATCH_TEST_FETCHER_FAULT"] = str(trigger)
    running.stack.services["alerts-worker"] = proc
    proc.start()
    proc.wait_healthy(timeout=90)
    return proc


def test_a_worker_whose_fetcher_died_exits_non_zero_and_its_restart_applies_every_event(
    alerts_stack: RunningStack, tmp_path: Path,
) -> None:
    running = alerts_stack
    events = list(realistic_events(300, seed=12, subjects=40))
    trigger = tmp_path / "fetcher-fault"
    store = make_engine(running.stack.alerts_db_url)
    try:
        worker = faulty_worker(running, trigger)
        acked = {a["id"] for a in running.post(*events[:100])}
        wait_for(lambda: acked <= stored_ids(store), timeout=120, what="the first 100 before the fault")

        trigger.touch()
        for start in (100, 200):
            acked |= {a["id"] for a in running.post(*events[start:start + 100])}
        deadline = time.monotonic() + 90
        while worker.running() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not worker.running(), "the worker stayed up with a dead fetcher"
        assert worker.proc is not None
        assert worker.proc.returncode not in (0, None)
        log = worker.log.read_text(errors="replace")
        assert "fetcher task has ended" in log
        assert "unable to perform operation" in log

        trigger.unlink()
        running.stack.restart("alerts-worker")
        wait_for(lambda: acked <= stored_ids(store), timeout=120, what="every acked event after the restart")
        assert len(stored_ids(store)) == 300
    finally:
        store.dispose()
