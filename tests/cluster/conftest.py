"""One real three-node KRaft cluster and one stack on it, shared by the cluster tests.

Sharing is sound because every test starts from the same state: the autouse fixture
restarts whatever node an earlier test left down and waits until every replica of the
stack's topics is back in sync; each test posts events with ids of its own and judges
only those. The cluster and the stack are torn down after the last test of this package
(so three idle JVMs do not sit beside the rest of the suite).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import platform
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from services.alerts.tables import AlertEvent
from services.platform.auth import new_key
from services.platform.db import make_engine
from services.platform.settings import DLQ_TOPIC, EVENTS_TOPIC
from services.projector.readmodel.store import active_generation
from services.projector.readmodel.tables import StoredEvent
from services.stack.cluster import LocalCluster
from services.stack.local import LocalStack, Ports
from tests.conftest import RunningStack

WORKERS = ("projector-worker", "alerts-worker")
PRODUCE_TIMEOUT_S = 5.0  # ingest's default bound on waiting for Kafka


@pytest.fixture(scope="package")
def cluster(cluster_stack: ClusterStack) -> LocalCluster:
    """Three combined broker+controller nodes on free ports, one cluster id, static voters."""
    return cluster_stack.cluster


class ClusterStack(RunningStack):
    """The stack on the cluster, with what the tests judge: the read model, the alert store, the workers."""

    def __init__(self, stack: LocalStack) -> None:
        super().__init__(stack)
        assert isinstance(stack.broker, LocalCluster)
        self.cluster = stack.broker
        self.read_model = make_engine(stack.db_url)
        self.alert_store = make_engine(stack.alerts_db_url)
        self.worker_pids = {name: stack.services[name].pid for name in WORKERS}

    @property
    def topics(self) -> list[str]:
        return [self.events_topic, self.dlq_topic]

    def stored(self, ids: set[str]) -> dict[str, int]:
        """How many times each of `ids` is in the read model's active generation."""
        return _counts(self.read_model, ids, lambda conn: select(StoredEvent.id, func.count()).where(
            StoredEvent.generation == active_generation(conn)).group_by(StoredEvent.id))

    def alerted(self, ids: set[str]) -> dict[str, int]:
        """How many times each of `ids` is among the events the alerts worker applied."""
        return _counts(self.alert_store, ids, lambda conn: select(AlertEvent.id, func.count()).group_by(AlertEvent.id))

    def on_topic(self) -> dict[str, int]:
        """How many records of the events topic carry each event id (a repeat would be a duplicate write)."""
        from tests.conftest import read_topic

        counts: dict[str, int] = {}
        for record in asyncio.run(read_topic(self.cluster.bootstrap, self.events_topic, timeout=60)):
            event_id = json.loads(record.value)["id"]
            counts[event_id] = counts.get(event_id, 0) + 1
        return counts

    def workers_carried_on(self) -> dict[str, bool]:
        """Each worker is the process the stack started, still running (never restarted)."""
        return {name: self.stack.services[name].running() and self.stack.services[name].pid == pid
                for name, pid in self.worker_pids.items()}

    def worker_log_errors(self) -> dict[str, int]:
        """Tracebacks and crash lines in each worker's log (reported, for the reader of the figures)."""
        out = {}
        for name in WORKERS:
            text = self.stack.services[name].log.read_text(errors="replace")
            out[name] = text.count("Traceback") + text.count("crashed")
        return out

    def worker_group_joins(self) -> dict[str, int]:
        """How often each worker's consumer (re-)joined its group so far (the first join included)."""
        return {name: self.stack.services[name].log.read_text(errors="replace").count("(Re-)joining group")
                for name in WORKERS}

    def close(self) -> None:
        """Bring back any node a test left down, then stop everything: faust workers stopped while a
        broker is dead take 20 s and more to exit (measured: 40 s of teardown), a whole cluster seconds."""
        self.read_model.dispose()
        self.alert_store.dispose()
        try:
            restore(self.cluster)
        finally:
            super().close()


def restore(cluster: LocalCluster) -> None:
    """Start every node that is down and wait until all are registered again."""
    for node in cluster.nodes:
        if not node.running():
            node.start()
    cluster.wait_ready()


def _counts(engine: Engine, ids: set[str], query: Any) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(query(conn)).all()
    return {str(event_id): int(n) for event_id, n in rows if str(event_id) in ids}


@pytest.fixture(scope="package")
def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    """What `accordwatch run --brokers 3` starts, on free ports: the cluster with its topics (replicated
    three times, two in sync), ingest, both workers and the query API."""
    suffix = uuid.uuid4().hex[:8]
    stack = LocalStack(home=tmp_path_factory.mktemp("cluster-stack"), ports=Ports.free(), dev_key=new_key(),
                       brokers=3, extra_env={
                           "ACCORDWATCH_EVENTS_TOPIC": EVENTS_TOPIC, "ACCORDWATCH_DLQ_TOPIC": DLQ_TOPIC,
                           "ACCORDWATCH_PROJECTOR_GROUP": f"projector-{suffix}",
                           "ACCORDWATCH_ALERTS_GROUP": f"alerts-{suffix}",
                           "ACCORDWATCH_INGEST_PRODUCE_TIMEOUT_S": str(PRODUCE_TIMEOUT_S),
                       })
    try:
        stack.start_broker()
        stack.start(("ingest", "projector-worker", "projector-api", "alerts-worker"))
        running = ClusterStack(stack)
    except BaseException:
        stack.stop()
        raise
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(autouse=True)
def whole_cluster(cluster: LocalCluster, cluster_stack: ClusterStack) -> None:
    """Every test starts with all three nodes up and every replica of the stack's topics in sync."""
    restore(cluster)
    cluster.wait_in_sync(cluster_stack.topics)


RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Any:
    """Print a test's figures on the terminal and write them to bench/results/cluster-<name>-<time>.json."""

    def write(name: str, figures: dict[str, Any]) -> Path:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=False, cwd=RESULTS).stdout.strip()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        payload = {"test": f"cluster-{name}", "at": stamp, "commit": commit, "cpus": os.cpu_count(),
                   "load_average": [round(x, 2) for x in os.getloadavg()], "platform": platform.platform(),
                   **figures}
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"cluster-{name}-{stamp}.json"
        path.write_text(json.dumps(payload, indent=2) + "\n")
        with capsys.disabled():
            print(f"\ncluster-{name}: {json.dumps(figures)}\n  -> {path}")
        return path

    return write


def gaps(times: list[float], start: float, end: float) -> float:
    """The longest interval in [start, end] without any of `times` (seconds, 0.01 s resolution)."""
    points = sorted(t for t in times if start <= t <= end)
    edges = [start, *points, end]
    return round(max(b - a for a, b in itertools.pairwise(edges)), 2)


def now() -> float:
    return time.monotonic()
