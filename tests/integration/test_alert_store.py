"""The alert store on SQLite and on a real PostgreSQL: the seed scenario on a fake clock, replays, the outbox."""

from __future__ import annotations

import json
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, insert, select, text

from schemas.cloudevents import from_record, to_record
from schemas.envelope import Event, instant
from schemas.registry import parse_event
from services.alerts import outbox
from services.alerts.migrate import upgrade
from services.alerts.rules import load_rules
from services.alerts.settings import DEFAULT_RULES
from services.alerts.store import AlertStore, load_alerts
from services.alerts.tables import Alert, AlertEvent, AlertParked, Base, Delivery, Subscription
from services.alerts.worker import AlertsSink
from services.platform.db import make_engine
from services.platform.isolation import Consumed, Isolator, NoDeadLetters, Record, in_thread

ROOT = Path(__file__).resolve().parents[2]
CASE = "innovation-law-lab-v-wolf"


@pytest.fixture
def engine(database_url: str) -> Any:
    engine = make_engine(database_url, writer=True)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def seed_events() -> list[Event]:
    lines = (ROOT / "examples" / "seed-timeline.ndjson").read_text().splitlines()
    events = [parse_event({**json.loads(line), "recorded_at": "2026-01-01T00:00:00Z"}) for line in lines if line]
    return sorted(events, key=lambda e: (instant(e.occurred_at), str(e.id)))  # as it happened


def subscribe(engine: Engine, **filters: Any) -> uuid.UUID:
    sub_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(insert(Subscription), {
            "id": sub_id, "url": "http://127.0.0.1:9/hook", "secret": "whsec_" + "A" * 43, "description": None,
            "rules": filters.get("rules", []), "severities": filters.get("severities", []),
            "subjects": filters.get("subjects", []), "status": "active", "disabled_reason": None,
            "disabled_at": None, "consecutive_failures": 0, "created_at": datetime.now(UTC),
        })
    return sub_id


def notifications(engine: Engine) -> list[tuple[str, str, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT fingerprint, transition, suppressed FROM alert_notifications ORDER BY created_at, transition"))
        return [(fp, t, s is None) for fp, t, s in rows]


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": "alembic_version_alerts"})
        diff = [d for d in compare_metadata(context, Base.metadata)
                if not (d[0] == "remove_table" and d[1].name == "alembic_version_alerts")]
    assert diff == []


def test_the_seed_scenario_as_it_happened_on_a_fake_clock(engine: Engine) -> None:
    """Lived through in March 2020: the stay request is critical, the order's reminders come at 72h, 24h, 1h."""
    store = AlertStore(engine, load_rules(DEFAULT_RULES))
    sub = subscribe(engine, subjects=[CASE])
    for offset, e in enumerate(seed_events()):
        now = instant(e.occurred_at) + timedelta(hours=1)
        store.tick(now)
        store.apply([Consumed("events", 0, offset, e)], now)
    with engine.connect() as conn:
        alerts = {a.rule: a for a in load_alerts(conn, Alert.subject == CASE)}
    assert alerts["stay-requested"].severity == "critical"
    assert alerts["stay-requested"].state == "firing"
    assert alerts["court-deadline"].details["due_at"] == "2020-03-12T00:00:00+00:00"
    # The clock runs on to the Thursday the order takes effect; a tick every hour.
    clock = datetime(2020, 3, 8, 2, tzinfo=UTC)
    while clock <= datetime(2020, 3, 11, 12, tzinfo=UTC):
        store.tick(clock)
        clock += timedelta(hours=1)
    deadline_fp = alerts["court-deadline"].fingerprint
    sent = [t for fp, t, ok in notifications(engine) if fp == deadline_fp and ok]
    assert sent == ["firing", "reminder:72h", "reminder:24h"]
    # The Supreme Court grants the stay on 11 March: the stay alert and the deadline resolve, no 1h reminder.
    decision = parse_event({"id": str(uuid.uuid4()), "type": "StayDecided", "subject": CASE,
                            "occurred_at": "2020-03-11", "recorded_at": "2026-01-01T00:00:00Z",
                            "sources": [{"publisher": "AP", "url": "https://apnews.com/x"}],
                            "confidence": "confirmed",
                            "data": {"court": "Supreme Court of the United States", "decision": "granted",
                                     "affects": ["mpp"]}})
    store.apply([Consumed("events", 0, 1000, decision)], clock)
    while clock <= datetime(2020, 3, 13, tzinfo=UTC):
        store.tick(clock)
        clock += timedelta(hours=1)
    with engine.connect() as conn:
        after = {a.rule: a for a in load_alerts(conn, Alert.subject == CASE)}
        queued = conn.execute(select(Delivery.type).where(Delivery.subscription_id == sub)).scalars().all()
    assert after["stay-requested"].state == "resolved"
    assert after["court-deadline"].state == "resolved"
    assert "stay granted" in (after["court-deadline"].resolution or "")
    sent = [t for fp, t, ok in notifications(engine) if fp == deadline_fp and ok]
    assert sent == ["firing", "reminder:72h", "reminder:24h", "resolved"]
    # Only the case's alerts reached the subscription's outbox: the stay request, the deadline (with its two
    # reminders) and the ruling fired; the stay request and the deadline resolved.
    assert sorted(queued) == ["alert.firing"] * 5 + ["alert.resolved"] * 2
    # Applying everything again (a replay from offset 0) notifies nothing.
    before = notifications(engine)
    outcome = store.apply([Consumed("events", 0, i, e) for i, e in enumerate(seed_events())], clock)
    assert (outcome.new_events, outcome.notifications) == (0, 0)
    assert notifications(engine) == before


def test_old_history_is_recorded_never_sent_and_past_reminders_are_skipped(engine: Engine) -> None:
    store = AlertStore(engine, load_rules(DEFAULT_RULES))
    sub = subscribe(engine)
    now = datetime(2026, 11, 22, tzinfo=UTC)
    outcome = store.apply([Consumed("events", 0, i, e) for i, e in enumerate(seed_events())], now)
    assert outcome.notifications > 0
    assert outcome.notifications == outcome.suppressed
    assert outcome.deliveries == 0
    store.tick(now + timedelta(days=8))
    with engine.connect() as conn:
        queued = conn.execute(select(Delivery.id).where(Delivery.subscription_id == sub)).all()
        by_status = text("SELECT status, count(*) FROM alert_timers GROUP BY status")
        timers: dict[str, int] = dict(conn.execute(by_status).all())
    assert queued == []
    assert all(ok is False for _, _, ok in notifications(engine))
    assert "pending" not in timers
    # The Ninth Circuit order's deadline had passed long before: recorded as fired and resolved, no reminders.
    deadline = [t for fp, t, _ in notifications(engine) if fp.startswith(f"court-deadline/{CASE}/")]
    assert deadline == ["firing", "resolved"]


def test_outbox_retries_on_schedule_honours_retry_after_and_gives_up(engine: Engine) -> None:
    store = AlertStore(engine, load_rules(DEFAULT_RULES))
    sub = subscribe(engine)
    now = datetime.now(UTC)
    request = parse_event({"id": str(uuid.uuid4()), "type": "StayRequested", "subject": "case-x",
                           "occurred_at": now.isoformat(), "recorded_at": now.isoformat(),
                           "sources": [{"publisher": "AP", "url": "https://apnews.com/x"}], "confidence": "confirmed",
                           "data": {"requested_by": "DHS", "court": "SCOTUS"}})
    assert store.apply([Consumed("events", 0, 0, request)], now).deliveries == 1
    policy = outbox.Policy(schedule=(0, 5, 60), disable_after=1, max_retry_after_s=600, lease=timedelta(seconds=40))
    token = uuid.uuid4()
    [claimed] = outbox.claim(engine, now, {sub: 4}, policy, token)
    assert outbox.claim(engine, now, {sub: 4}, policy, token) == [], "a leased delivery is not claimed twice"
    [booked] = outbox.record(engine, [outbox.Result(claimed, now, 500, "HTTP 500", 3.0)], policy)
    assert booked.outcome == "retrying"
    assert outbox.claim(engine, now + timedelta(seconds=4), {sub: 4}, policy, token) == []
    [second] = outbox.claim(engine, now + timedelta(seconds=5), {sub: 4}, policy, token)
    [booked] = outbox.record(engine, [outbox.Result(second, now + timedelta(seconds=5), 503, "HTTP 503", 1.0,
                                                    retry_after_s=120)], policy)
    assert booked.outcome == "retrying"
    assert outbox.claim(engine, now + timedelta(seconds=66), {sub: 4}, policy, token) == [], "Retry-After beats 60 s"
    [third] = outbox.claim(engine, now + timedelta(seconds=126), {sub: 4}, policy, token)
    [booked] = outbox.record(engine, [outbox.Result(third, now + timedelta(seconds=126), None, "timeout", 1.0)], policy)
    assert booked.outcome == "failed"
    with engine.connect() as conn:
        status, reason = conn.execute(select(Subscription.status, Subscription.disabled_reason)
                                      .where(Subscription.id == sub)).one()
    assert status == "disabled"
    assert "failed after every retry" in (reason or "")


def stay_request(subject: str, now: datetime) -> Event:
    return parse_event({"id": str(uuid.uuid4()), "type": "StayRequested", "subject": subject,
                        "occurred_at": now.isoformat(), "recorded_at": now.isoformat(),
                        "sources": [{"publisher": "AP", "url": "https://apnews.com/x"}], "confidence": "confirmed",
                        "data": {"requested_by": "DHS", "court": "SCOTUS"}})


async def test_an_event_whose_rules_raise_is_parked_and_the_rest_of_the_batch_goes_on(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.alerts import engine as rules_engine

    original = rules_engine.EVALUATORS["ruling-issued"]

    def broken(rule: Any, rules: Any, state: Any, new: Any, ctx: Any) -> Any:
        if any(e.data.requested_by == "a rule bug" for e in new if e.type == "StayRequested"):
            raise RuntimeError("a rule bug")
        return original(rule, rules, state, new, ctx)

    monkeypatch.setitem(rules_engine.EVALUATORS, "ruling-issued", broken)
    store = AlertStore(engine, load_rules(DEFAULT_RULES))
    now = datetime.now(UTC)
    good, later = stay_request("case-a", now), stay_request("case-a", now + timedelta(minutes=1))
    bad = parse_event({**json.loads(stay_request("case-a", now).model_dump_json()),
                       "data": {"requested_by": "a rule bug", "court": "SCOTUS"}})
    other = stay_request("case-b", now)
    records = [Record("events", 0, offset, *_raw(e)) for offset, e in enumerate((good, bad, later))]
    records.append(Record("events", 1, 0, *_raw(other)))
    isolator = Isolator(AlertsSink(store, lambda: now), NoDeadLetters(), from_record, in_thread)
    isolator.positions = {("events", 0): 0, ("events", 1): 0}
    await isolator.apply(records)
    with engine.connect() as conn:
        parked = conn.execute(select(AlertParked.offset, AlertParked.event_id, AlertParked.error)).all()
        stored = set(conn.execute(select(AlertEvent.id)).scalars())
        alerts = {a.subject for a in load_alerts(conn)}
    assert parked == [(1, bad.event_id, "RuntimeError")]
    assert stored == {good.event_id, later.event_id, other.event_id}
    assert alerts == {"case-a", "case-b"}, "the subject's other events and the other subject still fire"
    assert store.positions("events") == {0: 3, 1: 1}
    assert isolator.positions == {("events", 0): 3, ("events", 1): 1}


def _raw(event: Event) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    record = to_record(event, source="test")
    return record.key, record.value, record.headers


def test_two_workers_evaluating_the_same_subjects_at_once_notify_each_change_once(database_url: str) -> None:
    """Two alerts workers applying events of the same cases at the same time (a rebalance, partitions growing)."""
    engines = [make_engine(database_url, writer=True) for _ in range(2)]
    upgrade(engines[0])
    subscribe(engines[0])
    now = datetime.now(UTC)
    cases = [f"case-{i}" for i in range(6)]
    stream: list[Event] = []
    for step in range(12):
        for case in cases:
            kind = "StayRequested" if step % 2 == 0 else "StayDecided"
            data = {"requested_by": f"party {step}", "court": "SCOTUS"} if kind == "StayRequested" else {
                "court": "SCOTUS", "decision": "denied"}
            stream.append(parse_event({
                "id": str(uuid.uuid4()), "type": kind, "subject": case,
                "occurred_at": (now + timedelta(seconds=step)).isoformat(), "recorded_at": now.isoformat(),
                "sources": [{"publisher": "AP", "url": "https://apnews.com/x"}], "confidence": "confirmed",
                "data": data}))
    items = [Consumed("events", i % 2, i // 2, e) for i, e in enumerate(stream)]
    rng = random.Random(5)
    shares = [[c for c in items if c.partition == w or rng.random() < 0.3] for w in (0, 1)]
    errors: list[BaseException] = []

    def work(store: AlertStore, share: list[Consumed], seed: int) -> None:
        sizes = random.Random(seed)
        position = 0
        try:
            while position < len(share):
                size = sizes.randrange(1, 6)
                store.apply(share[position:position + size], now + timedelta(minutes=1))
                position += size
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(AlertStore(e, load_rules(DEFAULT_RULES)), share, n))
               for n, (e, share) in enumerate(zip(engines, shares, strict=True))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    changes = notifications(engines[0])
    assert len(changes) == len(set(changes)), "a change notified twice"
    with engines[0].connect() as conn:
        per_notification = conn.execute(text(
            "SELECT notification_id, count(*) FROM deliveries GROUP BY notification_id HAVING count(*) > 1")).all()
        stays = conn.execute(select(Alert.subject, Alert.state).where(Alert.rule == "stay-requested")).all()
        stored = conn.execute(select(func.count()).select_from(AlertEvent)).scalar_one()
    assert per_notification == []
    assert stored == len(stream)
    assert sorted(stays) == sorted((case, "resolved") for case in cases for _ in range(6)), \
        "one alert per stay request, each resolved by the decision after it"
    for e in engines:
        e.dispose()


# -- issue 13: alerts follow their cause, reminders follow deadlines, policies on the clock ------------


def _doc(kind: str, occurred: str, data: dict[str, Any], subject: str = CASE, **extra: Any) -> Event:
    return parse_event({"id": str(uuid.uuid4()), "type": kind, "subject": subject, "occurred_at": occurred,
                        "recorded_at": occurred, "sources": [{"publisher": "AP", "url": "https://apnews.com/x"}],
                        "confidence": "confirmed", "data": data, **extra})


def _at(text_: str) -> datetime:
    return datetime.fromisoformat(text_)


def test_an_alert_whose_cause_returns_fires_again_with_a_new_notification(engine: Engine) -> None:
    """Defect 5 through the store: request, decision, the decision retracted: firing, resolved, firing#2, all sent."""
    store = AlertStore(engine, load_rules(DEFAULT_RULES))
    sub = subscribe(engine, rules=["stay-requested"])
    request = _doc("StayRequested", "2020-03-02T10:00:00+00:00",
                   {"requested_by": "DHS", "court": "Supreme Court of the United States", "affects": ["mpp"]})
    decision = _doc("StayDecided", "2020-03-04T10:00:00+00:00",
                    {"court": "Supreme Court of the United States", "decision": "denied", "affects": ["mpp"]})
    retraction = _doc("EventRetracted", "2020-03-05T10:00:00+00:00",
                      {"event_id": str(decision.event_id), "reason": "the court had not ruled"})
    for offset, (e, now) in enumerate(((request, "2020-03-02T11:00:00+00:00"), (decision, "2020-03-04T11:00:00+00:00"),
                                       (retraction, "2020-03-05T11:00:00+00:00"))):
        store.apply([Consumed("events", 0, offset, e)], _at(now))
    fingerprint = f"stay-requested/{CASE}/{request.event_id}"
    assert [(t, ok) for fp, t, ok in notifications(engine) if fp == fingerprint] == [
        ("firing", True), ("resolved", True), ("firing#2", True)]
    with engine.connect() as conn:
        [alert] = load_alerts(conn, Alert.fingerprint == fingerprint)
        queued = conn.execute(select(Delivery.type).where(Delivery.subscription_id == sub)).scalars().all()
    assert (alert.state, alert.episode, alert.resolution) == ("firing", 2, None)
    assert sorted(queued) == ["alert.firing", "alert.firing", "alert.resolved"]
    # Replaying everything notifies nothing more.
    before = notifications(engine)
    store.apply([Consumed("events", 0, i, e) for i, e in enumerate((request, decision, retraction))],
                _at("2020-03-06T00:00:00+00:00"))
    assert notifications(engine) == before


def test_reminders_follow_a_deadline_that_a_stay_holds_and_a_denial_reopens(engine: Engine) -> None:
    """Defect 3 through the alerts: an administrative stay stops the reminders, the denial brings them back."""
    store = AlertStore(engine, load_rules(DEFAULT_RULES))
    scotus = "Supreme Court of the United States"
    ruling = _doc("CourtRulingIssued", "2020-03-04T00:00:00+00:00",
                  {"court": "U.S. Court of Appeals for the Ninth Circuit", "outcome": "blocked",
                   "effective_at": "2020-03-12T00:00:00+00:00", "affects": ["mpp"]})
    steps = [(ruling, "2020-03-08T01:00:00+00:00"),
             (_doc("StayDecided", "2020-03-09T12:00:00+00:00",
                   {"court": scotus, "decision": "administrative", "affects": ["mpp"]}), "2020-03-09T12:30:00+00:00"),
             (_doc("StayDecided", "2020-03-10T12:00:00+00:00",
                   {"court": scotus, "decision": "denied", "affects": ["mpp"]}), "2020-03-10T12:30:00+00:00")]
    clock = _at("2020-03-08T01:00:00+00:00")
    for offset, (e, applied) in enumerate(steps):
        while clock < _at(applied):
            store.tick(clock)
            clock += timedelta(hours=1)
        store.apply([Consumed("events", 0, offset, e)], clock)
    while clock <= _at("2020-03-12T02:00:00+00:00"):
        store.tick(clock)
        clock += timedelta(hours=1)
    fingerprint = f"court-deadline/{CASE}/{ruling.event_id}"
    assert [t for fp, t, ok in notifications(engine) if fp == fingerprint and ok] == [
        "firing", "reminder:72h", "resolved", "firing#2", "reminder:24h#2", "reminder:1h#2", "reminder:due#2",
        "resolved#2"]
    with engine.connect() as conn:
        [alert] = load_alerts(conn, Alert.fingerprint == fingerprint)
    assert (alert.state, alert.resolution) == ("resolved", "deadline reached")


def test_a_policy_changes_on_thursday_with_no_event_and_a_stay_before_it_prevents_the_alert(engine: Engine) -> None:
    """policy-status-changed fires when a scheduled effect comes (the tick), for the policy as a whole."""
    from tests.chains import mpp_chain

    store = AlertStore(engine, load_rules(DEFAULT_RULES))
    sub = subscribe(engine, rules=["policy-status-changed"])
    chain = [parse_event({**doc, "recorded_at": "2020-03-05T00:00:00Z"}) for doc in mpp_chain()]
    store.apply([Consumed("events", 0, i, e) for i, e in enumerate(chain[:-1])], _at("2020-03-09T12:00:00+00:00"))

    def policy_alerts() -> dict[str, tuple[str, str | None]]:
        with engine.connect() as conn:
            return {a.cause: (a.state, a.resolution)
                    for a in load_alerts(conn, Alert.rule == "policy-status-changed", Alert.subject == "mpp")}

    assert policy_alerts() == {"in_effect@2020-02-29T04:00:00+00:00": ("firing", None)}  # history: 9 days old
    store.tick(_at("2020-03-11T23:00:00+00:00"))
    assert len(policy_alerts()) == 1
    store.tick(_at("2020-03-12T00:00:30+00:00"))
    assert policy_alerts() == {
        "in_effect@2020-02-29T04:00:00+00:00": ("resolved", "superseded"),
        "partly_blocked@2020-03-12T00:00:00+00:00/US-AZ,US-CA": ("firing", None),
    }
    with engine.connect() as conn:
        [fired] = load_alerts(conn, Alert.cause.like("partly_blocked%"))
        queued = conn.execute(select(Delivery.type).where(Delivery.subscription_id == sub)).scalars().all()
    assert fired.details["blocked_in"] == ["US-AZ", "US-CA"]
    assert queued == ["alert.firing"]  # the old in_effect one was history: recorded, never sent
    # The Supreme Court's stay of the 11th arrives late: in effect again (since the 29th), a change again.
    store.apply([Consumed("events", 0, 99, chain[-1])], _at("2020-03-12T06:00:00+00:00"))
    causes = policy_alerts()
    assert causes["partly_blocked@2020-03-12T00:00:00+00:00/US-AZ,US-CA"] == ("resolved", "superseded")
    assert causes["in_effect@2020-02-29T04:00:00+00:00"] == ("firing", None)  # it fires again: its cause is back
