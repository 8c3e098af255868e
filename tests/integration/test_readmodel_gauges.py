"""The query API's domain gauges, read from the active generation at scrape time, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import uuid_utils
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from schemas.registry import parse_event
from services.platform.db import make_engine
from services.projector.api import create_app
from services.projector.readmodel.migrate import upgrade
from services.projector.readmodel.store import Consumed, ReadModelStore
from services.projector.settings import ProjectorSettings
from tests.samples import event

KEY = "k" * 32
NOW = datetime(2020, 3, 10, 12, tzinfo=UTC)


def _engine(url: str) -> Engine:
    engine = make_engine(url, writer=True)
    upgrade(engine)
    return engine


def _consumed(docs: list[dict[str, Any]]) -> list[Consumed]:
    return [Consumed("t", i % 3, i, parse_event({"id": str(uuid_utils.uuid7()), **d,
                                                 "recorded_at": "2020-03-05T10:00:00Z"}))
            for i, d in enumerate(docs)]


def _scrape(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


SEED = [
    event("AgreementSigned", subject="us-gt-aca-2019", occurred_at="2019-07-26", data={"parties": ["US", "GT"]}),
    event("AgreementInForce", subject="us-gt-aca-2019", occurred_at="2019-11-21", data={"effective_on": "2019-11-21"}),
    event("TransferReported", subject="us-gt-aca-2019", occurred_at="2020-03-10",
          data={"count": 800, "cumulative": True, "approximate": True}),
    event("AgreementSigned", subject="us-hn-aca-2019", occurred_at="2019-09-25", data={"parties": ["US", "HN"]}),
    event("AgreementSigned", subject="us-sv-aca-2019", occurred_at="2019-09-20", data={"parties": ["US", "SV"]}),
    event("CourtRulingIssued", subject="innovation-law-lab-v-wolf", occurred_at="2020-03-04",
          data={"court": "9th Cir.", "outcome": "blocked", "effective_at": "2020-03-12", "affects": ["mpp"]}),
    event("DeadlineSet", subject="us-sv-aca-2019", occurred_at="2020-03-01",
          data={"due_at": "2020-04-01", "description": "returns could begin"}),
    event("DeadlineSet", subject="us-hn-aca-2019", occurred_at="2020-01-01",
          data={"due_at": "2020-02-01", "description": "already past on the clock of this test"}),
]


def test_domain_gauges_follow_the_active_generation_and_the_clock(database_url: str) -> None:
    engine = _engine(database_url)
    now = [NOW]
    store = ReadModelStore(engine, clock=lambda: now[0])  # the writer and the API on one clock
    store.apply(_consumed(SEED))
    settings = ProjectorSettings(database_url=database_url, dev_key=KEY, gauges_ttl_s=0)
    now = [NOW]
    with TestClient(create_app(settings, engine=engine, clock=lambda: now[0])) as client:
        got = _scrape(client)
        by_status = {dict(k)["status"]: v for k, v in got["accordwatch_projector_agreements"].items()}
        assert by_status == {"proposed": 0, "negotiating": 0, "signed": 2, "implementing": 0, "in_force": 1,
                             "suspended": 0, "terminated": 0}
        transfers = {dict(k)["agreement"]: v for k, v in got["accordwatch_projector_transfers_total_people"].items()}
        assert transfers == {"us-gt-aca-2019": 800, "us-hn-aca-2019": 0, "us-sv-aca-2019": 0}
        # The ruling takes effect on 2020-03-12 and the SV deadline is 2020-04-01; the HN one is past.
        assert got["accordwatch_projector_open_deadlines"] == {(): 2}
        assert got["accordwatch_projector_nearest_deadline_seconds"] == {(): 1.5 * 86400}

        # A rebuild (the same log plus the SV termination) is read only once it is swapped in.
        building = store.start_generation()
        store.apply(_consumed([*SEED, event("AgreementTerminated", subject="us-sv-aca-2019",
                                            occurred_at="2020-03-05", data={})]), generation=building)
        assert _scrape(client)["accordwatch_projector_agreements"][(("status", "terminated"),)] == 0
        assert store.swap(building, "t")
        got = _scrape(client)
        assert got["accordwatch_projector_agreements"][(("status", "terminated"),)] == 1
        assert got["accordwatch_projector_agreements"][(("status", "signed"),)] == 1

        # Once every deadline is behind the clock, the nearest one is absent rather than a misleading 0.
        now[0] = datetime(2021, 1, 1, tzinfo=UTC)
        got = _scrape(client)
        assert got["accordwatch_projector_open_deadlines"] == {(): 0}
        assert "accordwatch_projector_nearest_deadline_seconds" not in got
    engine.dispose()


def test_a_scrape_still_answers_when_the_read_model_does_not(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    engine = make_engine(url)
    settings = ProjectorSettings(database_url=url, dev_key=KEY)
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as client:
        got = _scrape(client)
        assert "accordwatch_projector_requests_total" in got
        assert "accordwatch_projector_agreements" not in got
    engine.dispose()


def test_scrapes_within_the_ttl_read_the_read_model_once(tmp_path: Any) -> None:
    from services.projector.gauges import ReadModelGauges

    engine = _engine(f"sqlite:///{tmp_path / 'ttl.db'}")
    ticks = [100.0]
    gauges = ReadModelGauges(engine, lambda: NOW, ttl_s=5, monotonic=lambda: ticks[0])
    for _ in range(3):
        list(gauges.collect())
    assert gauges.reads == 1
    ticks[0] += 5.1
    list(gauges.collect())
    assert gauges.reads == 2
    engine.dispose()


def test_the_gauges_are_read_off_the_event_loop(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scrape reads the read model on a worker thread: no event loop runs where the SQL runs."""
    import asyncio

    from services.projector import gauges

    real = gauges.read_figures
    on_loop: list[bool] = []

    def watched(conn: Any, now: datetime) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(conn, now)

    monkeypatch.setattr(gauges, "read_figures", watched)
    engine = _engine(f"sqlite:///{tmp_path / 'thread.db'}")
    settings = ProjectorSettings(database_url=str(engine.url), dev_key=KEY)
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as client:
        assert client.get("/metrics").status_code == 200
    engine.dispose()
    assert on_loop == [False]
