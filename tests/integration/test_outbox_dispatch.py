"""The outbox's dispatch side on SQLite and on a real PostgreSQL: hand-off leases, bounded claims, bookings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from schemas.envelope import Event
from schemas.registry import parse_event
from services.alerts import outbox
from services.alerts.migrate import upgrade
from services.alerts.rules import load_rules
from services.alerts.settings import DEFAULT_RULES
from services.alerts.store import AlertStore, Consumed, Handoff
from services.alerts.tables import Delivery, DeliveryAttempt, Subscription
from services.platform.db import make_engine

POLICY = outbox.Policy(schedule=(0, 5, 60), disable_after=3, max_retry_after_s=600, lease=timedelta(seconds=40))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, writer=True)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def subscribe(engine: Engine) -> uuid.UUID:
    sub_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(insert(Subscription), {
            "id": sub_id, "url": f"http://127.0.0.1:9/{sub_id.hex}", "secret": "whsec_" + "A" * 43,
            "description": None, "rules": ["stay-requested"], "severities": [], "subjects": [], "status": "active",
            "disabled_reason": None, "disabled_at": None, "consecutive_failures": 0, "created_at": datetime.now(UTC),
        })
    return sub_id


def stay_request(subject: str, at: datetime) -> Event:
    return parse_event({"id": str(uuid.uuid4()), "type": "StayRequested", "subject": subject,
                        "occurred_at": at.isoformat(), "recorded_at": at.isoformat(),
                        "sources": [{"publisher": "AP", "url": "https://apnews.com/x"}], "confidence": "confirmed",
                        "data": {"requested_by": "DHS", "court": "SCOTUS"}})


def alerts(store: AlertStore, n: int, now: datetime, handoff: Handoff | None = None, offset: int = 0) -> Any:
    batch = [Consumed("events", 0, offset + i, stay_request(f"case-{offset + i}", now)) for i in range(n)]
    return store.apply(batch, now, handoff)


def leased(engine: Engine, sub: uuid.UUID, now: datetime) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Delivery).where(
            Delivery.subscription_id == sub, Delivery.status == "pending", Delivery.lease_until > now)).scalar_one())


def test_the_alert_transaction_leases_what_fits_and_leaves_the_rest_to_claims(engine: Engine) -> None:
    store = AlertStore(engine, load_rules(DEFAULT_RULES))
    roomy, full = subscribe(engine), subscribe(engine)
    now = datetime.now(UTC)
    token = uuid.uuid4()
    outcome = alerts(store, 5, now, Handoff(token, now + POLICY.lease, {roomy: 3, full: 0}))
    assert [d.subscription_id for d in outcome.handed] == [roomy] * 3
    assert all(d.lease == token and d.url.endswith(roomy.hex) for d in outcome.handed)
    assert outcome.spilled == {roomy, full}
    assert leased(engine, roomy, now) == 3
    assert leased(engine, full, now) == 0
    # What was handed over is not claimed again; the spilled rows come back in write order.
    claimed = outbox.claim(engine, now, {roomy: 10, full: 10}, POLICY, token)
    assert sorted(d.id for d in claimed if d.subscription_id == roomy).__len__() == 2
    assert not {d.id for d in claimed} & {d.id for d in outcome.handed}
    mine = [d.payload for d in claimed if d.subscription_id == full]
    assert [p.split('"subject":"')[1].split('"')[0] for p in mine] == [f"case-{i}" for i in range(5)]


def test_a_claim_never_returns_more_for_a_subscriber_than_asked_whatever_its_backlog(engine: Engine) -> None:
    store = AlertStore(engine, load_rules(DEFAULT_RULES))
    hanging, healthy = subscribe(engine), subscribe(engine)
    now = datetime.now(UTC)
    alerts(store, 300, now)
    token = uuid.uuid4()
    claimed = outbox.claim(engine, now, {hanging: 2, healthy: 50}, POLICY, token)
    by_sub = {s: sum(1 for d in claimed if d.subscription_id == s) for s in (hanging, healthy)}
    assert by_sub == {hanging: 2, healthy: 50}
    assert leased(engine, hanging, now) == 2, "the backlog stays in the database, unleased"
    assert outbox.claim(engine, now, {hanging: 0}, POLICY, token) == []


def test_a_booking_under_a_lapsed_lease_does_not_overwrite_the_new_holder(engine: Engine) -> None:
    store = AlertStore(engine, load_rules(DEFAULT_RULES))
    sub = subscribe(engine)
    now = datetime.now(UTC)
    alerts(store, 1, now)
    first, second = uuid.uuid4(), uuid.uuid4()
    [old] = outbox.claim(engine, now, {sub: 1}, POLICY, first)
    later = now + POLICY.lease + timedelta(seconds=1)
    [new] = outbox.claim(engine, later, {sub: 1}, POLICY, second)
    assert new.id == old.id
    [stale] = outbox.record(engine, [outbox.Result(old, later, None, "timeout", 1.0)], POLICY)
    [ok] = outbox.record(engine, [outbox.Result(new, later, 204, None, 1.0)], POLICY)
    assert ok.outcome == "succeeded"
    with engine.connect() as conn:
        status, attempts = conn.execute(select(Delivery.status, Delivery.attempts)
                                        .where(Delivery.id == old.id)).one()
        logged = conn.execute(select(func.count()).select_from(DeliveryAttempt)
                              .where(DeliveryAttempt.delivery_id == old.id)).scalar_one()
    assert (status, attempts) == ("succeeded", 1)
    assert stale.outcome == "stale"
    assert logged == 2, "both attempts are in the delivery log"


def test_retries_are_booked_in_bulk_and_released_rows_are_due_at_once(engine: Engine) -> None:
    store = AlertStore(engine, load_rules(DEFAULT_RULES))
    sub = subscribe(engine)
    now = datetime.now(UTC)
    alerts(store, 40, now)
    token = uuid.uuid4()
    claimed = outbox.claim(engine, now, {sub: 40}, POLICY, token)
    booked = outbox.record(engine, [outbox.Result(d, now, 500, "HTTP 500", 1.0) for d in claimed[:30]], POLICY)
    assert {b.outcome for b in booked} == {"retrying"}
    [when] = {b.next_attempt_at for b in booked}
    assert when == now + timedelta(seconds=5)
    outbox.release(engine, [d.id for d in claimed[30:]], token)
    again = outbox.claim(engine, now, {sub: 40}, POLICY, token)
    assert {d.id for d in again} == {d.id for d in claimed[30:]}
    due_later = outbox.claim(engine, when, {sub: 40}, POLICY, token)
    assert len(due_later) == 30
