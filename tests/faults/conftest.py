"""The fault suite's figures: each test records what it measured; the session prints them and writes
bench/results/faults-<time>.json."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker, RunningStack, make_stack
from tests.faults.harness import add_worker
from tests.receiver import Receiver, ReceiverServer

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
FIGURES: dict[str, dict[str, Any]] = {}


class Figures:
    """One test's figures, kept for the session's JSON file and summary."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: dict[str, Any] = {}
        FIGURES[name] = self.values

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value
        print(f"{self.name}: {key} = {value}")

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            self[key] = value


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.name)


@pytest.fixture(scope="session")
def fault_receiver() -> Iterator[Receiver]:
    """A real webhook receiver verifying signatures, shared by the fault tests (each its own path)."""
    server = ReceiverServer()
    try:
        yield server.start()
    finally:
        server.stop()


SHARED_ENV = {
    # F3 pauses a worker past its session and grows the partitions; F5 wants one attempt per
    # message, so a late failure would be final. Nothing else here minds these settings.
    "ACCORDWATCH_PROJECTOR_SESSION_TIMEOUT_S": "6",
    "ACCORDWATCH_ALERTS_SESSION_TIMEOUT_S": "6",
    "ACCORDWATCH_KAFKA_METADATA_MAX_AGE_S": "2",
    "ACCORDWATCH_WORKER_RETRY_MAX_S": "2",
    "ACCORDWATCH_PROJECTOR_BATCH_MAX": "200",
    "ACCORDWATCH_ALERTS_BATCH_MAX": "200",
    "ACCORDWATCH_WEBHOOK_TIMEOUT_S": "5",
    "ACCORDWATCH_WEBHOOK_RETRY_SCHEDULE": "0",
}


class FaultStack:
    """One stack on PostgreSQL shared by F1, F3 and F5 (a stack costs half a minute to start)."""

    def __init__(self, running: RunningStack, url: str) -> None:
        self.running = running
        self.url = url

    def workers(self, kind: str, count: int) -> list[Any]:
        """At least `count` running instances of `projector-worker` or `alerts-worker` (more started if needed)."""
        services = self.running.stack.services
        alive = [p for name, p in services.items() if name.split("-")[:2] == kind.split("-") and p.running()]
        instance = 2
        while len(alive) < count:
            while f"{kind}-{instance}" in services:
                instance += 1
            alive.append(add_worker(self.running.stack, kind, instance))
        return alive


@pytest.fixture(scope="session")
def fault_stack(kafka: Broker, postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """ingest, a projector worker and API, an alerts worker and API, on the session broker and PostgreSQL."""
    url: str = postgres.create_database(f"faults_{uuid.uuid4().hex[:10]}")
    running = make_stack(kafka, tmp_path_factory.mktemp("faults"), database_url=url, env=SHARED_ENV, services=(
        "ingest", "projector-worker", "projector-api", "alerts-worker", "alerts-api"))
    try:
        yield FaultStack(running, url)
    finally:
        running.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not FIGURES:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"faults-{stamp}.json"
    path.write_text(json.dumps({"suite": "faults", "at": stamp, "exit_status": int(exitstatus),
                                "tests": FIGURES}, indent=2, default=str) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault suite figures")
    for name, values in FIGURES.items():
        terminalreporter.write_line(f"{name}:")
        for key, value in values.items():
            terminalreporter.write_line(f"    {key}: {value}")
