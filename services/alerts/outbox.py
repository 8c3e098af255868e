"""The outbox's database side: claiming due deliveries, booking what each attempt got.

The database is there for durability, not for pacing: a delivery written by this
process's alert transaction is usually leased to it in that same transaction and sent
from memory; the claim here picks up the rest (retries, spilled backlogs, deliveries
whose lease lapsed because a worker died) in one statement, never more per subscription
than the caller has free lanes for. A lease carries the dispatcher's token; a booking
changes a delivery only while that token still holds it, so a dispatcher whose lease
lapsed never overwrites another's result. Outcomes are booked in bulk, with the retry
schedule, `Retry-After`, 410 Gone and repeated failure applied here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)

from services.alerts.tables import Delivery, DeliveryAttempt, Subscription

GONE = 410
DELIVERY = cast(Table, Delivery.__table__)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery leased to this process (or sent once, like a ping), with what it takes to send it."""

    id: UUID
    subscription_id: UUID
    url: str
    secret: str  # sealed
    payload: str
    attempts: int
    created_at: datetime
    lease: UUID | None = None
    """The token of the lease this delivery is held under (None: sent outside the leases, e.g. a test ping)."""
    lease_until: datetime | None = None
    previous_secret: str | None = None  # sealed; signs too until previous_secret_until
    previous_secret_until: datetime | None = None


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
    """How a result was booked: `succeeded`, `retrying`, `failed`, `gone`, or `stale` (its lease was taken)."""

    result: Result
    outcome: str
    next_attempt_at: datetime | None = None


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


def due(now: datetime) -> Any:
    """Pending, due, and not leased by anyone (or the lease lapsed)."""
    return and_(
        Delivery.status == "pending",
        Delivery.next_attempt_at <= now,
        or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
    )


def claim(engine: Engine, now: datetime, asks: Mapping[UUID, int], policy: Policy, token: UUID) -> list[Claimed]:
    """Lease up to `asks[s]` due deliveries of each subscription `s` (never more), in dispatch order.

    One UPDATE ... RETURNING leases them (a union of one small index range per subscription,
    so the cost follows what is asked for, not the backlog), one SELECT reads the targets.
    Dispatch order: due time, then creation, then write order.
    """
    asks = {sub: n for sub, n in asks.items() if n > 0}
    if not asks:
        return []
    arms = [
        select(DELIVERY.c.id).where(DELIVERY.c.subscription_id == sub, due(now))
        .order_by(DELIVERY.c.next_attempt_at, DELIVERY.c.created_at, DELIVERY.c.seq).limit(n)
        .subquery().select()
        for sub, n in sorted(asks.items())
    ]
    chosen = arms[0] if len(arms) == 1 else union_all(*arms)
    until = now + policy.lease
    # Re-checked on the row itself (another dispatcher may have leased it meanwhile), written so
    # that no planner takes the status index for it: the chosen ids are looked up by key.
    still_due = and_((DELIVERY.c.status + literal("")) == "pending",
                     or_(DELIVERY.c.lease_until.is_(None), DELIVERY.c.lease_until < now))
    stmt = (
        update(DELIVERY).where(DELIVERY.c.id.in_(chosen), still_due)
        .values(lease_until=until, lease_token=token)
        .returning(DELIVERY.c.id, DELIVERY.c.subscription_id, DELIVERY.c.payload, DELIVERY.c.attempts,
                   DELIVERY.c.created_at, DELIVERY.c.next_attempt_at, DELIVERY.c.seq)
    )
    with engine.begin() as conn:
        rows = list(conn.execute(stmt).all())
        if not rows:
            return []
        targets = {
            t.id: t
            for t in conn.execute(select(Subscription.id, Subscription.url, Subscription.secret,
                                         Subscription.previous_secret, Subscription.previous_secret_until).where(
                Subscription.id.in_(sorted({r.subscription_id for r in rows})), Subscription.status == "active"))
        }
    rows.sort(key=lambda r: (r.next_attempt_at, r.created_at, r.seq))
    return [
        Claimed(r.id, r.subscription_id, t.url, t.secret, r.payload, r.attempts, r.created_at, token, until,
                t.previous_secret, t.previous_secret_until)
        for r in rows if (t := targets.get(r.subscription_id)) is not None
    ]


def release(engine: Engine, ids: Sequence[UUID], token: UUID) -> None:
    """Give leased deliveries back (a buffer spilled, or shutting down): due again at once for anyone."""
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(update(DELIVERY).where(DELIVERY.c.id.in_(list(ids)), DELIVERY.c.lease_token == token)
                     .values(lease_until=None, lease_token=None))


def record(engine: Engine, results: Sequence[Result], policy: Policy) -> list[Recorded]:
    """Book a batch of attempt results in one transaction, in bulk: log, successes, retries; then the rare rest."""
    booked: list[Recorded] = []
    with engine.begin() as conn:
        conn.execute(insert(DeliveryAttempt), [
            {"delivery_id": r.delivery.id, "attempt": r.delivery.attempts + 1, "at": r.at,
             "status_code": r.status_code, "error": r.error, "duration_ms": r.duration_ms}
            for r in results
        ])
        ok = [r for r in results if r.ok]
        if ok:
            conn.execute(
                update(DELIVERY).where(DELIVERY.c.id == bindparam("b_id"), DELIVERY.c.status != "succeeded").values(
                    status="succeeded", completed_at=bindparam("b_at"), attempts=bindparam("b_attempts"),
                    lease_until=None, lease_token=None, last_status_code=bindparam("b_code"), last_error=None),
                [{"b_id": r.delivery.id, "b_at": r.at, "b_attempts": r.delivery.attempts + 1,
                  "b_code": r.status_code} for r in ok],
            )
            subs = sorted({r.delivery.subscription_id for r in ok})
            conn.execute(update(Subscription).where(Subscription.id.in_(subs), Subscription.consecutive_failures != 0)
                         .values(consecutive_failures=0))
            booked.extend(Recorded(r, "succeeded") for r in ok)
        retrying: list[tuple[Result, datetime]] = []
        final: list[Result] = []
        for r in results:
            if r.ok:
                continue
            delay = None if r.status_code == GONE else policy.next_delay(r.delivery.attempts + 1, r.retry_after_s)
            if delay is None:
                final.append(r)
            else:
                retrying.append((r, r.at + timedelta(seconds=delay)))
        if retrying:
            held = _still_held(conn, [r.delivery for r, _ in retrying])
            fresh = [(r, when) for r, when in retrying if r.delivery.id in held]
            if fresh:
                conn.execute(
                    update(DELIVERY).where(DELIVERY.c.id == bindparam("b_id"), DELIVERY.c.status == "pending")
                    .values(next_attempt_at=bindparam("b_next"), attempts=bindparam("b_attempts"), lease_until=None,
                            lease_token=None, last_status_code=bindparam("b_code"), last_error=bindparam("b_error")),
                    [{"b_id": r.delivery.id, "b_next": when, "b_attempts": r.delivery.attempts + 1,
                      "b_code": r.status_code, "b_error": r.error} for r, when in fresh],
                )
            booked.extend(Recorded(r, "retrying" if r.delivery.id in held else "stale", when if r.delivery.id in held
                                   else None) for r, when in retrying)
        booked.extend(Recorded(r, _book_final(conn, r, policy)) for r in final)
    return booked


def _still_held(conn: Connection, deliveries: Sequence[Claimed]) -> set[UUID]:
    """Which of these are still pending under the lease they were sent with (locked until commit on PostgreSQL)."""
    query = select(DELIVERY.c.id, DELIVERY.c.lease_token).where(
        DELIVERY.c.id.in_([d.id for d in deliveries]), DELIVERY.c.status == "pending")
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    tokens = {row.id: row.lease_token for row in conn.execute(query)}
    return {d.id for d in deliveries if d.id in tokens and tokens[d.id] == d.lease}


def _held(delivery: Claimed) -> Any:
    """The row is still pending and under the lease the delivery was sent with."""
    token = DELIVERY.c.lease_token.is_(None) if delivery.lease is None else DELIVERY.c.lease_token == delivery.lease
    return and_(DELIVERY.c.id == delivery.id, DELIVERY.c.status == "pending", token)


def _book_final(conn: Connection, result: Result, policy: Policy) -> str:
    """A 410 or an exhausted delivery: fail it (if the lease still holds) and maybe disable the subscription."""
    delivery = result.delivery
    changed = conn.execute(update(DELIVERY).where(_held(delivery)).values(
        status="failed", completed_at=result.at, attempts=delivery.attempts + 1, lease_until=None, lease_token=None,
        last_status_code=result.status_code, last_error=result.error,
    )).rowcount
    if not changed:
        return "stale"
    if result.status_code == GONE:
        disable(conn, delivery.subscription_id, result.at, "the endpoint answered 410 Gone")
        return "gone"
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
        .values(status="cancelled", completed_at=at, lease_until=None, lease_token=None,
                last_error=f"subscription disabled: {reason}")
    )


def active_subscriptions(engine: Engine) -> dict[UUID, tuple[str, str]]:
    """Active subscriptions: id -> (url, secret)."""
    with engine.connect() as conn:
        rows = conn.execute(select(Subscription.id, Subscription.url, Subscription.secret)
                            .where(Subscription.status == "active"))
        return {row.id: (row.url, row.secret) for row in rows}


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

