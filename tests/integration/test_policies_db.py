"""Policies and "current = as of now" in the read model, on SQLite and on a real PostgreSQL server.

The store writes what each case says about each policy with the case's rows and keeps the
`policies` table current under a row lock; the projector's timer (`refresh_due`) folds
subjects again when a scheduled effect comes, with no event; the query API answers
`/v1/policies` from the stored facts now and from the cases' events as of any time.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import uuid_utils
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from schemas.registry import parse_event
from services.platform import migrations
from services.platform.db import make_engine
from services.projector.api import create_app
from services.projector.readmodel import policies
from services.projector.readmodel.migrate import MIGRATIONS, upgrade
from services.projector.readmodel.store import Consumed, ReadModelStore
from services.projector.readmodel.tables import AgreementRow, PolicyRow, SubjectSnapshot
from services.projector.settings import ProjectorSettings
from tests.chains import MPP_CASE, MPP_EXPECTED, NINTH, SCOTUS, mpp_chain
from tests.conftest import wait_for
from tests.samples import event

KEY = "k" * 32


class Clock:
    """A clock the test moves (the store and the API read it)."""

    def __init__(self, at: str) -> None:
        self.now = datetime.fromisoformat(at)

    def __call__(self) -> datetime:
        return self.now

    def set(self, at: str) -> None:
        self.now = datetime.fromisoformat(at)


def _engine(url: str) -> Engine:
    engine = make_engine(url, writer=True)
    upgrade(engine)
    return engine


def _consumed(docs: list[dict[str, Any]], start: int = 0) -> list[Consumed]:
    recorded = "2026-01-01T00:00:00Z"
    return [Consumed("t", 0, start + i, parse_event({"id": str(uuid_utils.uuid7()), "recorded_at": recorded, **d}))
            for i, d in enumerate(docs)]


def _client(engine: Engine, url: str, clock: Clock) -> TestClient:
    settings = ProjectorSettings(database_url=url, dev_key=KEY, gauges_ttl_s=0)  # gauges read afresh
    client = TestClient(create_app(settings, engine=engine, clock=clock))
    client.headers["Authorization"] = f"Bearer {KEY}"
    return client


def _row(engine: Engine, slug: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(PolicyRow).where(PolicyRow.id == slug)).one_or_none()


def test_the_policies_table_follows_each_batch_and_the_clock(database_url: str) -> None:
    """MPP as it happened, without the Supreme Court: partly blocked from Thursday 2020-03-12, with no new event."""
    engine = _engine(database_url)
    clock = Clock("2020-03-09T12:00:00+00:00")
    store = ReadModelStore(engine, clock=clock)
    chain = mpp_chain()[:-1]
    store.apply(_consumed(chain[:6]))
    store.apply(_consumed(chain[6:], start=6))
    row = _row(engine, "mpp")
    assert (row.status, row.blocked_in, row.next_change_at, row.next_change_status, row.pending_stay_requests) == (
        "in_effect", [], datetime(2020, 3, 12, tzinfo=UTC), "partly_blocked", 1)
    assert store.refresh_due().refolds == 0  # nothing is due on Monday
    with _client(engine, database_url, clock) as client:
        [listed] = client.get("/v1/policies").json()["items"]
        assert (listed["status"], listed["next_change"]["at"]) == ("in_effect", "2020-03-12T00:00:00Z")
        clock.set("2020-03-12T00:30:00+00:00")
        # The API answers as of now at once; the table follows when the timer runs.
        assert client.get("/v1/policies/mpp").json()["blocked_in"] == ["US-AZ", "US-CA"]
        assert _row(engine, "mpp").status == "in_effect"
        store.refresh_due()
        row = _row(engine, "mpp")
        assert (row.status, row.blocked_in, row.next_change_at, row.since) == (
            "partly_blocked", ["US-AZ", "US-CA"], None, datetime(2020, 3, 12, tzinfo=UTC))
        metrics = client.get("/metrics").text
        assert 'accordwatch_projector_policies{status="partly_blocked"} 1.0' in metrics
        # The Supreme Court's stay, decided the day before, arrives late: in effect everywhere again.
        store.apply(_consumed(mpp_chain()[-1:], start=20))
        row = _row(engine, "mpp")
        assert (row.status, row.since) == ("in_effect", datetime(2020, 2, 29, 4, tzinfo=UTC))
        case = client.get(f"/v1/cases/{MPP_CASE}").json()
        assert case["status"] == "stayed"
        assert {d["status"] for d in case["deadlines"]} == {"met", "stayed"}
    engine.dispose()


def test_the_policies_api_as_of_any_date_and_as_known_at_a_time(database_url: str) -> None:
    engine = _engine(database_url)
    clock = Clock("2026-12-03T00:00:00+00:00")
    store = ReadModelStore(engine, clock=clock)
    docs = mpp_chain()
    store.apply([Consumed("t", 0, i, parse_event({**d, "recorded_at": "2020-03-05T00:00:00Z"}))
                 for i, d in enumerate(docs[:-1])])
    store.apply([Consumed("t", 0, 99, parse_event({**docs[-1], "recorded_at": "2020-03-11T15:00:00Z"}))])
    with _client(engine, database_url, clock) as client:
        for moment, status, blocked_in, _, change, pending in MPP_EXPECTED:
            got = client.get("/v1/policies/mpp", params={"as_of": moment}).json()
            assert (got["status"], got["blocked_in"], [q["court"] for q in got["pending_stay_requests"]]) == (
                status, blocked_in, pending), moment
            assert (got["next_change"]["status"] if got["next_change"] else None) == (change[1] if change else None)
        before = client.get("/v1/policies/mpp", params={"as_of": "2020-03-11T12:00:00Z",
                                                        "known_at": "2020-03-10T00:00:00Z"}).json()
        assert (before["next_change"]["at"], before["next_change"]["blocked_in"]) == (
            "2020-03-12T00:00:00Z", ["US-AZ", "US-CA"])
        [stayed] = before["governing"]
        assert [(s["court"], s["decision"]) for s in stayed["stayed_by"]] == [(NINTH, "administrative")]
        now = client.get("/v1/policies/mpp").json()
        assert {s["court"] for s in now["governing"][0]["stayed_by"]} == {NINTH, SCOTUS}
        bad = client.get("/v1/policies/mpp", params={"as_of": "2020-13-01"})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "query.as_of"
        assert client.get("/v1/policies/no-such-policy").status_code == 404
        assert client.get("/v1/policies/Not_A_Slug").status_code == 422
        assert client.get("/v1/policies", params={"status": "sideways"}).status_code == 422
        assert client.get("/v1/policies", params={"status": "in_effect"}).json()["items"][0]["id"] == "mpp"
    engine.dispose()


def test_a_future_termination_turns_the_list_only_once_its_date_has_passed(database_url: str) -> None:
    engine = _engine(database_url)
    clock = Clock("2026-12-01T00:00:00+00:00")
    store = ReadModelStore(engine, clock=clock)
    store.apply(_consumed([
        event("AgreementSigned", subject="us-gt-aca-2019", occurred_at="2019-07-26", data={"parties": ["US", "GT"]}),
        event("AgreementInForce", subject="us-gt-aca-2019", occurred_at="2019-11-21", data={}),
        event("AgreementTerminated", subject="us-gt-aca-2019", occurred_at="2026-11-30",
              data={"reason": "notice", "effective_on": "2027-01-01"}),
    ]))
    with _client(engine, database_url, clock) as client:
        assert client.get("/v1/agreements").json()["items"][0]["status"] == "in_force"
        assert 'accordwatch_projector_agreements{status="terminated"} 0.0' in client.get("/metrics").text
        clock.set("2026-12-31T23:59:00+00:00")
        assert store.refresh_due().refolds == 0
        clock.set("2027-01-01T00:00:01+00:00")
        assert store.refresh_due().refolds == 1
        [item] = client.get("/v1/agreements").json()["items"]
        assert (item["status"], item["status_since"], item["terminated_on"]) == (
            "terminated", "2027-01-01", "2027-01-01")
        assert 'accordwatch_projector_agreements{status="terminated"} 1.0' in client.get("/metrics").text
        earlier = client.get("/v1/agreements/us-gt-aca-2019", params={"as_of": "2026-12-15"}).json()
        assert earlier["status"] == "in_force"
    engine.dispose()


@pytest.mark.postgres
def test_a_policy_is_recomputed_under_its_row_lock_from_what_the_other_writer_committed(
    postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers write two cases of one policy: the second waits for the first's lock, then reads its facts."""
    url: str = postgres.create_database(f"t_{uuid_utils.uuid7().hex[:12]}")
    engine = _engine(url)
    clock = Clock("2020-01-01T00:00:00+00:00")
    first, second = ReadModelStore(engine, clock=clock), ReadModelStore(engine, clock=clock)
    first.apply(_consumed([event("LawsuitFiled", subject="case-one", occurred_at="2019-11-01",
                                 data={"court": "D. Ariz.", "affects": ["mpp"]})], start=100))
    assert _row(engine, "mpp").status == "in_effect"  # the row exists: only its lock can order the two
    rulings = [event("CourtRulingIssued", subject=case, occurred_at="2019-12-01",
                     data={"court": "D. Ariz.", "outcome": "blocked", "regions": [region], "affects": ["mpp"]})
               for case, region in (("case-one", "US-AZ"), ("case-two", "US-CA"))]
    first_read, release = threading.Event(), threading.Event()
    seen: dict[str, list[tuple[str, int]]] = {}
    real = policies.facts_of

    def spied(conn: Any, gen: int, slugs: Any) -> Any:
        found = real(conn, gen, slugs)
        name = threading.current_thread().name
        seen[name] = sorted((c.case, len(c.rulings)) for c in found.get("mpp", []))
        if name == "first":
            first_read.set()
            assert release.wait(60)  # holds its transaction (and the row lock) open
        return found

    def waiting_on_a_lock() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()")).scalar_one())

    monkeypatch.setattr(policies, "facts_of", spied)
    one = threading.Thread(name="first", target=first.apply, args=(_consumed(rulings[:1], start=0),))
    two = threading.Thread(name="second", target=second.apply, args=(_consumed(rulings[1:], start=10),))
    one.start()
    assert first_read.wait(60)
    two.start()
    wait_for(lambda: "second" in seen or waiting_on_a_lock() > 0, timeout=60, what="the second writer to block")
    assert "second" not in seen, "the second writer read the facts while the first held the policy's lock"
    release.set()
    one.join(timeout=60)
    two.join(timeout=60)
    assert seen["second"] == [("case-one", 1), ("case-two", 1)]
    row = _row(engine, "mpp")
    assert (row.status, row.blocked_in) == ("partly_blocked", ["US-AZ", "US-CA"])
    engine.dispose()


def test_upgrading_a_read_model_of_the_old_fold_folds_every_subject_again(database_url: str) -> None:
    """0001 -> head: effective times filled in, old snapshots due at once, then folded as of now by the timer."""
    engine = make_engine(database_url, writer=True)
    migrations.upgrade(MIGRATIONS, engine, revision="0001")
    signed: dict[str, Any] = {
        "id": str(uuid_utils.uuid7()), "type": "AgreementSigned", "schema_version": 1, "subject": "us-gt-aca-2019",
        "occurred_at": "2019-07-26", "recorded_at": "2026-01-01T00:00:00Z", "sources": [{"publisher": "AP"}],
        "data": {"parties": ["US", "GT"]}}
    in_force = {**signed, "id": str(uuid_utils.uuid7()), "type": "AgreementInForce", "occurred_at": "2019-11-30",
                "data": {"effective_on": "2019-11-19"}}
    with engine.begin() as conn:
        for doc in (signed, in_force):
            conn.execute(text(
                "INSERT INTO events (generation, id, subject, type, occurred_at, recorded_at, confidence, body,"
                " partition, \"offset\") VALUES (1, :id, :subject, :type, :occurred, '2026-01-01 00:00:00',"
                " 'confirmed', :body, 0, 0)"),
                {"id": doc["id"].replace("-", "") if conn.dialect.name == "sqlite" else doc["id"],
                 "subject": doc["subject"], "type": doc["type"], "occurred": doc["occurred_at"] + " 00:00:00",
                 "body": orjson.dumps(doc).decode()})
        conn.execute(text(
            "INSERT INTO subject_states (generation, subject, state, event_count, updated_at)"
            " VALUES (1, 'us-gt-aca-2019', :state, 2, '2026-01-01 00:00:00')"),
            {"state": '{"subject": "us-gt-aca-2019",'
                      ' "last_key": ["2019-11-30T00:00:00Z", "2026-01-01T00:00:00Z", "x"]}'})
    upgrade(engine)
    with engine.connect() as conn:
        effective: dict[str, Any] = {row.type: row.effective_at
                                     for row in conn.execute(text("SELECT type, effective_at FROM events"))}
        due = conn.execute(select(SubjectSnapshot.next_effect_at)).scalar_one()
    assert str(effective["AgreementInForce"])[:10] == "2019-11-19"
    assert due is not None
    assert due.year == 1970
    store = ReadModelStore(engine, clock=Clock("2026-12-03T00:00:00+00:00"))
    assert store.refresh_due().refolds == 1
    with engine.connect() as conn:
        status, since = conn.execute(select(AgreementRow.status, AgreementRow.status_since)).one()
    assert (status, since) == ("in_force", datetime(2019, 11, 19, tzinfo=UTC))
    engine.dispose()
