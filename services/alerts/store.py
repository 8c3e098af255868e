"""Alert state: applying events and clock ticks in one transaction each, outbox included.

A batch of events commits, together: the events not seen before (by id), the subjects'
states folded as of now, every alert transition the rules call for (policies' too), one
notification row per transition (unique per alert and transition), one outbox row per
notification and matching subscription, the timers the alerts need, and the partitions'
next offsets. Redelivery, restarts and replays from offset 0 therefore find nothing new to
notify. A tick folds again the subjects (and policies) whose scheduled effect has come, then
acts on the timers that are due.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, cast
from uuid import UUID

import orjson
from sqlalchemy import Connection, Engine, Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from schemas.envelope import Event
from schemas.registry import parse_event_json
from services.alerts import policies
from services.alerts.engine import (
    Context,
    Current,
    Desired,
    Transition,
    evaluate,
    evaluate_policy,
    on_time,
    transitions,
)
from services.alerts.outbox import Claimed
from services.alerts.rules import RuleSet
from services.alerts.tables import (
    Alert,
    AlertEvent,
    AlertOffset,
    AlertParked,
    AlertSubject,
    AlertTimer,
    Delivery,
    Notification,
    Subscription,
)
from services.domain.fold import advance, project
from services.domain.policy import PolicyStatus
from services.domain.state import SubjectState, read_state
from services.platform.isolation import Batch, Consumed, Parked
from services.platform.positions import load_positions, save_positions

__all__ = ["AlertStore", "Consumed", "Handoff", "Outcome", "alert_document", "load_alerts", "load_subscriptions"]

log = logging.getLogger(__name__)

NAMESPACE = UUID("5d0c3a51-8a0b-4f55-9d1e-6a3f0f7e2c11")
OUTBOX_CHUNK = 1000
"""Outbox rows are inserted this many at a time: a batch of 500 alerts x 20 subscribers held
10,000 rows (and SQLAlchemy's copies of them) in memory at once, most of the worker's peak RSS."""


@dataclass(slots=True)
class AlertRow:
    """An `alerts` row as plain data."""

    fingerprint: str
    rule: str
    severity: str
    subject: str
    cause: str
    state: str
    summary: str
    details: dict[str, Any]
    occurred_at: datetime
    historical: bool
    episode: int
    fired_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    """A `subscriptions` row as plain data."""

    id: UUID
    url: str
    secret: str
    previous_secret: str | None
    previous_secret_until: datetime | None
    description: str | None
    rules: list[str]
    severities: list[str]
    subjects: list[str]
    status: str
    disabled_reason: str | None
    disabled_at: datetime | None
    consecutive_failures: int
    created_at: datetime


ALERT = cast(Table, Alert.__table__)
SUBSCRIPTION = cast(Table, Subscription.__table__)
TIMER = cast(Table, AlertTimer.__table__)


def load_alerts(conn: Connection, *where: Any) -> list[AlertRow]:
    """Alerts matching the conditions."""
    return [AlertRow(**row._mapping) for row in conn.execute(select(ALERT).where(*where))]


def load_subscriptions(conn: Connection, *where: Any) -> list[SubscriptionRow]:
    """Subscriptions matching the conditions."""
    return [SubscriptionRow(**row._mapping) for row in conn.execute(select(SUBSCRIPTION).where(*where))]


@dataclass(slots=True)
class Handoff:
    """Room per subscription for deliveries the alert transaction leases straight to the dispatcher."""

    token: UUID
    lease_until: datetime
    room: dict[UUID, int]


@dataclass(slots=True)
class Outcome:
    """What one batch or tick changed."""

    new_events: int = 0
    duplicates: int = 0
    fired: list[tuple[str, str]] = field(default_factory=list)
    """(rule, severity) of every alert that started firing."""
    notifications: int = 0
    suppressed: int = 0
    deliveries: int = 0
    parked: int = 0
    handed: list[Claimed] = field(default_factory=list)
    """Deliveries written leased to the dispatcher, in write order: it sends them from memory."""
    spilled: set[UUID] = field(default_factory=set)
    """Subscriptions with deliveries written unleased: the dispatcher claims them from the database."""
    written: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """Outbox rows to insert, a chunk at a time (`OUTBOX_CHUNK`), within the transaction."""


def insert_for(conn: Connection, table: Any) -> Any:
    """An INSERT that takes ON CONFLICT clauses, for the connection's dialect."""
    return pg_insert(table) if conn.dialect.name == "postgresql" else sqlite_insert(table)


def matches(sub: SubscriptionRow, rule: str, severity: str, subject: str, affects: Iterable[str]) -> bool:
    """Whether an alert passes a subscription's filters (an empty filter passes everything)."""
    if sub.rules and rule not in sub.rules:
        return False
    if sub.severities and severity not in sub.severities:
        return False
    return not sub.subjects or subject in sub.subjects or any(a in sub.subjects for a in affects)


def webhook_body(kind: str, at: datetime, data: dict[str, Any]) -> str:
    """The Standard Webhooks body: type, timestamp, data."""
    return orjson.dumps({"type": kind, "timestamp": at.isoformat(), "data": data}).decode()


class AlertStore:
    """Alert state, timers and the outbox behind one database."""

    def __init__(
        self,
        engine: Engine,
        rules: RuleSet,
        *,
        notify_max_age: timedelta = timedelta(days=7),
        late_after: timedelta = timedelta(seconds=60),
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.wall_clock = wall_clock  # outbox rows are due by the wall clock the dispatcher runs on
        self.notify_max_age = notify_max_age
        self.late_after = late_after

    # -- events ------------------------------------------------------------------------------

    def apply(self, batch: Batch | Sequence[Consumed], now: datetime, handoff: Handoff | None = None) -> Outcome:
        """Apply a batch of records: new events, alert transitions, outbox rows, parked records, offsets.

        With a `handoff`, outbox rows within its room are written leased to the dispatcher
        and listed in the outcome, so they are sent without being claimed. An exception from
        the rules or the fold fails the whole transaction: the worker's isolator then finds
        the event that causes it and parks it.
        """
        if not isinstance(batch, Batch):
            batch = Batch(list(batch))
        outcome = Outcome(parked=len(batch.parked))
        with self.engine.begin() as conn:
            new = self._insert_events(conn, batch.consumed, now, outcome)
            if batch.parked:
                _park(conn, batch.parked, now)
            if new:
                by_subject: dict[str, list[Event]] = defaultdict(list)
                for event in new:
                    by_subject[event.subject].append(event)
                subs = _subscriptions(conn)
                states = self._fold(conn, by_subject, now)
                self._judge(conn, states, by_subject, policies.write_facts(conn, states), subs, now, outcome, handoff)
                _insert_deliveries(conn, outcome)
            save_positions(conn, AlertOffset, batch, now, {})
        return outcome

    def _judge(
        self, conn: Connection, states: dict[str, SubjectState], new: dict[str, list[Event]], slugs: Iterable[str],
        subs: list[SubscriptionRow], now: datetime, outcome: Outcome, handoff: Handoff | None = None, *,
        isolate: bool = False,
    ) -> None:
        """Evaluate the rules on folded subjects, then on the policies whose facts or time changed.

        In a batch a failure propagates: the consumer path bisects the batch and parks the record
        that causes it. On the clock (`isolate`) there is no record to park: each subject and policy
        is judged in a savepoint, and one that fails (a rule bug, bad data) is logged and skipped
        with what it queued for the outbox, so the others and the next ticks go on.
        """
        known = frozenset(conn.execute(select(AlertSubject.subject).where(AlertSubject.is_agreement)).scalars())
        jobs: list[tuple[str, Callable[[], None]]] = [
            (subject, partial(self._evaluate, conn, state, new.get(subject, []), known, subs, now, outcome, handoff))
            for subject, state in states.items()
        ]
        jobs += [(f"policy {slug}", partial(self._judge_policy, conn, slug, subs, now, outcome, handoff))
                 for slug in policies.named(slugs)]
        for name, job in jobs:
            if not isolate:
                job()
            else:
                handed, rows = len(outcome.handed), len(outcome.rows)
                try:
                    with conn.begin_nested():
                        job()
                except Exception:
                    log.exception("evaluating the rules for %s failed; its alerts are skipped", name)
                    del outcome.handed[handed:], outcome.rows[rows:]  # rolled back with the savepoint
            if len(outcome.rows) >= OUTBOX_CHUNK:
                _insert_deliveries(conn, outcome)

    def _judge_policy(self, conn: Connection, slug: str, subs: list[SubscriptionRow], now: datetime,
                      outcome: Outcome, handoff: Handoff | None) -> None:
        self._evaluate_policy(conn, slug, policies.recompute(conn, slug, now), subs, now, outcome, handoff)

    def _insert_events(
        self, conn: Connection, batch: Sequence[Consumed], now: datetime, outcome: Outcome
    ) -> list[Event]:
        unique: dict[UUID, Event] = {}
        for item in sorted(batch, key=lambda c: c.event.event_id):  # id order: concurrent writers never deadlock
            unique.setdefault(item.event.event_id, item.event)
        decoded = len(batch)
        if not unique:
            outcome.duplicates = decoded
            return []
        stmt = insert_for(conn, AlertEvent.__table__).on_conflict_do_nothing(index_elements=["id"]).returning(
            AlertEvent.id
        )
        rows = [
            {"id": e.event_id, "subject": e.subject, "type": e.type,
             "body": e.model_dump_json(exclude_none=True), "seen_at": now}
            for e in unique.values()
        ]
        inserted = {row[0] for row in conn.execute(stmt, rows)}
        outcome.new_events = len(inserted)
        outcome.duplicates = decoded - len(inserted)
        return [e for e in unique.values() if e.event_id in inserted]

    def _fold(self, conn: Connection, by_subject: dict[str, list[Event]], now: datetime) -> dict[str, SubjectState]:
        """Fold each subject as of now, from its snapshot when the new events come after it."""
        subjects = sorted(by_subject)
        snapshots = _lock_subjects(conn, subjects, now)
        states: dict[str, SubjectState] = {}
        for subject in subjects:
            raw = snapshots.get(subject)
            previous = read_state(raw) if raw else None  # '' is another writer's placeholder
            state = None
            if previous is not None:
                state = advance(previous, by_subject[subject], as_of=now, in_place=True)
            if state is None:
                bodies = conn.execute(select(AlertEvent.body).where(AlertEvent.subject == subject)).scalars()
                state = project(subject, [parse_event_json(body) for body in bodies], as_of=now)
            states[subject] = state
        stmt = insert_for(conn, AlertSubject.__table__)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["subject"],
                set_={"state": stmt.excluded.state, "is_agreement": stmt.excluded.is_agreement,
                      "updated_at": stmt.excluded.updated_at, "next_effect_at": stmt.excluded.next_effect_at},
            ),
            [{"subject": s, "state": st.model_dump_json(), "is_agreement": st.agreement is not None,
              "updated_at": now, "next_effect_at": st.next_effect_at} for s, st in states.items()],
        )
        return states

    def _evaluate(
        self, conn: Connection, state: SubjectState, new: list[Event], known: frozenset[str],
        subs: list[SubscriptionRow], now: datetime, outcome: Outcome, handoff: Handoff | None,
    ) -> None:
        existing = {row.fingerprint: row for row in load_alerts(conn, Alert.subject == state.subject)}
        firing: dict[str, set[str]] = defaultdict(set)
        for row in existing.values():
            if row.state == "firing":
                firing[row.rule].add(row.cause)
        ctx = Context(
            now=now, known_agreements=known | ({state.subject} if state.agreement else set()),
            notify_max_age=self.notify_max_age,
            firing={rule: frozenset(causes) for rule, causes in firing.items()},
        )
        self._apply_desired(conn, existing, evaluate(self.rules, state, new, ctx), subs, now, outcome, handoff)

    def _evaluate_policy(
        self, conn: Connection, slug: str, status: PolicyStatus | None, subs: list[SubscriptionRow], now: datetime,
        outcome: Outcome, handoff: Handoff | None,
    ) -> None:
        """The policy rules on a policy's status now (none left: its alerts resolve as retracted)."""
        kinds = {r.id for r in self.rules.rules if r.kind == "policy-status-changed"}
        existing = {row.fingerprint: row for row in load_alerts(conn, Alert.subject == slug, Alert.rule.in_(kinds))}
        firing: dict[str, set[str]] = defaultdict(set)
        for row in existing.values():
            if row.state == "firing":
                firing[row.rule].add(row.cause)
        ctx = Context(now=now, notify_max_age=self.notify_max_age,
                      firing={rule: frozenset(causes) for rule, causes in firing.items()})
        if status is None:
            desired = [Desired(rule, slug, cause, "resolved", f"{rule.id}: retracted", now, historical=False,
                               resolution="retracted")
                       for rule in self.rules.enabled if rule.id in firing for cause in sorted(firing[rule.id])]
        else:
            desired = evaluate_policy(self.rules, status, ctx)
        self._apply_desired(conn, existing, desired, subs, now, outcome, handoff)

    def _apply_desired(
        self, conn: Connection, existing: dict[str, AlertRow], desired_alerts: Iterable[Desired],
        subs: list[SubscriptionRow], now: datetime, outcome: Outcome, handoff: Handoff | None,
    ) -> None:
        """Bring each alert to what the facts call for: fire, fire again, resolve; notify; keep its timers."""
        for desired in desired_alerts:
            found = existing.get(desired.fingerprint)
            steps = transitions(_current(found) if found is not None else None, desired, now)
            if found is None:
                row = _insert_alert(conn, desired, now)
                existing[row.fingerprint] = row
                outcome.fired.append((desired.rule.id, desired.rule.severity))
            else:
                row = found
                if row.state == "resolved" and steps:  # its cause returned: a new episode
                    row.episode += 1
                    row.state, row.fired_at, row.resolved_at, row.resolution = "firing", now, None, None
                    row.historical, row.summary, row.details = desired.historical, desired.summary, desired.details
                    conn.execute(update(Alert).where(Alert.fingerprint == row.fingerprint).values(
                        state="firing", episode=row.episode, fired_at=now, resolved_at=None, resolution=None,
                        historical=row.historical, summary=row.summary, details=row.details, updated_at=now))
                    outcome.fired.append((desired.rule.id, desired.rule.severity))
                elif desired.state == "firing" and (row.summary, row.details) != (desired.summary, desired.details):
                    conn.execute(update(Alert).where(Alert.fingerprint == row.fingerprint).values(
                        summary=desired.summary, details=desired.details, updated_at=now))
                    row.summary, row.details = desired.summary, desired.details
            rearm = found is not None and bool(steps) and steps[0].state == "firing"
            for step in steps:
                self._record(conn, row, step, now, subs, outcome, handoff)
            if row.state == "firing":
                self._schedule(conn, row.fingerprint, desired, now, rearm=rearm)

    def _schedule(self, conn: Connection, fp: str, desired: Desired, now: datetime, *, rearm: bool = False) -> None:
        """Create the alert's timers; move pending ones whose time changed (a corrected deadline).

        `rearm` (the alert fires again): every stage is set anew, pending if still ahead.
        """
        if not desired.timers:
            return
        have = {
            t.stage: t
            for t in conn.execute(select(AlertTimer.stage, AlertTimer.status, AlertTimer.fire_at)
                                  .where(AlertTimer.fingerprint == fp))
        }
        fresh = []
        for stage, when in desired.timers:
            timer = have.get(stage)
            ahead = when > now
            if timer is None:
                # A stage already past when the alert is first seen is recorded, never sent.
                fresh.append({"fingerprint": fp, "stage": stage, "fire_at": when,
                              "status": "pending" if ahead else "skipped", "done_at": None if ahead else now})
            elif rearm or (timer.status == "pending" and stage != "expire" and timer.fire_at != when):
                conn.execute(update(AlertTimer).where(AlertTimer.fingerprint == fp, AlertTimer.stage == stage)
                             .values(fire_at=when, status="pending" if ahead else "skipped",
                                     done_at=None if ahead else now))
        if fresh:
            conn.execute(TIMER.insert(), fresh)

    def _record(
        self, conn: Connection, row: AlertRow, step: Transition, now: datetime,
        subs: list[SubscriptionRow], outcome: Outcome, handoff: Handoff | None = None,
    ) -> None:
        """One transition: alert state, a notification (once), outbox rows for the subscribers."""
        if step.state == "resolved" and row.state != "resolved":
            conn.execute(update(Alert).where(Alert.fingerprint == row.fingerprint).values(
                state="resolved", resolved_at=now, resolution=step.reason, updated_at=now))
            conn.execute(update(AlertTimer).where(AlertTimer.fingerprint == row.fingerprint,
                                                  AlertTimer.status == "pending")
                         .values(status="cancelled", done_at=now))
            row.state, row.resolved_at, row.resolution = "resolved", now, step.reason
        base = step.name.split("#", 1)[0]
        data = alert_document(row) | {
            "transition": step.name, "late": step.late,
            "reminder": base.removeprefix("reminder:") if base.startswith("reminder:") else None,
        }
        note_id = uuid.uuid5(NAMESPACE, f"{row.fingerprint}|{step.name}")
        payload = webhook_body(step.webhook_type, now, data)
        inserted = conn.execute(
            insert_for(conn, Notification.__table__).on_conflict_do_nothing().returning(Notification.id),
            {"id": note_id, "fingerprint": row.fingerprint, "transition": step.name, "type": step.webhook_type,
             "created_at": now, "late": step.late, "suppressed": step.suppressed, "payload": payload},
        ).first()
        if inserted is None:
            return
        outcome.notifications += 1
        if step.suppressed is not None:
            outcome.suppressed += 1
            return
        affects = row.details.get("affects") or ([row.details["agreement"]] if row.details.get("agreement") else [])
        sent_at = self.wall_clock() if self.wall_clock is not None else now  # the dispatcher's clock
        for sub in subs:
            if not matches(sub, row.rule, row.severity, row.subject, affects):
                continue
            delivery_id = uuid.uuid5(note_id, str(sub.id))
            leased = handoff is not None and handoff.room.get(sub.id, 0) > 0
            if handoff is not None and leased:
                handoff.room[sub.id] -= 1
                outcome.handed.append(Claimed(delivery_id, sub.id, sub.url, sub.secret, payload, 0, sent_at,
                                              handoff.token, handoff.lease_until, sub.previous_secret,
                                              sub.previous_secret_until))
            else:
                outcome.spilled.add(sub.id)
            outcome.rows.append({
                "id": delivery_id, "subscription_id": sub.id, "notification_id": note_id,
                "type": step.webhook_type, "payload": payload, "status": "pending", "attempts": 0,
                "next_attempt_at": sent_at, "created_at": sent_at, "seq": outcome.written,
                "lease_until": handoff.lease_until if leased and handoff else None,
                "lease_token": handoff.token if leased and handoff else None,
            })
            outcome.written += 1
            outcome.deliveries += 1

    # -- the clock ---------------------------------------------------------------------------

    def tick(self, now: datetime, *, limit: int = 1000) -> Outcome:
        """Act on the timers that are due, then fold again what a scheduled effect changed (no event needed).

        Timers first: a deadline's own reminder at its time is sent before the fold that finds it met.
        """
        outcome = Outcome()
        with self.engine.begin() as conn:
            self._act_on_timers(conn, now, limit, outcome)
            self._refresh_due(conn, now, outcome)
            _insert_deliveries(conn, outcome)
        return outcome

    def _act_on_timers(self, conn: Connection, now: datetime, limit: int, outcome: Outcome) -> None:
        query = (select(AlertTimer.fingerprint, AlertTimer.stage, AlertTimer.fire_at)
                 .where(AlertTimer.status == "pending", AlertTimer.fire_at <= now)
                 .order_by(AlertTimer.fire_at).limit(limit))
        due = conn.execute(query).all()
        if not due:
            return
        if conn.dialect.name == "postgresql":
            # Another worker may tick or fold the same alerts: lock their subjects (in the
            # order every writer takes them), then take the timers nobody else holds.
            subjects = conn.execute(select(Alert.subject).distinct()
                                    .where(Alert.fingerprint.in_({fp for fp, _, _ in due}))).scalars().all()
            _lock_subjects(conn, sorted(subjects), now, create=False)
            due = conn.execute(query.with_for_update(of=AlertTimer.__table__, skip_locked=True)).all()
        by_alert: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
        for fp, stage, when in due:
            by_alert[fp].append((stage, when))
        alerts = {row.fingerprint: row for row in load_alerts(conn, Alert.fingerprint.in_(list(by_alert)))}
        subs = _subscriptions(conn)
        for fp, stages in by_alert.items():
            row = alerts[fp]
            steps, skipped = on_time(_current(row), stages, now, self.late_after)
            fired = {s for s, _ in stages} - set(skipped)
            for status, names in (("done", fired), ("skipped", set(skipped))):
                if names:
                    conn.execute(update(AlertTimer).where(AlertTimer.fingerprint == fp,
                                                          AlertTimer.stage.in_(sorted(names)))
                                 .values(status=status, done_at=now))
            for step in steps:
                self._record(conn, row, step, now, subs, outcome)

    def _refresh_due(self, conn: Connection, now: datetime, outcome: Outcome) -> None:
        """Subjects whose next effect has come, folded as of now and judged; then the policies due."""
        query = select(AlertSubject.subject).where(AlertSubject.next_effect_at <= now).order_by(
            AlertSubject.next_effect_at).limit(200)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        subjects = list(conn.execute(query).scalars())
        if not subjects and not policies.due(conn, now, limit=1):
            return
        subs = _subscriptions(conn)
        states: dict[str, SubjectState] = {}
        for subject in subjects:
            bodies = conn.execute(select(AlertEvent.body).where(AlertEvent.subject == subject)).scalars()
            states[subject] = project(subject, [parse_event_json(body) for body in bodies], as_of=now)
        if states:
            stmt = insert_for(conn, AlertSubject.__table__)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["subject"],
                set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at,
                      "next_effect_at": stmt.excluded.next_effect_at}),
                [{"subject": s, "state": st.model_dump_json(), "is_agreement": st.agreement is not None,
                  "updated_at": now, "next_effect_at": st.next_effect_at} for s, st in states.items()])
        slugs = policies.write_facts(conn, states) | set(policies.due(conn, now))
        self._judge(conn, states, {}, slugs, subs, now, outcome, isolate=True)

    def next_timer(self) -> datetime | None:
        """When the next pending timer is due."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.min(AlertTimer.fire_at)).where(AlertTimer.status == "pending")).scalar()

    def positions(self, topic: str) -> dict[int, int]:
        """The next offset per partition, as committed with the alert state."""
        with self.engine.connect() as conn:
            return load_positions(conn, AlertOffset, topic, {})

    def firing_counts(self) -> dict[tuple[str, str], int]:
        """Firing alerts per (rule, severity)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Alert.rule, Alert.severity, func.count()).where(Alert.state == "firing")
                .group_by(Alert.rule, Alert.severity)
            )
            return {(rule, severity): int(n) for rule, severity, n in rows}


def alert_document(row: AlertRow) -> dict[str, Any]:
    """An alert as the API and webhooks show it."""
    return {
        "id": row.fingerprint, "rule": row.rule, "severity": row.severity, "subject": row.subject,
        "cause": row.cause, "state": row.state, "summary": row.summary,
        "occurred_at": row.occurred_at.isoformat(), "fired_at": row.fired_at.isoformat(),
        "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
        "resolution": row.resolution, "historical": row.historical, "episode": row.episode,
        "details": row.details,
    }


def _current(row: AlertRow) -> Current:
    return Current(row.fingerprint, row.rule, "resolved" if row.state == "resolved" else "firing",
                   row.fired_at, row.historical, row.details, row.episode)


def _insert_alert(conn: Connection, d: Desired, now: datetime) -> AlertRow:
    values: dict[str, Any] = {
        "fingerprint": d.fingerprint, "rule": d.rule.id, "severity": d.rule.severity, "subject": d.subject,
        "cause": d.cause, "state": "firing", "summary": d.summary, "details": d.details,
        "occurred_at": d.at, "historical": d.historical, "episode": 1, "fired_at": now, "resolved_at": None,
        "resolution": None, "updated_at": now,
    }
    conn.execute(ALERT.insert(), values)
    return AlertRow(**values)


def _insert_deliveries(conn: Connection, outcome: Outcome) -> None:
    """The outbox rows gathered so far in one statement (new notifications only, so new ids)."""
    if outcome.rows:
        conn.execute(insert_for(conn, Delivery.__table__).on_conflict_do_nothing(), outcome.rows)
        outcome.rows = []


def _subscriptions(conn: Connection) -> list[SubscriptionRow]:
    return load_subscriptions(conn, Subscription.status == "active")


def _park(conn: Connection, parked: Sequence[Parked], now: datetime) -> None:
    """Record parked records (their events stay out of the alerts' subject histories)."""
    conn.execute(
        insert_for(conn, AlertParked.__table__).on_conflict_do_nothing(),
        [{"topic": p.topic, "partition": p.partition, "offset": p.offset, "event_id": p.event_id,
          "subject": p.subject[:200] if p.subject else None, "type": p.type[:64] if p.type else None,
          "kind": p.kind, "error": p.error[:200], "reason": p.reason, "parked_at": now} for p in parked],
    )


def _lock_subjects(conn: Connection, subjects: Sequence[str], now: datetime, *, create: bool = True) -> dict[str, str]:
    """The stored states of `subjects` ('' for none); on PostgreSQL their rows stay locked until commit.

    Another alerts worker may apply events of the same subjects (during a rebalance, or
    after the partitions grew): the rows are locked in subject order, a placeholder first
    inserted for a subject without one (`create`), so the fold starts from the last
    committed state and the alerts are evaluated by one worker at a time.
    """
    query = select(AlertSubject.subject, AlertSubject.state).where(AlertSubject.subject.in_(subjects))
    if conn.dialect.name == "postgresql":
        if create and subjects:
            conn.execute(insert_for(conn, AlertSubject.__table__).on_conflict_do_nothing(),
                         [{"subject": s, "state": "", "is_agreement": False, "updated_at": now} for s in subjects])
        query = query.order_by(AlertSubject.subject).with_for_update()
    return dict(conn.execute(query).all())


def utcnow() -> datetime:
    """The wall clock (only the edges call it; the core takes `now` as an argument)."""
    return datetime.now(UTC)

