"""The Grafana dashboards against the real thing, without a Grafana server.

One stack for the module: every service LocalStack starts by default, on the session
broker, with its read model on the session PostgreSQL, prepared by the same init script
the compose stack runs (deploy/grafana/postgres-init.sh: the read-only Grafana role).
The example timeline is posted through ingest.

- Every SQL panel runs, as it is, as the Grafana role, and returns the rows the example
  timeline implies, from the active generation only.
- A real Prometheus (Debian's binary) scrapes the stack with the jobs of
  deploy/prometheus/prometheus.yml; after a little real traffic (a rejected event, an
  undecodable record, a webhook delivery, a deadline ahead) every PromQL expression of
  every dashboard returns at least one series.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import ProgrammingError

from services.platform.db import make_engine
from services.stack.broker import free_port
from services.stack.local import ALL_SERVICES
from services.stack.postgres import bindir
from services.stack.prometheus import LocalPrometheus, load_config, retarget
from tests.conftest import Broker, RunningStack, make_stack, wait_for
from tests.receiver import Receiver, ReceiverServer
from tests.samples import event

pytestmark = [pytest.mark.kafka, pytest.mark.stack, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "seed-timeline.ndjson"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
INIT_SCRIPT = ROOT / "deploy" / "grafana" / "postgres-init.sh"
PROMETHEUS_UID = "accordwatch-prometheus"
READ_MODEL_UID = "accordwatch-readmodel"
# What Grafana substitutes for its built-in variables; with a 1 s scrape, 10 s holds several samples.
GRAFANA_VARIABLES = {"$__rate_interval": "10s"}


def dashboard_targets() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(dashboard, panel title, datasource uid, target) for every query of every dashboard."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        panels = [*board["panels"], *(p for row in board["panels"] for p in row.get("panels", []))]
        for panel in panels:
            for target in panel.get("targets", []):
                uid = (target.get("datasource") or panel["datasource"])["uid"]
                out.append((board["title"], panel["title"], uid, target))
    return out


def promql() -> list[str]:
    """Every PromQL expression, with Grafana's variables substituted."""
    exprs = []
    for _, _, uid, target in dashboard_targets():
        if uid != PROMETHEUS_UID:
            continue
        expr = target["expr"]
        for name, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
        exprs.append(expr)
    return exprs


def sql_panels() -> list[tuple[str, str]]:
    """(panel title, raw SQL) of every read-model panel."""
    return [(title, target["rawSql"]) for _, title, uid, target in dashboard_targets() if uid == READ_MODEL_UID]


def test_every_dashboard_query_is_promql_or_read_model_sql() -> None:
    targets = dashboard_targets()
    assert {uid for _, _, uid, _ in targets} == {PROMETHEUS_UID, READ_MODEL_UID}
    assert len(promql()) + len(sql_panels()) == len(targets)
    assert all("$__" not in sql for _, sql in sql_panels()), "SQL panels run as they are: no Grafana macros"


@dataclass
class ObservedStack:
    running: RunningStack
    owner: Engine
    reader: Engine
    reader_role: str
    docs: list[dict[str, Any]]


def _prepare_database(postgres: Any) -> tuple[str, str]:
    """A read-model database set up by the compose init script; returns (its URL, the Grafana role)."""
    name = f"obs_{uuid.uuid4().hex[:10]}"
    url: str = postgres.create_database(name)
    role = f"grafana_reader_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ, "PATH": f"{bindir()}:{os.environ['PATH']}",
        "PGHOST": "127.0.0.1", "PGPORT": str(postgres.port),
        "POSTGRES_USER": postgres.user, "POSTGRES_DB": name, "POSTGRES_ALERTS_DB": f"{name}_alerts",
        "GRAFANA_READMODEL_USER": role, "GRAFANA_READMODEL_PASSWORD": "not-checked-under-trust-auth",
    }
    done = subprocess.run(["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return url, role


@pytest.fixture(scope="module")
def observed(kafka: Broker, postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObservedStack]:
    url, role = _prepare_database(postgres)
    running = make_stack(kafka, tmp_path_factory.mktemp("observed"), database_url=url, services=ALL_SERVICES)
    owner = make_engine(url)
    reader = create_engine(f"postgresql+psycopg://{role}@127.0.0.1:{postgres.port}/{url.rsplit('/', 1)[1]}")
    try:
        docs = [orjson.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]
        running.post(*docs)
        wait_for(lambda: running.query.get(f"/v1/events/{docs[-1]['id']}").status_code == 200
                 and running.query.get("/v1/agreements/us-gt-aca-2019").json().get("transfers_total") == 800,
                 timeout=60, what="the example timeline to be projected")
        yield ObservedStack(running, owner, reader, role, docs)
    finally:
        reader.dispose()
        owner.dispose()
        running.close()


def _rows(engine: Engine, sql: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(text(sql))]


def _panel_sql(title: str) -> str:
    [found] = [sql for panel, sql in sql_panels() if panel == title]
    return found


# -- SQL panels ---------------------------------------------------------------------------------


def test_every_sql_panel_returns_rows_for_the_example_timeline(observed: ObservedStack) -> None:
    empty = [title for title, sql in sql_panels() if not _rows(observed.reader, sql)]
    assert empty == [], f"SQL panels without rows: {empty}"

    status = {r["agreement"]: r for r in _rows(observed.reader, _panel_sql("Agreements"))}
    assert {a: (r["partner"], r["status"], r["transfers vs target"]) for a, r in status.items()} == {
        "us-gt-aca-2019": ("GT", "in_force", "~800 / no target"),
        "us-hn-aca-2019": ("HN", "signed", "0 / no target"),
        "us-sv-aca-2019": ("SV", "signed", "0 / 2000"),
    }
    assert status["us-sv-aca-2019"]["% of target"] == 0
    assert status["us-gt-aca-2019"]["since"] == datetime(2019, 11, 30, tzinfo=UTC)

    transfers = _rows(observed.reader, _panel_sql("Transfers over time (cumulative, per agreement)"))
    assert [(r["time"].date().isoformat(), r["metric"], r["transferred"]) for r in transfers] == [
        ("2020-03-01", "us-gt-aca-2019", 800)]

    deadlines = {r["subject"]: r for r in _rows(observed.reader, _panel_sql("Deadlines, their state and time left"))}
    ninth = deadlines["innovation-law-lab-v-wolf"]
    assert (ninth["kind"], ninth["state"]) == ("ruling_effective", "met")  # no stay decision in the articles
    assert ninth["time left"] < 0
    assert deadlines["us-sv-aca-2019"]["kind"] == "implementation"


def test_sql_panels_read_only_the_active_generation(observed: ObservedStack) -> None:
    """A generation being rebuilt is invisible until it is swapped in (done here in a rolled-back transaction)."""
    query = text(_panel_sql("Agreements"))
    with observed.owner.connect() as conn, conn.begin() as txn:
        conn.execute(text(
            "INSERT INTO agreements (generation, id, status, parties, excluded_nationalities, transfers_total,"
            " transfers_approximate, event_count) VALUES (2, 'us-xx-rebuilt', 'proposed', '[]', '[]', 0, false, 1)"))
        assert "us-xx-rebuilt" not in {r.agreement for r in conn.execute(query)}
        conn.execute(text("UPDATE projection_generation SET active = 2 WHERE id = 1"))
        assert [r.agreement for r in conn.execute(query)] == ["us-xx-rebuilt"]
        txn.rollback()
    assert "us-xx-rebuilt" not in {r["agreement"] for r in _rows(observed.reader, _panel_sql("Agreements"))}


def test_the_grafana_role_reads_the_read_model_and_writes_nothing(observed: ObservedStack) -> None:
    assert _rows(observed.reader, "SELECT count(*) AS n FROM events")[0]["n"] == len(observed.docs)
    for statement in ("DELETE FROM agreements", "CREATE TABLE grafana_was_here (id int)",
                      "UPDATE projection_generation SET active = 2"):
        with observed.reader.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text(statement))


# -- PromQL panels ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(observed: ObservedStack) -> Iterator[LocalPrometheus]:
    stack = observed.running.stack
    port = free_port()
    targets = {
        "ingest": f"127.0.0.1:{stack.ports.ingest}",
        "projector-api": f"127.0.0.1:{stack.ports.projector}",
        "projector-worker": f"127.0.0.1:{stack.ports.projector_metrics}",
        "alerts-api": f"127.0.0.1:{stack.ports.alerts}",
        "alerts-worker": f"127.0.0.1:{stack.ports.alerts_metrics}",
        "prometheus": f"127.0.0.1:{port}",
    }
    server = LocalPrometheus(retarget(load_config(), targets), port=port)
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = ReceiverServer()
    try:
        yield server.start()
    finally:
        server.stop()


async def _produce_raw(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


def _operate(observed: ObservedStack, receiver: Receiver) -> None:
    """Traffic an operator would see: a rejection, a dead letter, a webhook delivered, a deadline ahead."""
    running = observed.running
    bad = running.ingest.post("/v1/events", json={"type": "TransferReported", "subject": "us-gt-aca-2019"})
    assert bad.status_code == 422, bad.text
    asyncio.run(_produce_raw(running.stack.bootstrap, running.events_topic, b"us-gt-aca-2019", b"not an event"))

    path = "/observability"
    response = running.alerts.post("/v1/subscriptions", json={"url": receiver.endpoint(path)})
    assert response.status_code == 201, response.text
    receiver.endpoint(path, secret=response.json()["secret"])
    case = f"observability-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    running.post(
        event("StayRequested", subject=case, occurred_at=now.isoformat(timespec="seconds")),
        event("DeadlineSet", subject=case, occurred_at=now.isoformat(timespec="seconds"),
              data={"due_at": (now + timedelta(days=30)).isoformat(timespec="seconds"),
                    "description": "a deadline ahead", "kind": "response_due"}),
    )
    wait_for(lambda: receiver.verified(path, "alert.firing"), timeout=60, what="a webhook delivered")


def test_every_promql_expression_returns_series(observed: ObservedStack, prometheus: LocalPrometheus,
                                                receiver: Receiver) -> None:
    wait_for(lambda: (t := prometheus.targets()) and all(x["health"] == "up" for x in t) and t,
             timeout=30, what="every scrape target up")
    _operate(observed, receiver)
    exprs = promql()
    assert len(exprs) >= 20

    def missing() -> list[str]:
        return [expr for expr in exprs if not prometheus.query(expr)]

    deadline = time.monotonic() + 60
    while (absent := missing()) and time.monotonic() < deadline:
        time.sleep(0.5)  # polling Prometheus, which scrapes every second, until the deadline
    assert not absent, "PromQL expressions that returned no series:\n  " + "\n  ".join(absent)

    # The domain gauges carry the numbers the read model holds.
    by_status = {s["metric"]["status"]: float(s["value"][1])
                 for s in prometheus.query('accordwatch_projector_agreements{job="projector-api"}')}
    assert (by_status["in_force"], by_status["signed"]) == (1, 2)
    [nearest] = prometheus.query('accordwatch_projector_nearest_deadline_seconds{job="projector-api"}')
    assert 29 * 86400 < float(nearest["value"][1]) <= 30 * 86400
