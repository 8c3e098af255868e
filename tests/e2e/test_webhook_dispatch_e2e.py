"""Dispatch end to end on the real broker: isolation between subscribers, and catch-up after an outage.

Every webhook lands on a real aiohttp receiver that verifies its signature with the
`standardwebhooks` package. Functional, not timed: the benchmark (bench/alerts.py) times it.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url

from tests.conftest import Broker, RunningStack, make_stack, wait_for
from tests.receiver import Receiver, ReceiverServer
from tests.samples import event

pytestmark = [pytest.mark.kafka, pytest.mark.stack]

LANES = 2


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ReceiverServer()
    try:
        yield server.start()
    finally:
        server.stop()


def subscribe(stack: RunningStack, receiver: Receiver, path: str, **behaviour: Any) -> str:
    url = receiver.endpoint(path, **behaviour)
    response = stack.alerts.post("/v1/subscriptions", json={"url": url, "rules": ["stay-requested"]})
    assert response.status_code == 201, response.text
    receiver.endpoint(path, secret=response.json()["secret"])
    sub_id: str = response.json()["id"]
    return sub_id


def stay_request(case: str, i: int, at: datetime) -> dict[str, Any]:
    return event("StayRequested", subject=case, occurred_at=(at + timedelta(seconds=i)).isoformat(timespec="seconds"),
                 data={"requested_by": f"party {i}", "court": "SCOTUS"})


class LeaseWatch:
    """Polls the alert store: the most rows ever leased at once for one subscription, and its backlog."""

    def __init__(self, stack: RunningStack, sub_id: str) -> None:
        self.path = make_url(stack.stack.alerts_db_url).database
        self.sub = uuid.UUID(sub_id).hex
        self.most_leased = 0
        self.most_pending = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            while not self._stop.wait(0.05):
                now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
                leased, pending = db.execute(
                    "SELECT sum(lease_until > ?), count(*) FROM deliveries"
                    " WHERE subscription_id = ? AND status = 'pending'", (now, self.sub)).fetchone()
                self.most_leased = max(self.most_leased, leased or 0)
                self.most_pending = max(self.most_pending, pending or 0)
        finally:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_a_hanging_and_a_failing_receiver_cost_the_healthy_ones_nothing(
    kafka: Broker, tmp_path: Path, receiver: Receiver
) -> None:
    stack = make_stack(kafka, tmp_path, services=("ingest", "alerts-worker", "alerts-api"), env={
        "ACCORDWATCH_WEBHOOK_ENDPOINT_CONCURRENCY": str(LANES), "ACCORDWATCH_WEBHOOK_ENDPOINT_BUFFER": "0",
        "ACCORDWATCH_WEBHOOK_TIMEOUT_S": "2", "ACCORDWATCH_WEBHOOK_RETRY_SCHEDULE": "0,1,1,1,1,1,1,1,1,1",
        "ACCORDWATCH_WEBHOOK_DISABLE_AFTER": "1000",
    })
    try:
        healthy = [f"/healthy-{i}" for i in range(3)]
        for path in healthy:
            subscribe(stack, receiver, path)
        hanging = subscribe(stack, receiver, "/hanging", hang_s=30)
        subscribe(stack, receiver, "/failing", status=500)
        watch = LeaseWatch(stack, hanging)
        now = datetime.now(UTC) - timedelta(minutes=5)
        cases = [f"iso-{uuid.uuid4().hex[:8]}" for _ in range(4)]
        posted = 0
        for case in cases:
            stack.post(*(stay_request(case, i, now) for i in range(10)))
            posted += 10
        for path in healthy:
            got = wait_for(partial(_at_least, receiver, path, posted), timeout=90,
                           what=f"{posted} verified webhooks on {path}")
            assert len({r.webhook_id for r in got}) == posted
            assert {r.body["data"]["subject"] for r in got} == set(cases)
        assert all(r.verified for path in healthy for r in receiver.all(path))
        assert receiver.verified("/failing") == []
        wait_for(lambda: len(receiver.all("/failing")) >= posted, timeout=60,
                 what="the failing receiver tried for every alert")
        wait_for(lambda: watch.most_pending >= posted - LANES, timeout=30, what="the hanging receiver's backlog")
        watch.stop()
        assert 0 < watch.most_leased <= LANES, "the hanging subscriber's backlog grew its claim beyond its lanes"
        assert watch.most_pending >= posted - LANES
    finally:
        stack.close()


def test_catch_up_after_an_outage_delivers_each_webhook_once_in_write_order(
    kafka: Broker, tmp_path: Path, receiver: Receiver
) -> None:
    """One lane per subscriber; the receivers answer 503 with Retry-After at one moment, then come back.

    Deliveries that fall due together go in write order (due time, creation, write order),
    so with one lane each subscriber gets its webhooks in the order the alerts were written.
    """
    stack = make_stack(kafka, tmp_path, services=("ingest", "alerts-worker", "alerts-api"), env={
        "ACCORDWATCH_WEBHOOK_ENDPOINT_CONCURRENCY": "1", "ACCORDWATCH_WEBHOOK_DISABLE_AFTER": "1000",
    })
    try:
        n = 30
        back_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)
        down = {"fail_first": n, "fail_status": 503, "retry_after": formatdate(back_at.timestamp(), usegmt=True)}
        paths = ["/catch-a", "/catch-b"]
        subs = {path: subscribe(stack, receiver, path, **down) for path in paths}
        case = f"catch-{uuid.uuid4().hex[:8]}"
        start = datetime.now(UTC) - timedelta(minutes=5)
        for i in range(0, n, 10):
            stack.post(*(stay_request(case, j, start) for j in range(i, i + 10)))
        for path, sub in subs.items():
            wait_for(partial(_attempted, stack, sub, n), timeout=60, what=f"first attempts for {path}")
        assert datetime.now(UTC) < back_at, "the outage ended before every delivery was tried once"
        for path in paths:
            seen: set[str] = set()
            processed: list[Any] = []

            def dedupe(p: str = path, seen: set[str] = seen, processed: list[Any] = processed) -> bool:
                for r in receiver.verified(p):
                    if r.webhook_id not in seen:
                        seen.add(r.webhook_id)
                        processed.append(r)
                return len(seen) >= n

            wait_for(dedupe, timeout=90, what=f"every webhook on {path} after the outage")
            assert [r.body["data"]["details"]["requested_by"] for r in processed] == [f"party {i}" for i in range(n)]
            assert all(r.at >= back_at.timestamp() - 1 for r in processed), "delivered before it fell due"
            per_id = Counter(r.webhook_id for r in receiver.verified(path))
            assert set(per_id.values()) == {1}, "a delivered webhook was sent again"
            assert all(r.verified for r in receiver.all(path))
            log = wait_for(partial(_booked, stack, subs[path]), what=f"the deliveries of {path} booked")
            assert {d["webhook_id"] for d in log} == seen
            assert [d["attempts"] for d in log] == [2] * n, "one refused attempt, one delivered"
    finally:
        stack.close()


def _booked(stack: RunningStack, sub_id: str) -> list[Any]:
    items: list[Any] = stack.alerts.get(f"/v1/subscriptions/{sub_id}/deliveries").json()["items"]
    return items if all(d["status"] == "succeeded" for d in items) else []


def _attempted(stack: RunningStack, sub_id: str, n: int) -> bool:
    items = stack.alerts.get(f"/v1/subscriptions/{sub_id}/deliveries").json()["items"]
    return sum(1 for d in items if d["attempts"] >= 1) >= n


def _at_least(receiver: Receiver, path: str, n: int) -> list[Any]:
    got = receiver.verified(path)
    return got if len(got) >= n else []
