"""Applying batches of consumed events to the read model, idempotently, in one transaction.

Each batch commits, together: the events not seen before (keyed by id), the re-folded
state and rows of every subject they touch, and the next offset of every partition the
batch came from. Redelivery after a crash or rebalance is therefore a no-op.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Connection, Engine, Table, delete, func, select, update

from schemas.envelope import Event, instant
from schemas.events import StatisticReported
from schemas.registry import parse_event_json
from services.domain.fold import advance, fold, resolve
from services.domain.state import SubjectState
from services.projector.readmodel.tables import (
    AgreementRow,
    CaseRow,
    ConsumerOffset,
    DeadlineRow,
    ProjectionGeneration,
    StatisticRow,
    StoredEvent,
    SubjectSnapshot,
    TransferRow,
)


@dataclass(frozen=True, slots=True)
class Consumed:
    """One record taken from the topic: its position and, if it decoded, its event."""

    topic: str
    partition: int
    offset: int
    event: Event | None
    value: bytes | None = None


@dataclass(slots=True)
class Applied:
    """What a batch changed."""

    new_events: int = 0
    duplicates: int = 0
    refolds: int = 0
    subjects: set[str] = field(default_factory=set)
    newest_recorded_at: datetime | None = None


def upsert(conn: Connection, table: Any) -> Any:
    """An INSERT that can take ON CONFLICT clauses, for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _greatest(conn: Connection, a: Any, b: Any) -> Any:
    return func.greatest(a, b) if conn.dialect.name == "postgresql" else func.max(a, b)


def active_generation(conn: Connection, *, lock: bool = False) -> int:
    """The generation queries read (1 until the first rebuild swaps).

    A writer passes `lock=True`: on PostgreSQL it holds a shared lock on the row until
    its transaction ends, so `swap` (which takes it exclusively) cannot slip between
    the writer reading the generation and committing into it. SQLite's writers are
    serialised by BEGIN IMMEDIATE already.
    """
    query = select(ProjectionGeneration.active).where(ProjectionGeneration.id == 1)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    active = conn.execute(query).scalar_one_or_none()
    return 1 if active is None else active


def load_events(conn: Connection, generation: int, subject: str) -> list[Event]:
    """Every stored event of a subject."""
    bodies = conn.execute(
        select(StoredEvent.body).where(
            StoredEvent.generation == generation, StoredEvent.subject == subject
        )
    ).scalars()
    return [parse_event_json(body) for body in bodies]


class ReadModelStore:
    """Writes the read model; one writer per generation at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def apply(self, batch: Sequence[Consumed], *, generation: int | None = None) -> Applied:
        """Apply a batch in one transaction (events, subject states, rows, offsets)."""
        applied = Applied()
        with self.engine.begin() as conn:
            gen = active_generation(conn, lock=True) if generation is None else generation
            events = self._insert_new(conn, gen, batch, applied)
            by_subject: dict[str, list[Event]] = defaultdict(list)
            for event in events:
                by_subject[event.subject].append(event)
            if by_subject:
                self._refold(conn, gen, by_subject, applied)
            self._save_offsets(conn, gen, batch)
        return applied

    def _insert_new(
        self, conn: Connection, gen: int, batch: Sequence[Consumed], applied: Applied
    ) -> list[Event]:
        unique: dict[UUID, Consumed] = {}
        for item in batch:
            if item.event is not None:
                unique.setdefault(item.event.event_id, item)
        applied.duplicates = sum(1 for item in batch if item.event is not None) - len(unique)
        if not unique:
            return []
        rows = [_event_row(gen, item) for item in unique.values()]
        stmt = (
            upsert(conn, StoredEvent.__table__)
            .on_conflict_do_nothing(index_elements=["generation", "id"])
            .returning(StoredEvent.id)
        )
        inserted = {row[0] for row in conn.execute(stmt, rows)}
        applied.duplicates += len(unique) - len(inserted)
        new = [item.event for item in unique.values() if item.event and item.event.event_id in inserted]
        applied.new_events = len(new)
        recorded = [e.recorded_at for e in new if e.recorded_at is not None]
        applied.newest_recorded_at = max(recorded, default=None)
        return new

    def _refold(
        self, conn: Connection, gen: int, by_subject: dict[str, list[Event]], applied: Applied
    ) -> None:
        subjects = sorted(by_subject)
        snapshots = {
            subject: SubjectState.model_validate_json(state)
            for subject, state in conn.execute(
                select(SubjectSnapshot.subject, SubjectSnapshot.state).where(
                    SubjectSnapshot.generation == gen, SubjectSnapshot.subject.in_(subjects)
                )
            )
        }
        states: dict[str, SubjectState] = {}
        statistics: list[dict[str, Any]] = []
        refolded: list[str] = []
        for subject in subjects:
            new_events = by_subject[subject]
            previous = snapshots.get(subject)
            state = advance(previous, new_events, in_place=True) if previous is not None else None
            if state is None:
                everything = new_events if previous is None else load_events(conn, gen, subject)
                resolution = resolve(everything)
                state = fold(subject, resolution)
                refolded.append(subject)
                statistics.extend(_statistic_row(gen, e) for e in resolution.facts
                                  if isinstance(e, StatisticReported))
            else:
                statistics.extend(_statistic_row(gen, e) for e in new_events
                                  if isinstance(e, StatisticReported))
            states[subject] = state
        applied.refolds = len(refolded)
        applied.subjects.update(subjects)
        if refolded:
            conn.execute(delete(StatisticRow).where(
                StatisticRow.generation == gen, StatisticRow.subject.in_(refolded)))
        if statistics:
            conn.execute(upsert(conn, StatisticRow.__table__)
                         .on_conflict_do_nothing(index_elements=["generation", "event_id"]),
                         statistics)
        self._write_rows(conn, gen, states)

    def _write_rows(self, conn: Connection, gen: int, states: dict[str, SubjectState]) -> None:
        subjects = list(states)
        now = datetime.now(UTC)
        for table, column in (
            (AgreementRow, AgreementRow.id), (CaseRow, CaseRow.id),
            (DeadlineRow, DeadlineRow.subject), (TransferRow, TransferRow.agreement),
        ):
            conn.execute(delete(table).where(table.generation == gen, column.in_(subjects)))
        agreements: list[dict[str, Any]] = []
        cases: list[dict[str, Any]] = []
        deadlines: list[dict[str, Any]] = []
        transfers: list[dict[str, Any]] = []
        for state in states.values():
            if state.agreement is not None:
                agreements.append(_agreement_row(gen, state))
                transfers.extend(_transfer_rows(gen, state))
            if state.case is not None:
                cases.append(_case_row(gen, state))
            deadlines.extend(_deadline_row(gen, d) for d in _unique_deadlines(state))
        for table, rows in ((AgreementRow, agreements), (CaseRow, cases),
                            (DeadlineRow, deadlines), (TransferRow, transfers)):
            if rows:
                conn.execute(cast(Table, table.__table__).insert(), rows)
        snapshot = upsert(conn, SubjectSnapshot.__table__)
        conn.execute(
            snapshot.on_conflict_do_update(
                index_elements=["generation", "subject"],
                set_={"state": snapshot.excluded.state, "event_count": snapshot.excluded.event_count,
                      "updated_at": snapshot.excluded.updated_at},
            ),
            [
                {"generation": gen, "subject": s, "state": st.model_dump_json(),
                 "event_count": st.event_count, "updated_at": now}
                for s, st in states.items()
            ],
        )

    def _save_offsets(self, conn: Connection, gen: int, batch: Sequence[Consumed]) -> None:
        positions: dict[tuple[str, int], int] = {}
        for item in batch:
            key = (item.topic, item.partition)
            positions[key] = max(positions.get(key, -1), item.offset + 1)
        if not positions:
            return
        now = datetime.now(UTC)
        stmt = upsert(conn, ConsumerOffset.__table__)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["generation", "topic", "partition"],
                set_={
                    "next_offset": _greatest(conn, ConsumerOffset.next_offset, stmt.excluded.next_offset),
                    "updated_at": stmt.excluded.updated_at,
                },
            ),
            [
                {"generation": gen, "topic": t, "partition": p, "next_offset": o, "updated_at": now}
                for (t, p), o in positions.items()
            ],
        )

    def positions(self, topic: str, *, generation: int | None = None) -> dict[int, int]:
        """The next offset to read per partition, as committed with the read model."""
        with self.engine.begin() as conn:
            gen = active_generation(conn) if generation is None else generation
            rows = conn.execute(
                select(ConsumerOffset.partition, ConsumerOffset.next_offset).where(
                    ConsumerOffset.generation == gen, ConsumerOffset.topic == topic
                )
            )
            return {int(row[0]): int(row[1]) for row in rows}

    def start_generation(self) -> int:
        """Reserve a fresh generation to rebuild into, clearing leftovers of an abandoned one."""
        with self.engine.begin() as conn:
            active = active_generation(conn)
            highest = max(
                [active] + [g for g in conn.execute(select(func.max(ConsumerOffset.generation))).scalars() if g]
            )
            building = highest + 1
            _clear(conn, lambda table: table.c.generation >= building)
            conn.execute(update(ProjectionGeneration).where(ProjectionGeneration.id == 1)
                         .values(building=building))
            return building

    def swap(self, building: int, topic: str) -> bool:
        """Make `building` the active generation if it is at least as far as the active one."""
        with self.engine.begin() as conn:
            active = conn.execute(
                select(ProjectionGeneration.active).where(ProjectionGeneration.id == 1).with_for_update()
            ).scalar_one()
            live = self._positions(conn, active, topic)
            rebuilt = self._positions(conn, building, topic)
            if any(rebuilt.get(p, 0) < o for p, o in live.items()):
                return False
            conn.execute(update(ProjectionGeneration).where(ProjectionGeneration.id == 1)
                         .values(active=building, building=None, swapped_at=datetime.now(UTC)))
            return True

    def drop_generations_below(self, generation: int) -> None:
        """Delete the rows of generations older than `generation` (after a swap)."""
        with self.engine.begin() as conn:
            _clear(conn, lambda table: table.c.generation < generation)

    @staticmethod
    def _positions(conn: Connection, gen: int, topic: str) -> dict[int, int]:
        rows = conn.execute(
            select(ConsumerOffset.partition, ConsumerOffset.next_offset).where(
                ConsumerOffset.generation == gen, ConsumerOffset.topic == topic
            )
        )
        return {int(row[0]): int(row[1]) for row in rows}


def _clear(conn: Connection, where: Any) -> None:
    for table in (StoredEvent, SubjectSnapshot, AgreementRow, CaseRow, DeadlineRow, TransferRow,
                  StatisticRow, ConsumerOffset):
        t = cast(Table, table.__table__)
        conn.execute(delete(t).where(where(t)))


def _event_row(gen: int, item: Consumed) -> dict[str, Any]:
    event = item.event
    assert event is not None
    assert event.recorded_at is not None
    body = item.value.decode() if item.value else event.model_dump_json(exclude_none=True)
    return {
        "generation": gen, "id": event.event_id, "subject": event.subject, "type": event.type,
        "occurred_at": instant(event.occurred_at), "recorded_at": event.recorded_at,
        "confidence": event.confidence, "body": body, "partition": item.partition,
        "offset": item.offset,
    }


def _at(moment: Any) -> datetime | None:
    return instant(moment) if moment is not None else None


def _agreement_row(gen: int, state: SubjectState) -> dict[str, Any]:
    a = state.agreement
    assert a is not None
    partners = [p for p in a.parties if p != "US"]
    return {
        "generation": gen, "id": state.subject, "status": a.status,
        "status_since": _at(a.status_since), "confidence": a.confidence, "title": a.title,
        "kind": a.kind, "parties": a.parties, "partner": partners[0] if len(partners) == 1 else None,
        "signed_on": _at(a.signed_on), "in_force_on": _at(a.in_force_on),
        "suspended_on": _at(a.suspended_on), "terminated_on": _at(a.terminated_on),
        "excluded_nationalities": a.excluded_nationalities, "transfers_total": a.transfers_total,
        "transfers_approximate": a.transfers_approximate, "transfer_target": a.transfer_target,
        "transfer_target_by": _at(a.transfer_target_by), "last_event_at": _at(state.last_event_at),
        "last_event_type": state.last_event_type, "event_count": state.event_count,
    }


def _transfer_rows(gen: int, state: SubjectState) -> Iterable[dict[str, Any]]:
    assert state.agreement is not None
    for month, buckets in state.agreement.months.items():
        for nationality, bucket in buckets.items():
            yield {"generation": gen, "agreement": state.subject, "month": month,
                   "nationality": nationality, "count": bucket.count,
                   "approximate": bucket.approximate}


def _case_row(gen: int, state: SubjectState) -> dict[str, Any]:
    c = state.case
    assert c is not None
    return {
        "generation": gen, "id": state.subject, "title": c.title, "court": c.court,
        "status": c.status, "status_since": _at(c.status_since), "affects": c.affects,
        "rulings": len(c.rulings), "latest_outcome": c.rulings[-1].outcome if c.rulings else None,
        "pending_stay_requests": len(c.pending_stays), "last_event_at": _at(state.last_event_at),
    }


def _unique_deadlines(state: SubjectState) -> Iterable[Any]:
    seen: set[str] = set()
    for deadline in state.deadlines:
        if deadline.id not in seen:
            seen.add(deadline.id)
            yield deadline


def _deadline_row(gen: int, d: Any) -> dict[str, Any]:
    return {
        "generation": gen, "id": d.id, "subject": d.subject, "due_at": d.due_instant,
        "description": d.description, "kind": d.kind, "origin": d.origin, "event_id": d.event_id,
        "affects": d.affects, "confidence": d.confidence, "status": d.status,
        "closed_by": d.closed_by, "closed_reason": d.closed_reason,
    }


def _statistic_row(gen: int, event: StatisticReported) -> dict[str, Any]:
    d = event.data
    return {
        "generation": gen, "event_id": event.event_id, "subject": event.subject,
        "metric": d.metric, "value": d.value, "unit": d.unit, "approximate": d.approximate,
        "period_start": _at(d.period_start), "period_end": _at(d.period_end), "region": d.region,
        "occurred_at": instant(event.occurred_at), "confidence": event.confidence,
    }
