"""The outbox's database side: claiming due deliveries, recording what each attempt got.

A claim leases a delivery for longer than one request may take; a worker that dies
mid-request simply lets the lease lapse and the delivery is sent again, with the same
`webhook-id`. Outcomes are written in batches, with the retry schedule, `Retry-After`,
410 Gone and repeated failure applied here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast
from uuid import UUID

from sqlalchemy import Connection, Engine, Table, and_, bindparam, func, insert, or_, select, update

from services.alerts.tables import Delivery, DeliveryAttempt, Subscription

GONE = 410


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery leased to this process, with what it takes to send it."""

    id: UUID
    subscription_id: UUID
    url: str
    secret: str
    payload: str
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Result:
    """What one attempt got."""

    delivery: Claimed
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class Recorded:
    """How a result was booked: `succeeded`, `retrying`, `failed` or `gone`."""

    result: Result
    outcome: str


@dataclass(frozen=True, slots=True)
class Policy:
    """The retry schedule and when to give up on an endpoint."""

    schedule: tuple[float, ...]
    disable_after: int
    max_retry_after_s: float
    lease: timedelta

    def next_delay(self, attempts_made: int, retry_after_s: float | None) -> float | None:
        """Seconds to the next attempt after `attempts_made` attempts, or None when exhausted."""
        if attempts_made >= len(self.schedule):
            return None
        delay = self.schedule[attempts_made]
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_retry_after_s))
        return delay


def claim(
    engine: Engine, now: datetime, capacity: Callable[[UUID], int], policy: Policy, *, limit: int = 500
) -> list[Claimed]:
    """Lease due deliveries of active subscriptions, no more per subscription than it has room for."""
    due = and_(
        Delivery.status == "pending",
        Delivery.next_attempt_at <= now,
        or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
    )
    with engine.begin() as conn:
        query = (
            select(Delivery.id, Delivery.subscription_id, Subscription.url, Subscription.secret, Delivery.payload,
                   Delivery.attempts, Delivery.created_at)
            .join(Subscription, Subscription.id == Delivery.subscription_id)
            .where(due, Subscription.status == "active")
            .order_by(Delivery.next_attempt_at, Delivery.created_at)
            .limit(limit)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=Delivery.__table__, skip_locked=True)
        room: dict[UUID, int] = {}
        chosen: list[Claimed] = []
        for row in conn.execute(query):
            left = room.setdefault(row.subscription_id, capacity(row.subscription_id))
            if left <= 0:
                continue
            room[row.subscription_id] = left - 1
            chosen.append(Claimed(row.id, row.subscription_id, row.url, row.secret, row.payload, row.attempts,
                                  row.created_at))
        if chosen:
            conn.execute(
                update(Delivery).where(Delivery.id.in_([c.id for c in chosen]), due)
                .values(lease_until=now + policy.lease)
            )
    return chosen


def record(engine: Engine, results: Sequence[Result], policy: Policy) -> list[Recorded]:
    """Book a batch of attempt results in one transaction (successes in bulk, the rest one by one)."""
    booked: list[Recorded] = []
    with engine.begin() as conn:
        conn.execute(insert(DeliveryAttempt), [
            {"delivery_id": r.delivery.id, "attempt": r.delivery.attempts + 1, "at": r.at,
             "status_code": r.status_code, "error": r.error, "duration_ms": r.duration_ms}
            for r in results
        ])
        ok = [r for r in results if r.ok]
        if ok:
            table = cast(Table, Delivery.__table__)
            conn.execute(
                update(table).where(table.c.id == bindparam("b_id")).values(
                    status="succeeded", completed_at=bindparam("b_at"), attempts=bindparam("b_attempts"),
                    lease_until=None, last_status_code=bindparam("b_code"), last_error=None),
                [{"b_id": r.delivery.id, "b_at": r.at, "b_attempts": r.delivery.attempts + 1,
                  "b_code": r.status_code} for r in ok],
            )
            subs = sorted({r.delivery.subscription_id for r in ok})
            conn.execute(update(Subscription).where(Subscription.id.in_(subs), Subscription.consecutive_failures != 0)
                         .values(consecutive_failures=0))
            booked.extend(Recorded(r, "succeeded") for r in ok)
        booked.extend(Recorded(r, _book_failure(conn, r, policy)) for r in results if not r.ok)
    return booked


def _book_failure(conn: Connection, result: Result, policy: Policy) -> str:
    delivery = result.delivery
    attempts = delivery.attempts + 1
    common = {"attempts": attempts, "lease_until": None, "last_status_code": result.status_code,
              "last_error": result.error}
    this = Delivery.id == delivery.id
    if result.status_code == GONE:
        conn.execute(update(Delivery).where(this).values(status="failed", completed_at=result.at, **common))
        disable(conn, delivery.subscription_id, result.at, "the endpoint answered 410 Gone")
        return "gone"
    delay = policy.next_delay(attempts, result.retry_after_s)
    if delay is not None:
        later = result.at + timedelta(seconds=delay)
        conn.execute(update(Delivery).where(this).values(next_attempt_at=later, **common))
        return "retrying"
    conn.execute(update(Delivery).where(this).values(status="failed", completed_at=result.at, **common))
    failures = conn.execute(
        update(Subscription).where(Subscription.id == delivery.subscription_id)
        .values(consecutive_failures=Subscription.consecutive_failures + 1)
        .returning(Subscription.consecutive_failures)
    ).scalar_one()
    if failures >= policy.disable_after:
        disable(conn, delivery.subscription_id, result.at, f"{failures} deliveries in a row failed after every retry")
    return "failed"


def disable(conn: Connection, subscription_id: UUID, at: datetime, reason: str) -> None:
    """Disable a subscription and cancel what is still queued for it."""
    conn.execute(
        update(Subscription).where(Subscription.id == subscription_id, Subscription.status == "active")
        .values(status="disabled", disabled_reason=reason, disabled_at=at)
    )
    conn.execute(
        update(Delivery).where(Delivery.subscription_id == subscription_id, Delivery.status == "pending")
        .values(status="cancelled", completed_at=at, lease_until=None,
                last_error=f"subscription disabled: {reason}")
    )


def depth(engine: Engine) -> tuple[int, int]:
    """(pending deliveries, disabled subscriptions)."""
    with engine.connect() as conn:
        count = select(func.count())
        pending = conn.execute(count.select_from(Delivery).where(Delivery.status == "pending")).scalar_one()
        disabled = conn.execute(count.select_from(Subscription).where(Subscription.status == "disabled")).scalar_one()
    return int(pending), int(disabled)


def next_due(engine: Engine) -> datetime | None:
    """When the earliest pending delivery becomes due."""
    with engine.connect() as conn:
        return conn.execute(select(func.min(Delivery.next_attempt_at)).where(Delivery.status == "pending")).scalar()
