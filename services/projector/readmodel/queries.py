"""Reading the read model: the active generation's rows, and as-of folds of stored events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Integer, Row, Select, and_, cast, func, select

from schemas.envelope import Event
from services.domain.fold import Annotation, bounded_figure, project, resolve
from services.domain.state import SubjectState
from services.projector.readmodel.store import active_generation, load_events, stored_event, stored_state
from services.projector.readmodel.tables import (
    AgreementRow,
    CaseRow,
    DeadlineRow,
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


def snapshot(conn: Connection, subject: str) -> SubjectState | None:
    """The current folded state of a subject."""
    gen = active_generation(conn)
    raw = conn.execute(
        select(SubjectSnapshot.state).where(
            SubjectSnapshot.generation == gen, SubjectSnapshot.subject == subject
        )
    ).scalar_one_or_none()
    if raw is None:
        return None
    # A snapshot holding what the contract now refuses: fold the events that still stand.
    return stored_state(raw) or project(subject, load_events(conn, gen, subject))


def state_as_of(
    conn: Connection, subject: str, *, as_of: datetime | None, known_at: datetime | None
) -> SubjectState | None:
    """The state of a subject as of a world time and as known at a recording time."""
    if as_of is None and known_at is None:
        return snapshot(conn, subject)
    events = load_events(conn, active_generation(conn), subject)
    if not events:
        return None
    return project(subject, events, as_of=as_of, known_at=known_at)


def list_agreements(conn: Connection, *, status: str | None, after: str | None, limit: int) -> Page:
    gen = active_generation(conn)
    stmt = select(AgreementRow.__table__).where(AgreementRow.generation == gen)
    if status:
        stmt = stmt.where(AgreementRow.status == status)
    return _page(conn, stmt, AgreementRow.id, after, limit)


def subjects_states(conn: Connection, subjects: Sequence[str]) -> dict[str, SubjectState]:
    gen = active_generation(conn)
    return {
        s: stored_state(raw) or project(s, load_events(conn, gen, s))
        for s, raw in conn.execute(
            select(SubjectSnapshot.subject, SubjectSnapshot.state).where(
                SubjectSnapshot.generation == gen, SubjectSnapshot.subject.in_(subjects)
            )
        )
    }


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
    """Every event of a subject in world order, with retractions and corrections applied and shown."""
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
    return [
        TimelineEntry(effective.get(e.event_id, e), resolution.annotations[e.event_id],
                      *positions[e.event_id])
        for e in sorted(resolution.events, key=lambda e: effective.get(e.event_id, e).sort_key)  # type: ignore[union-attr]
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
    elif status == "past":
        stmt = stmt.where(and_(DeadlineRow.status == "open", DeadlineRow.due_at <= now))
    elif status == "closed":
        stmt = stmt.where(DeadlineRow.status == "closed")
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
