"""The fault suite's figures: each test records what it measured; the session prints them and writes
bench/results/faults-<time>.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

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
