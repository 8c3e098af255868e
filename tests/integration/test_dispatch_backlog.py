"""A healthy subscriber whose deliveries spilled to the outbox is fed a window at a time (SQLite and PostgreSQL).

A burst larger than a lane's window (lanes + buffer), or a slow moment of the worker,
leaves a healthy subscriber's newer deliveries in the outbox. The dispatcher must then
claim them back at the speed the subscriber takes them: each claim refills the lane's
window, asked for before the lane runs dry, never more than the window. (It used to claim
only free lanes, once every result was booked: a spilled lane crawled, and one slow
moment cost every subscriber seconds.) Real database, real HTTP receiver verifying every
signature; the claims are counted, not timed.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, func, insert, select

from schemas.registry import parse_event
from services.alerts import outbox
from services.alerts.delivery import Sender
from services.alerts.dispatcher import Dispatcher
from services.alerts.egress import EgressPolicy
from services.alerts.migrate import upgrade
from services.alerts.rules import load_rules
from services.alerts.sealing import Sealer, new_sealing_key
from services.alerts.settings import DEFAULT_RULES
from services.alerts.statements import StoreThread
from services.alerts.store import AlertStore, Consumed
from services.alerts.tables import Delivery, Subscription
from services.platform.db import make_engine
from tests.receiver import Receiver, ReceiverServer

T = TypeVar("T")
POLICY = outbox.Policy(schedule=(0, 5, 60), disable_after=3, max_retry_after_s=600, lease=timedelta(seconds=40))
LANES, BUFFER = 2, 48
BACKLOG = 300


class CountingStoreThread(StoreThread):
    """The worker's store thread, counting the calls made on it by role, and the most one lane held at a claim."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}
        self.dispatcher: Dispatcher | None = None
        self.most_held = 0

    async def run(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        self.calls[name] = self.calls.get(name, 0) + 1
        if name == "claim" and self.dispatcher is not None:
            self.most_held = max([self.most_held, *(lane.held() for lane in self.dispatcher.lanes.values())])
        return await super().run(name, fn, *args)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, writer=True)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ReceiverServer()
    try:
        yield server.start()
    finally:
        server.stop()


SEALER = Sealer([new_sealing_key()])


def subscribe(engine: Engine, receiver: Receiver, path: str) -> uuid.UUID:
    sub_id, secret = uuid.uuid4(), "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with engine.begin() as conn:
        conn.execute(insert(Subscription), {
            "id": sub_id, "url": receiver.endpoint(path, secret=secret), "secret": SEALER.seal(secret),
            "description": None,
            "rules": ["stay-requested"], "severities": [], "subjects": [], "status": "active",
            "disabled_reason": None, "disabled_at": None, "consecutive_failures": 0, "created_at": datetime.now(UTC),
        })
    return sub_id


def stay_requests(n: int, at: datetime) -> list[Consumed]:
    return [Consumed("events", 0, i, parse_event({
        "id": str(uuid.uuid4()), "type": "StayRequested", "subject": f"case-{i}", "occurred_at": at.isoformat(),
        "recorded_at": at.isoformat(), "sources": [{"publisher": "AP", "url": "https://apnews.com/x"}],
        "confidence": "confirmed", "data": {"requested_by": "DHS", "court": "SCOTUS"}})) for i in range(n)]


def test_a_spilled_healthy_subscriber_is_claimed_back_a_window_at_a_time(engine: Engine, receiver: Receiver) -> None:
    sub = subscribe(engine, receiver, "/healthy")
    store = AlertStore(engine, load_rules(DEFAULT_RULES))
    db = CountingStoreThread()

    async def scenario() -> Dispatcher:
        sender = Sender(EgressPolicy(["127.0.0.1"]), SEALER, 10.0, lambda: datetime.now(UTC), pool_size=LANES)
        await sender.start()
        # idle_poll_s: no sweep during the test, every claim comes from the lane's own backlog.
        dispatcher = Dispatcher(engine, sender, POLICY, concurrency=LANES, buffer=BUFFER,
                                clock=lambda: datetime.now(UTC), db=db, idle_poll_s=600)
        db.dispatcher = dispatcher
        running = asyncio.create_task(dispatcher.run())
        try:
            deadline = time.monotonic() + 60
            while sub not in dispatcher.lanes:
                assert time.monotonic() < deadline, "the dispatcher never read the subscription"
                await asyncio.sleep(0.01)
            # One batch far larger than the window, as after a slow moment: the worker's own hand-off.
            handoff, reserved = dispatcher.reserve()
            outcome = await db.run("apply", store.apply, stay_requests(BACKLOG, datetime.now(UTC)),
                                   datetime.now(UTC), handoff)
            assert len(outcome.handed) == LANES + BUFFER
            assert outcome.spilled == {sub}
            dispatcher.accept(reserved, outcome)
            deadline = time.monotonic() + 120
            while len({r.webhook_id for r in receiver.verified("/healthy")}) < BACKLOG:
                assert time.monotonic() < deadline, f"{len(receiver.verified('/healthy'))} of {BACKLOG} arrived"
                await asyncio.sleep(0.05)
            while dispatcher.lanes[sub].spilled or dispatcher.held()[0]:
                assert time.monotonic() < deadline, "the lane never drained"
                await asyncio.sleep(0.05)
            return dispatcher
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await sender.close()

    try:
        dispatcher = asyncio.run(scenario())
    finally:
        db.close()
    got = receiver.verified("/healthy")
    assert len({r.webhook_id for r in got}) == BACKLOG
    assert all(r.verified for r in got)
    spilled = BACKLOG - (LANES + BUFFER)
    # About a claim per window's worth, not one per free lane (the old dispatcher made 250 claims
    # here, about one per delivery; this one 8).
    assert db.calls["claim"] <= 2 * spilled // BUFFER + 2, db.calls
    assert db.most_held <= LANES + BUFFER, "a claim never leases more than the window"
    assert dispatcher.held()[0] == 0
    assert not dispatcher.lanes[sub].spilled
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Delivery)
                            .where(Delivery.status == "succeeded")).scalar_one() == BACKLOG
