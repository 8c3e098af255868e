"""Schemathesis against the OpenAPI of each service of a running stack with the example timeline loaded.

Every operation a service documents is fuzzed (new routes are covered as they appear): the
examples, coverage (boundary and invalid values, missing key), fuzzing and stateful phases
with a fixed seed and a bounded number of examples per operation, with a valid key. Every
response must be no 5xx and must conform to the documented contract: a documented status,
a documented content type, a body valid against the documented schema, documented headers.
The test prints, per service, the requests made, the answers by status and the failures.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.stack.local import ALL_SERVICES
from tests.conftest import Broker, RunningStack, make_stack, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.stack]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "seed-timeline.ndjson"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
SEED = 20200312
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance")
EXAMPLES_PER_OPERATION = {"ingest": 50, "projector": 25, "alerts": 25}


@dataclass
class FuzzReport:
    """What one schemathesis run did, read from its NDJSON report."""

    operations: set[str] = field(default_factory=set)
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    failed_cases: list[str] = field(default_factory=list)

    def line(self, service: str) -> str:
        classes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        failed = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items())) or "none"
        return (f"fuzz {service}: {len(self.operations)} operations, {self.requests} requests ({classes}); "
                f"5xx: {len(self.server_errors)}; check failures: {failed}")


def read_report(path: Path) -> FuzzReport:
    """Count requests, answers and check failures in a schemathesis NDJSON report."""
    report = FuzzReport()
    for line in path.read_text().splitlines():
        event: dict[str, Any] = orjson.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for case_id, interaction in (recorder.get("interactions") or {}).items():
            request, response = interaction["request"], interaction.get("response")
            report.operations.add(recorder["label"].split(" -> ")[0])
            report.requests += 1
            if response is None:
                report.statuses["no answer"] += 1
                continue
            status = int(response["status_code"])
            report.statuses[f"{status // 100}xx"] += 1
            if status >= 500:
                report.server_errors.append(f"{request['method']} {request['uri']} -> {status} ({case_id})")
        for case_id, checks in (recorder.get("checks") or {}).items():
            for check in checks:
                if check["status"] == "failure":
                    report.failures[check["name"]] += 1
                    report.failed_cases.append(f"{recorder['label']}: {check['name']} ({case_id})")
    return report


def fuzz(base: str, key: str, report_path: Path, examples: int) -> tuple[subprocess.CompletedProcess[str], FuzzReport]:
    """Run schemathesis against one service; returns the run and its report."""
    command = [
        str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{base}/openapi.json",
        "--header", f"Authorization: Bearer {key}",
        "--seed", str(SEED), "--max-examples", str(examples), "--workers", "1",
        "--checks", ",".join(CHECKS), "--request-timeout", "30",
        "--report", "ndjson", "--report-ndjson-path", str(report_path),
        "--generation-database", "none", "--no-color", "--output-truncate", "true",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False, stdin=subprocess.DEVNULL,
                         cwd=report_path.parent)  # its caches (.hypothesis, .schemathesis) stay out of the tree
    return run, read_report(report_path)


@pytest.fixture(scope="module")
def loaded_stack(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """Every service of a stack, the example timeline posted and projected."""
    running = make_stack(kafka, tmp_path_factory.mktemp("fuzz"), services=ALL_SERVICES)
    try:
        docs = [orjson.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]
        running.post(*docs)
        wait_for(lambda: running.query.get(f"/v1/events/{docs[-1]['id']}").status_code == 200,
                 timeout=120, what="the example timeline to be projected")
        wait_for(lambda: running.alerts.get("/v1/alerts").json()["items"], timeout=120,
                 what="the alerts worker to record the examples' alerts")
        yield running
    finally:
        running.close()


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("service", ["projector", "alerts", "ingest"])
def test_fuzzing_finds_no_server_error_and_no_answer_off_the_contract(
    loaded_stack: RunningStack, service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = loaded_stack.stack.urls[service]
    run, report = fuzz(base, loaded_stack.stack.dev_key, tmp_path / f"{service}.ndjson",
                       EXAMPLES_PER_OPERATION[service])
    with capsys.disabled():
        print(f"\n{report.line(service)}")
        for item in (report.server_errors + report.failed_cases)[:20]:
            print(f"  {item}")
    assert report.requests > 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert report.server_errors == [], run.stdout[-6000:]
    assert not report.failures, run.stdout[-6000:]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
