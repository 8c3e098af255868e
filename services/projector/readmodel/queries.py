"""Reading the read model: the active generation's rows, and as-of folds of stored events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Integer, Row, Select, and_, cast, func, select

from schemas.envelope import Event
from services.domain.fold import Annotation, bounded_figure, effect_key, project, resolve
from services.domain.litigation import case_facts
from services.domain.policy import PolicyStatus, policy_status
from services.domain.state import SubjectState, read_state
from services.projector.readmodel.policies import facts_of
from services.projector.readmodel.store import active_generation, load_events, stored_event
from services.projector.readmodel.tables import (
    AgreementRow,
    CaseRow,
    DeadlineRow,
    PolicyFactRow,
    PolicyRow,
    StatisticRow,
    StoredEvent,
    SubjectSnapshot,
    TransferRow,
)


@dataclass(frozen=True, slots=True)
class Page:
    rows: Sequence[Row[Any]]
    next_after: str | None


def _page(conn: Connection, stmt: Select[Any], key: Any, after: str | None, limit: int) -> Page:
    if after is not None:
        stmt = stmt.where(key > (UUID(after) if key.type.python_type is UUID else after))
    rows = conn.execute(stmt.order_by(key).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(getattr(rows[-1], key.key)) if more and rows else None)


def snapshot(conn: Connection, subject: str, now: datetime) -> SubjectState | None:
    """The state of a subject now: its snapshot, or a fold as of now when that is due (or unreadable)."""
    gen = active_generation(conn)
    row = conn.execute(
        select(SubjectSnapshot.state, SubjectSnapshot.next_effect_at).where(
            SubjectSnapshot.generation == gen, SubjectSnapshot.subject == subject
        )
    ).one_or_none()
    if row is None:
        return None
    state = read_state(row.state) if row.next_effect_at is None or row.next_effect_at > now else None
    return state if state is not None else project(subject, load_events(conn, gen, subject), as_of=now)


def state_as_of(
    conn: Connection, subject: str, *, as_of: datetime | None, known_at: datetime | None, now: datetime
) -> SubjectState | None:
    """The state of a subject as of an effect time (default: now) and as known at a recording time."""
    if as_of is None and known_at is None:
        return snapshot(conn, subject, now)
    events = load_events(conn, active_generation(conn), subject)
    if not events:
        return None
    return project(subject, events, as_of=now if as_of is None else as_of, known_at=known_at)


def list_agreements(conn: Connection, *, status: str | None, after: str | None, limit: int) -> Page:
    gen = active_generation(conn)
    stmt = select(AgreementRow.__table__).where(AgreementRow.generation == gen)
    if status:
        stmt = stmt.where(AgreementRow.status == status)
    return _page(conn, stmt, AgreementRow.id, after, limit)


def subjects_states(conn: Connection, subjects: Sequence[str], now: datetime) -> dict[str, SubjectState]:
    """The states of subjects now (snapshots; a fold as of now for one whose snapshot is due)."""
    gen = active_generation(conn)
    states: dict[str, SubjectState] = {}
    for subject, raw, due in conn.execute(
        select(SubjectSnapshot.subject, SubjectSnapshot.state, SubjectSnapshot.next_effect_at).where(
            SubjectSnapshot.generation == gen, SubjectSnapshot.subject.in_(subjects)
        )
    ):
        state = read_state(raw) if due is None or due > now else None
        states[subject] = state if state is not None else project(subject, load_events(conn, gen, subject), as_of=now)
    return states


def list_cases(conn: Connection, *, status: str | None, affects: str | None, after: str | None,
               limit: int) -> Page:
    gen = active_generation(conn)
    stmt = select(CaseRow.__table__).where(CaseRow.generation == gen)
    if status:
        stmt = stmt.where(CaseRow.status == status)
    page = _page(conn, stmt, CaseRow.id, after, limit)
    if affects:
        page = Page([r for r in page.rows if affects in r.affects], page.next_after)
    return page


def subject_exists(conn: Connection, subject: str) -> bool:
    gen = active_generation(conn)
    return conn.execute(
        select(func.count()).select_from(SubjectSnapshot).where(
            SubjectSnapshot.generation == gen, SubjectSnapshot.subject == subject)
    ).scalar_one() > 0


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    event: Event
    annotation: Annotation
    partition: int
    offset: int


def timeline(conn: Connection, subject: str, *, known_at: datetime | None) -> list[TimelineEntry]:
    """Every event of a subject in effect order, with retractions and corrections applied and shown."""
    gen = active_generation(conn)
    rows = conn.execute(
        select(StoredEvent.body, StoredEvent.partition, StoredEvent.offset).where(
            StoredEvent.generation == gen, StoredEvent.subject == subject)
    ).all()
    positions: dict[UUID, tuple[int, int]] = {}
    events = []
    for body, partition, offset in rows:
        if (event := stored_event(body)) is None:
            continue  # refused by the contract since it was stored: a replay parks it
        positions[event.event_id] = (partition, offset)
        events.append(event)
    resolution = resolve(events, known_at)
    effective = {e.event_id: e for e in resolution.facts}
    shown = [effective.get(e.event_id, e) for e in resolution.events]
    return [
        TimelineEntry(e, resolution.annotations[e.event_id], *positions[e.event_id])
        for e in sorted(shown, key=effect_key)
    ]


def has_amendments(conn: Connection, subject: str) -> bool:
    """Whether any event of the subject retracts or corrects another (else none is amended)."""
    gen = active_generation(conn)
    return conn.execute(
        select(StoredEvent.id).where(
            StoredEvent.generation == gen, StoredEvent.subject == subject,
            StoredEvent.type.in_(("EventRetracted", "EventCorrected"))).limit(1)
    ).first() is not None


def event_by_id(conn: Connection, event_id: UUID) -> tuple[Event, str] | None:
    gen = active_generation(conn)
    row = conn.execute(
        select(StoredEvent.body, StoredEvent.subject).where(
            StoredEvent.generation == gen, StoredEvent.id == event_id)
    ).one_or_none()
    event = stored_event(row[0]) if row else None
    return (event, row[1]) if row and event is not None else None


def deadlines(conn: Connection, *, status: str, subject: str | None, now: datetime,
              after: str | None, limit: int) -> Page:
    gen = active_generation(conn)
    stmt = select(DeadlineRow.__table__).where(DeadlineRow.generation == gen)
    if subject:
        stmt = stmt.where(DeadlineRow.subject == subject)
    if status == "open":
        stmt = stmt.where(and_(DeadlineRow.status == "open", DeadlineRow.due_at > now))
    elif status != "all":
        stmt = stmt.where(DeadlineRow.status == status)
    return _page(conn, stmt, DeadlineRow.id, after, limit)


def transfers(conn: Connection, *, agreement: str | None, group_by: Sequence[str]) -> list[dict[str, Any]]:
    """Transfer counts summed over the requested grouping (month, nationality or both)."""
    gen = active_generation(conn)
    columns = [TransferRow.agreement] + [getattr(TransferRow, g) for g in group_by]
    # SQLite's sum() raises on 64-bit overflow; total() cannot (PostgreSQL sums bigints as numeric).
    add = func.total if conn.dialect.name == "sqlite" else func.sum
    stmt = (
        select(*columns, add(TransferRow.count).label("count"),
               func.max(cast(TransferRow.approximate, Integer)).label("approximate"))
        .where(TransferRow.generation == gen)
        .group_by(*columns)
        .order_by(*columns)
    )
    if agreement:
        stmt = stmt.where(TransferRow.agreement == agreement)
    out = []
    for r in conn.execute(stmt):
        count = int(r._mapping["count"])
        bounded = bounded_figure(count)
        out.append({**{c.key: getattr(r, c.key) for c in columns}, "count": bounded,
                    "approximate": bool(r.approximate) or bounded != count})
    return out


def statistics(conn: Connection, *, metric: str | None, subject: str | None, after: str | None,
               limit: int) -> Page:
    gen = active_generation(conn)
    stmt = select(StatisticRow.__table__).where(StatisticRow.generation == gen)
    if metric:
        stmt = stmt.where(StatisticRow.metric == metric)
    if subject:
        stmt = stmt.where(StatisticRow.subject == subject)
    return _page(conn, stmt, StatisticRow.event_id, after, limit)


# -- policies --------------------------------------------------------------------------------------


def policy_exists(conn: Connection, slug: str) -> bool:
    """Whether any case names the policy."""
    gen = active_generation(conn)
    query = select(PolicyFactRow.case).where(PolicyFactRow.generation == gen, PolicyFactRow.policy == slug).limit(1)
    return conn.execute(query).first() is not None


def policies_now(conn: Connection, slugs: Sequence[str], now: datetime) -> dict[str, PolicyStatus]:
    """Policies as of now, from the facts the cases stored."""
    gen = active_generation(conn)
    return {slug: policy_status(slug, facts, now) for slug, facts in facts_of(conn, gen, slugs).items()}


def policy_as_of(conn: Connection, slug: str, *, as_of: datetime, known_at: datetime | None) -> PolicyStatus:
    """A policy as of a time and as known at a time, from the events of the cases that name it."""
    gen = active_generation(conn)
    cases = list(conn.execute(select(PolicyFactRow.case).where(
        PolicyFactRow.generation == gen, PolicyFactRow.policy == slug).order_by(PolicyFactRow.case)).scalars())
    facts = []
    for case in cases:
        state = project(case, load_events(conn, gen, case), as_of=as_of, known_at=known_at)
        if state.case is not None:
            facts.append(case_facts(case, state.case))
    return policy_status(slug, facts, as_of)


def list_policies(conn: Connection, *, status: str | None, after: str | None, limit: int) -> Page:
    """Policy ids in order, a page at a time (the `policies` table has a row for every policy)."""
    gen = active_generation(conn)
    stmt = select(PolicyRow.id).where(PolicyRow.generation == gen)
    if status:
        stmt = stmt.where(PolicyRow.status == status)
    return _page(conn, stmt, PolicyRow.id, after, limit)
