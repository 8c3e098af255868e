"""Applying batches of consumed events to the read model, idempotently, in one transaction.

Each batch commits, together: the events not seen before (keyed by id), the re-folded
state and rows of every subject they touch, and the next offset of every partition the
batch came from. Redelivery after a crash or rebalance is therefore a no-op.
"""

from __future__ import annotations

import zlib
from bisect import bisect_right
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from operator import itemgetter
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Connection, Engine, Table, and_, bindparam, delete, func, select, update

from schemas.envelope import Event, instant
from schemas.events import StatisticReported
from schemas.registry import InvalidEvent, parse_event_json
from services.domain.fold import advance, effect_key, fold, fold_pairs, is_meta, resolve, settle
from services.domain.state import SortKey, SubjectState, read_state
from services.platform.db import dialect_insert
from services.platform.isolation import Batch, Consumed, Parked, Sink
from services.platform.positions import load_positions, save_positions
from services.projector.readmodel import policies
from services.projector.readmodel.tables import (
    AgreementRow,
    CaseRow,
    ConsumerOffset,
    DeadlineRow,
    ParkedEvent,
    PolicyFactRow,
    PolicyRow,
    ProjectionGeneration,
    StatisticRow,
    StoredEvent,
    SubjectSnapshot,
    TransferRow,
)

__all__ = ["Applied", "Consumed", "GenerationSink", "ReadModelStore", "active_generation", "load_events"]

PLACEHOLDER_COUNT = -1
"""`event_count` of a subject row inserted only to be locked; replaced in the same transaction."""


@dataclass(slots=True)
class Applied:
    """What a batch changed."""

    new_events: int = 0
    duplicates: int = 0
    refolds: int = 0
    subjects: set[str] = field(default_factory=set)
    newest_recorded_at: datetime | None = None
    parked: int = 0


SubjectRows = tuple[dict[tuple[Any, ...], dict[str, Any]], ...]
"""A subject's rows in agreements, cases, deadlines, transfers and policy facts (`_ROW_TABLES` order), by key."""
WrittenRows = tuple[dict[tuple[Any, ...], tuple[Any, ...]], ...]
"""The same as written, each row as the tuple of its values (a third of a dict's memory)."""

_ROW_TABLES: tuple[tuple[Any, Any], ...] = (
    (AgreementRow, AgreementRow.id), (CaseRow, CaseRow.id),
    (DeadlineRow, DeadlineRow.subject), (TransferRow, TransferRow.agreement), (PolicyFactRow, PolicyFactRow.case),
)
_NO_ROWS: WrittenRows = ({}, {}, {}, {}, {})


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    """A subject's state after every event up to `key` that was known when it was taken (zlib'd JSON)."""

    key: SortKey
    event_count: int
    state: bytes


CHECKPOINT_SPACING = 48
"""Events of a subject between two checkpoints kept in memory."""
CHECKPOINTS_KEPT = 4
"""Checkpoints kept per cached subject: a late event up to about 150-200 events back re-folds from one."""


@dataclass(slots=True)
class _Cached:
    """A subject's state as this store last committed it, with its rows and snapshot time.

    `checkpoints` (oldest first) are earlier states of the subject: a late event re-folds
    from the newest one before it, reading only the events after it, instead of the
    subject's whole history. A checkpoint is dropped as soon as an event arrives that
    sorts at or before it.
    """

    state: SubjectState
    rows: WrittenRows
    updated_at: datetime
    checkpoints: tuple[_Checkpoint, ...] = ()


def upsert(conn: Connection, table: Any) -> Any:
    """An INSERT that can take ON CONFLICT clauses, for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


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


def load_events(conn: Connection, generation: int, subject: str, *, since: datetime | None = None) -> list[Event]:
    """Every stored event of a subject (those taking effect at or after `since`, when given)."""
    query = select(StoredEvent.body).where(StoredEvent.generation == generation, StoredEvent.subject == subject)
    if since is not None:
        query = query.where(StoredEvent.effective_at >= since)
    return [event for body in conn.execute(query).scalars() if (event := stored_event(body)) is not None]


def stored_event(body: str) -> Event | None:
    """A stored event, or None if the contract now refuses it.

    Such an event was stored before the contract's bounds tightened (a date before year 1000, a
    control character, a count past MAX_COUNT, ...). A replay from the topic parks it, so the
    read model leaves it out of its subject's history here too rather than fail every later
    batch of that subject.
    """
    try:
        return parse_event_json(body)
    except InvalidEvent:
        return None


def utc_now() -> datetime:
    """The wall clock (the default of the stores' injected clock)."""
    return datetime.now(UTC)


class ReadModelStore(Sink[Applied]):
    """Writes the read model; any number of writers (workers, a rebuild) at a time.

    It keeps the folded state of recently written subjects in memory (and the rows it
    last wrote for them), so a batch neither re-parses snapshots nor rewrites unchanged
    rows. The database stays the truth: a batch into the active generation locks the
    snapshot rows of the subjects it folds (on PostgreSQL; SQLite has one writer at a
    time), and a cached state is used only while the locked row still carries the event
    count and write time this store gave it; the whole cache is dropped when a
    transaction fails.
    """

    def __init__(
        self, engine: Engine, *, cache_subjects: int = 1000, hold_events: int = 100_000,
        shared_generation: bool = False, clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.shared_generation = shared_generation
        """Other writers fold into the same (building) generation at once: lock subjects there too."""
        self.clock = clock
        self.cache_subjects = cache_subjects
        self.hold_events = hold_events
        self._cache: OrderedDict[tuple[int, str], _Cached] = OrderedDict()
        self._held: dict[int, dict[str, list[Event]]] = {}

    def write(self, batch: Batch) -> Applied:
        """The worker's port: apply a batch into the active generation."""
        return self.apply(batch)

    def apply(
        self, batch: Batch | Sequence[Consumed], *, generation: int | None = None, defer_fold: bool = False
    ) -> Applied:
        """Apply a batch in one transaction (events, parked records, subject states, rows, offsets).

        With `defer_fold` (a rebuild catching up into a generation nobody reads yet) the new
        events are stored with the offsets but folded later, many batches at once, by
        `fold_deferred` (the caller folds when `holding` says enough are held): a subject
        with late events is then re-folded once rather than once per batch.
        """
        if not isinstance(batch, Batch):
            batch = Batch(list(batch))
        applied = Applied(parked=len(batch.parked))
        try:
            with self.engine.begin() as conn:
                gen = active_generation(conn, lock=True) if generation is None else generation
                events = self._insert_new(conn, gen, batch.consumed, applied)
                if batch.parked:
                    _park(conn, gen, batch.parked)
                by_subject: dict[str, list[Event]] = defaultdict(list)
                if defer_fold:
                    for subject, waiting in self._held.get(gen, {}).items():
                        by_subject[subject].extend(waiting)
                for event in events:
                    by_subject[event.subject].append(event)
                if by_subject and not defer_fold:
                    self._refold(conn, gen, by_subject, applied,
                                 lock=generation is None or self.shared_generation)
                self._save_offsets(conn, gen, batch)
        except BaseException:
            self._cache.clear()  # states may have been advanced in place for a rolled-back batch
            raise
        # Only now that the transaction committed: its events are held, or nothing is.
        if defer_fold:
            self._held[gen] = dict(by_subject)
            applied.subjects.update(by_subject)
        return applied

    def holding(self, generation: int) -> int:
        """How many events `apply(defer_fold=True)` holds for a generation, not folded yet."""
        return sum(map(len, self._held.get(generation, {}).values()))

    def held_subjects(self, generation: int) -> list[str]:
        """The subjects with held events in a generation."""
        return sorted(self._held.get(generation, {}))

    def fold_deferred(self, generation: int, subjects: Sequence[str] | None = None) -> int:
        """Fold the events `apply(defer_fold=True)` holds for a generation (or for some subjects); how many subjects."""
        held = self._held.get(generation)
        if not held:
            return 0
        chosen = dict(held) if subjects is None else {s: held[s] for s in subjects if s in held}
        if not chosen:
            return 0
        try:
            with self.engine.begin() as conn:
                self._refold(conn, generation, chosen, Applied(), lock=self.shared_generation)
        except BaseException:
            self._cache.clear()
            raise
        for subject in chosen:
            del held[subject]
        if not held:
            del self._held[generation]
        return len(chosen)

    def release_held(self, generation: int, subject: str, topic: str) -> list[Consumed]:
        """Take a subject's held events back out of a generation (its fold failed), in log order.

        They are deleted from the events table and returned with their positions, to be
        applied again one batch at a time, so the one that fails can be found and parked.
        """
        held = self._held.get(generation, {}).get(subject, [])
        ids = [e.event_id for e in held]
        if not ids:
            return []
        by_id = {e.event_id: e for e in held}
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(StoredEvent.id, StoredEvent.partition, StoredEvent.offset, StoredEvent.body)
                .where(StoredEvent.generation == generation, StoredEvent.id.in_(ids))
            ).all()
            conn.execute(delete(StoredEvent).where(StoredEvent.generation == generation, StoredEvent.id.in_(ids)))
        del self._held[generation][subject]
        return sorted((Consumed(topic, int(r.partition), int(r.offset), by_id[r.id], r.body.encode()) for r in rows),
                      key=lambda c: (c.partition, c.offset))

    def refresh_due(self, *, limit: int = 200) -> Applied:
        """Fold again, as of now, the subjects whose next scheduled effect has come (no event needed),
        and recompute the policies whose next effect has come. One transaction; the projector's timer.

        On PostgreSQL the due snapshots are locked (skipping those a batch is writing: it folds
        them as of now itself), so two workers never write one subject's rows at once.
        """
        applied = Applied()
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                gen = active_generation(conn, lock=True)
                query = (select(SubjectSnapshot.subject)
                         .where(SubjectSnapshot.generation == gen, SubjectSnapshot.next_effect_at <= now)
                         .order_by(SubjectSnapshot.next_effect_at).limit(limit))
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                states = {}
                for subject in conn.execute(query).scalars():
                    self._cache.pop((gen, subject), None)
                    states[subject] = fold(subject, resolve(load_events(conn, gen, subject)), as_of=now)
                if states:
                    self._write_rows(conn, gen, states, {}, {}, now)
                policies.refresh(conn, gen, policies.due(conn, gen, now), now)
        except BaseException:
            self._cache.clear()
            raise
        applied.subjects.update(states)
        applied.refolds = len(states)
        return applied

    def _insert_new(
        self, conn: Connection, gen: int, batch: Sequence[Consumed], applied: Applied
    ) -> list[Event]:
        unique: dict[UUID, Consumed] = {}
        for item in batch:
            unique.setdefault(item.event.event_id, item)
        applied.duplicates = len(batch) - len(unique)
        if not unique:
            return []
        # In id order, so two writers inserting the same ids wait for each other instead of deadlocking.
        rows = sorted((_event_row(gen, item) for item in unique.values()), key=itemgetter(1))
        inserted = set(_EVENTS_INSERT.execute(conn, rows))
        applied.duplicates += len(unique) - len(inserted)
        new = [item.event for item in unique.values() if item.event.event_id in inserted]
        applied.new_events = len(new)
        recorded = [e.recorded_at for e in new if e.recorded_at is not None]
        applied.newest_recorded_at = max(recorded, default=None)
        return new

    def _previous_states(
        self, conn: Connection, gen: int, subjects: list[str], *, lock: bool
    ) -> tuple[dict[str, SubjectState], dict[str, _Cached], set[str]]:
        """The stored state of each subject that has one, which came from the cache, which could not be read.

        With `lock` (PostgreSQL, a batch into the active generation, where another worker may
        fold the same subjects) the subjects' snapshot rows are locked until the transaction
        ends, a placeholder row first inserted for a subject that has none, so the stamps
        read here are the last committed ones and stay so until this batch writes its own.
        """
        query = select(SubjectSnapshot.subject, SubjectSnapshot.event_count, SubjectSnapshot.updated_at).where(
            SubjectSnapshot.generation == gen, SubjectSnapshot.subject.in_(subjects))
        if lock and conn.dialect.name == "postgresql":
            now = datetime.now(UTC)
            conn.execute(
                _statement(conn, "lock subjects", _insert_placeholders),
                [{"generation": gen, "subject": s, "state": "", "event_count": PLACEHOLDER_COUNT, "updated_at": now}
                 for s in subjects],
            )
            query = query.order_by(SubjectSnapshot.subject).with_for_update()
        stamps = {
            subject: (count, updated_at)
            for subject, count, updated_at in conn.execute(query)
            if count != PLACEHOLDER_COUNT
        }
        states: dict[str, SubjectState] = {}
        cached: dict[str, _Cached] = {}
        missing: list[str] = []
        for subject in subjects:
            entry = self._cache.pop((gen, subject), None)
            stamp = stamps.get(subject)
            if stamp is None:
                continue
            if entry is not None and (entry.state.event_count, entry.updated_at) == stamp:
                states[subject] = entry.state
                cached[subject] = entry
            else:
                missing.append(subject)
        unreadable: set[str] = set()
        if missing:
            for subject, raw in conn.execute(
                select(SubjectSnapshot.subject, SubjectSnapshot.state).where(
                    SubjectSnapshot.generation == gen, SubjectSnapshot.subject.in_(missing)
                )
            ):
                state = read_state(raw)
                if state is None:
                    unreadable.add(subject)
                else:
                    states[subject] = state
        return states, cached, unreadable

    def _refold(
        self, conn: Connection, gen: int, by_subject: dict[str, list[Event]], applied: Applied, *, lock: bool
    ) -> None:
        subjects = sorted(by_subject)
        now = self.clock()
        previous_states, cached, unreadable = self._previous_states(conn, gen, subjects, lock=lock)
        states: dict[str, SubjectState] = {}
        statistics: list[dict[str, Any]] = []
        refolded: list[str] = []
        checkpoints: dict[str, tuple[_Checkpoint, ...]] = {}
        for subject in subjects:
            new_events = by_subject[subject]
            previous = previous_states.get(subject)
            entry = cached.get(subject)
            usable: tuple[_Checkpoint, ...] = ()
            if entry is not None and entry.checkpoints:
                earliest = min(effect_key(e) for e in new_events)
                usable = tuple(c for c in entry.checkpoints if c.key < earliest)
            # In place: the state is either freshly parsed or the cache's own (dropped on rollback).
            state = advance(previous, new_events, as_of=now, in_place=True) if previous is not None else None
            if state is None and usable and previous is not None and not previous.meta_targets:
                tail = _from_checkpoint(conn, gen, subject, usable, now)
                if tail is not None:
                    state, usable = tail
                    applied.refolds += 1
            if state is None:
                stored = previous is not None or subject in unreadable
                resolution = resolve(load_events(conn, gen, subject) if stored else new_events)
                if resolution.meta_targets:
                    state, usable = fold(subject, resolution, as_of=now), ()
                else:
                    state, usable = _fold_checkpointed(
                        SubjectState(subject=subject),
                        list(zip(resolution.fact_keys, resolution.facts, strict=True)), (), now)
                refolded.append(subject)
                statistics.extend(_statistic_row(gen, e) for e in resolution.facts
                                  if isinstance(e, StatisticReported))
            else:
                statistics.extend(_statistic_row(gen, e) for e in new_events
                                  if isinstance(e, StatisticReported))
            states[subject] = state
            checkpoints[subject] = usable
        applied.refolds += len(refolded)
        applied.subjects.update(subjects)
        if refolded:
            conn.execute(delete(StatisticRow).where(
                StatisticRow.generation == gen, StatisticRow.subject.in_(refolded)))
        if statistics:
            conn.execute(_statement(conn, "statistics", _insert_statistics), statistics)
        self._write_rows(conn, gen, states, {s: e.rows for s, e in cached.items()}, checkpoints, now)

    def _write_rows(
        self, conn: Connection, gen: int, states: dict[str, SubjectState], written: dict[str, WrittenRows],
        checkpoints: dict[str, tuple[_Checkpoint, ...]], as_of: datetime,
    ) -> None:
        """Write the rows of each state (only what changed where `written` has the rows in the database),
        then the status of every policy whose facts changed, as of `as_of`."""
        now = datetime.now(UTC)
        unknown = [s for s in states if s not in written]
        policies_touched: set[str] = set()
        if unknown:
            policies_touched.update(conn.execute(select(PolicyFactRow.policy).where(
                PolicyFactRow.generation == gen, PolicyFactRow.case.in_(unknown))).scalars())
            for table, column in _ROW_TABLES:
                conn.execute(delete(table).where(table.generation == gen, column.in_(unknown)))
        upserts: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        removals: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
        fresh: dict[str, WrittenRows] = {}
        for subject, state in states.items():
            before = written.get(subject, _NO_ROWS)
            now_written = []
            for index, new in enumerate(_subject_rows(gen, state)):
                table, old = _ROW_TABLES[index][0], before[index]
                values = {key: tuple(row.values()) for key, row in new.items()}
                upserts[table].extend(row for key, row in new.items() if old.get(key) != values[key])
                removals[table].extend(key for key in old if key not in new)
                now_written.append(values)
            fresh[subject] = tuple(now_written)
        policies_touched.update(row["policy"] for row in upserts[PolicyFactRow])
        policies_touched.update(key[0] for key in removals[PolicyFactRow])
        for table, keys in removals.items():
            if keys:
                _delete_keys(conn, table, gen, keys)
        for table, rows in upserts.items():
            if rows:
                conn.execute(_statement(conn, f"upsert {table.__tablename__}", partial(_upsert_rows, table=table)),
                             rows)
        snapshots = {subject: state.model_dump_json() for subject, state in states.items()}
        conn.execute(
            _statement(conn, "snapshots", partial(_upsert_rows, table=SubjectSnapshot)),
            [
                {"generation": gen, "subject": s, "state": snapshots[s],
                 "event_count": st.event_count, "updated_at": now, "next_effect_at": st.next_effect_at}
                for s, st in states.items()
            ],
        )
        for subject, state in states.items():
            kept = _next_checkpoints(state, checkpoints.get(subject, ()), snapshots[subject])
            self._remember(gen, subject, _Cached(state, fresh[subject], now, kept))
        policies.refresh(conn, gen, policies_touched, as_of)

    def _remember(self, gen: int, subject: str, entry: _Cached) -> None:
        key = (gen, subject)
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_subjects:
            self._cache.popitem(last=False)

    def _save_offsets(self, conn: Connection, gen: int, batch: Batch) -> None:
        save_positions(conn, ConsumerOffset, batch, datetime.now(UTC), {"generation": gen})

    def positions(self, topic: str, *, generation: int | None = None) -> dict[int, int]:
        """The next offset to read per partition, as committed with the read model."""
        with self.engine.begin() as conn:
            gen = active_generation(conn) if generation is None else generation
            return self._positions(conn, gen, topic)

    def start_generation(self) -> int:
        """Reserve a fresh generation to rebuild into, clearing leftovers of an abandoned one."""
        with self.engine.begin() as conn:
            active = active_generation(conn)
            highest = max(
                [active] + [g for g in conn.execute(select(func.max(ConsumerOffset.generation))).scalars() if g]
            )
            building = highest + 1
            _clear(conn, lambda table: table.c.generation >= building)
            self._forget(lambda gen: gen >= building)
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
        self._forget(lambda gen: gen < generation)

    def _forget(self, doomed: Callable[[int], bool]) -> None:
        for key in [k for k in self._cache if doomed(k[0])]:
            del self._cache[key]
        for gen in [g for g in self._held if doomed(g)]:
            del self._held[gen]

    @staticmethod
    def _positions(conn: Connection, gen: int, topic: str) -> dict[int, int]:
        return load_positions(conn, ConsumerOffset, topic, {"generation": gen})


class GenerationSink(Sink[Applied]):
    """A rebuild's port into the store: batches into one generation, folded later (`defer_fold`)."""

    def __init__(self, store: ReadModelStore, generation: int, *, defer_fold: bool = True) -> None:
        self.store = store
        self.generation = generation
        self.defer_fold = defer_fold

    def write(self, batch: Batch) -> Applied:
        return self.store.apply(batch, generation=self.generation, defer_fold=self.defer_fold)

    def positions(self, topic: str) -> dict[int, int]:
        return self.store.positions(topic, generation=self.generation)


def _park(conn: Connection, gen: int, parked: Sequence[Parked]) -> None:
    """Record parked records (their events stay out of every subject's history)."""
    now = datetime.now(UTC)
    conn.execute(
        dialect_insert(conn, ParkedEvent.__table__).on_conflict_do_nothing(),
        [{"generation": gen, "topic": p.topic, "partition": p.partition, "offset": p.offset,
          "event_id": p.event_id, "subject": p.subject[:200] if p.subject else None,
          "type": p.type[:64] if p.type else None, "kind": p.kind, "error": p.error[:200], "reason": p.reason,
          "parked_at": now} for p in parked],
    )


def _insert_placeholders(conn: Connection) -> Any:
    return upsert(conn, SubjectSnapshot.__table__).on_conflict_do_nothing(index_elements=["generation", "subject"])


def _from_checkpoint(
    conn: Connection, gen: int, subject: str, kept: tuple[_Checkpoint, ...], now: datetime
) -> tuple[SubjectState, tuple[_Checkpoint, ...]] | None:
    """Re-fold from the newest checkpoint with the stored events after it (None: a retraction among them)."""
    checkpoint = kept[-1]
    state = SubjectState.model_validate_json(zlib.decompress(checkpoint.state))
    later = load_events(conn, gen, subject, since=checkpoint.key[0])
    after = sorted((pair for pair in ((effect_key(event), event) for event in later) if pair[0] > checkpoint.key),
                   key=itemgetter(0))
    if any(is_meta(event) for _, event in after):
        return None  # a retraction or correction can reach back before the checkpoint
    return _fold_checkpointed(state, after, kept, now)


def _fold_checkpointed(
    state: SubjectState, keyed: list[tuple[SortKey, Event]], kept: tuple[_Checkpoint, ...], now: datetime
) -> tuple[SubjectState, tuple[_Checkpoint, ...]]:
    """Fold (key, event) pairs in effect order as of `now`, all after `state` and none a retraction, taking checkpoints.

    Checkpoints are taken every CHECKPOINT_SPACING facts in effect by `now`, counted back
    from the last of them, as many as are kept, so the next late event finds one before it.
    A checkpoint never holds a fact whose effect is still ahead (it is folded again after it).
    """
    applied = bisect_right(keyed, now, key=lambda pair: pair[0][0])
    cuts = [applied - CHECKPOINT_SPACING * j for j in range(CHECKPOINTS_KEPT - 1, 0, -1)]
    taken: list[_Checkpoint] = []
    done = 0
    for cut in cuts:
        if cut <= done:
            continue
        fold_pairs(state, keyed[done:cut], as_of=now)
        taken.append(_checkpoint(state, state.model_dump_json()))
        done = cut
    fold_pairs(state, keyed[done:], as_of=now)
    return settle(state, now), (*kept, *taken)[-CHECKPOINTS_KEPT:]


def _checkpoint(state: SubjectState, snapshot: str) -> _Checkpoint:
    """A checkpoint of `state`, given its JSON."""
    assert state.last_key is not None
    return _Checkpoint(state.last_key, state.event_count, zlib.compress(snapshot.encode(), 1))


def _next_checkpoints(state: SubjectState, kept: tuple[_Checkpoint, ...], snapshot: str) -> tuple[_Checkpoint, ...]:
    """The checkpoints to keep once `state` is written: the current one joins every CHECKPOINT_SPACING events."""
    if state.meta_targets or state.last_key is None:
        return ()  # retractions and corrections reach back anywhere: such subjects re-fold in full
    if state.upcoming is not None:
        return kept  # it holds facts still to take effect: they would be folded twice from it
    if kept and state.event_count - kept[-1].event_count < CHECKPOINT_SPACING:
        return kept
    return (*kept, _checkpoint(state, snapshot))[-CHECKPOINTS_KEPT:]


def _clear(conn: Connection, where: Any) -> None:
    for table in (StoredEvent, ParkedEvent, SubjectSnapshot, AgreementRow, CaseRow, DeadlineRow, TransferRow,
                  StatisticRow, PolicyFactRow, PolicyRow, ConsumerOffset):
        t = cast(Table, table.__table__)
        conn.execute(delete(t).where(where(t)))


def _event_row(gen: int, item: Consumed) -> tuple[Any, ...]:
    event = item.event
    assert event is not None
    assert event.recorded_at is not None
    body = item.value.decode() if item.value else event.model_dump_json(exclude_none=True)
    return (gen, event.event_id, event.subject, event.type, instant(event.occurred_at), effect_key(event)[0],
            event.recorded_at, event.confidence, body, item.partition, item.offset)


class BulkInsert:
    """An INSERT ... ON CONFLICT DO NOTHING RETURNING, many rows per statement.

    Values pass through each column type's own bind processor, so they are stored exactly
    as SQLAlchemy would store them, without its per-row statement machinery (most of the
    cost of inserting tens of thousands of events). Columns are converted a whole column
    at a time; a column named in `repeating` (few distinct values) converts each value once.
    RETURNING names the rows that were new, so no query has to ask first which keys exist
    (on a freshly filled PostgreSQL table without statistics that query scans the table).
    """

    def __init__(
        self, table: Any, columns: Sequence[str], conflict: Sequence[str], *, returning: str,
        repeating: Sequence[str] = (), page: int = 1000,
    ) -> None:
        self.table = cast(Table, table.__table__)
        self.columns = list(columns)
        self.conflict = list(conflict)
        self.returning = returning
        self.repeating = {self.columns.index(c) for c in repeating}
        self.page = page
        self._prepared: dict[str, _Prepared] = {}

    def _prepare(self, conn: Connection) -> _Prepared:
        dialect = conn.dialect
        found = self._prepared.get(dialect.name)
        if found is None:
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            quote = dialect.identifier_preparer.quote
            head = f"INSERT INTO {quote(self.table.name)} ({', '.join(quote(c) for c in self.columns)}) VALUES "
            tail = (f" ON CONFLICT ({', '.join(quote(c) for c in self.conflict)}) DO NOTHING "
                    f"RETURNING {quote(self.returning)}")
            row = f"({', '.join(mark for _ in self.columns)})"
            returned = self.table.c[self.returning].type.dialect_impl(dialect)
            found = self._prepared[dialect.name] = _Prepared(
                lambda rows: head + ", ".join([row] * rows) + tail,
                [self.table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in self.columns],
                returned.result_processor(dialect, None),
            )
        return found

    def execute(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Insert the rows (tuples in column order), skipping keys that exist; the new rows' `returning`."""
        if not rows:
            return []
        prepared = self._prepare(conn)
        columns: list[Any] = list(zip(*rows, strict=True))
        for i, process in enumerate(prepared.processors):
            if process is None:
                continue
            if i in self.repeating:
                converted = {value: process(value) for value in set(columns[i])}
                columns[i] = map(converted.__getitem__, columns[i])
            else:
                columns[i] = map(process, columns[i])
        params = list(zip(*columns, strict=True))
        new: list[Any] = []
        start = 0
        while start < len(params):
            # Few distinct statement shapes (page, 100, 10 or 1 rows): drivers cache every
            # statement text they see, and one per remainder size would fill that cache
            # with statements of thousands of parameters.
            size = next(n for n in (self.page, 100, 10, 1) if n <= len(params) - start)
            flat = tuple(value for row in params[start:start + size] for value in row)
            new.extend(conn.exec_driver_sql(prepared.sql(size), flat).scalars())
            start += size
        return new if prepared.result is None else [prepared.result(value) for value in new]


@dataclass(frozen=True, slots=True)
class _Prepared:
    sql: Callable[[int], str]
    processors: list[Callable[[Any], Any] | None]
    result: Callable[[Any], Any] | None


_EVENTS_INSERT = BulkInsert(
    StoredEvent,
    ["generation", "id", "subject", "type", "occurred_at", "effective_at", "recorded_at", "confidence", "body",
     "partition", "offset"],
    ["generation", "id"],
    returning="id",
    repeating=["type", "occurred_at", "effective_at", "recorded_at", "confidence"],
)


def _at(moment: Any) -> datetime | None:
    return instant(moment) if moment is not None else None


def _agreement_row(gen: int, state: SubjectState) -> dict[str, Any]:
    a = state.agreement
    assert a is not None
    return {
        "generation": gen, "id": state.subject, "status": a.status,
        "status_since": _at(a.status_since), "confidence": a.confidence, "title": a.title,
        "kind": a.kind, "parties": a.parties, "partner": a.partner,
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
        "generation": gen, "id": state.subject, "title": c.title, "court": c.lead_court,
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
        "affects": d.affects, "regions": d.regions, "confidence": d.confidence, "status": d.status,
        "status_by": d.status_by, "status_reason": d.status_reason,
    }


def _statistic_row(gen: int, event: StatisticReported) -> dict[str, Any]:
    d = event.data
    return {
        "generation": gen, "event_id": event.event_id, "subject": event.subject,
        "metric": d.metric, "value": d.value, "unit": d.unit, "approximate": d.approximate,
        "period_start": _at(d.period_start), "period_end": _at(d.period_end), "region": d.region,
        "occurred_at": instant(event.occurred_at), "confidence": event.confidence,
    }


def _subject_rows(gen: int, state: SubjectState) -> SubjectRows:
    agreements: dict[tuple[Any, ...], dict[str, Any]] = {}
    cases: dict[tuple[Any, ...], dict[str, Any]] = {}
    transfers: dict[tuple[Any, ...], dict[str, Any]] = {}
    if state.agreement is not None:
        agreements[(state.subject,)] = _agreement_row(gen, state)
        for row in _transfer_rows(gen, state):
            transfers[(row["agreement"], row["month"], row["nationality"])] = row
    if state.case is not None:
        cases[(state.subject,)] = _case_row(gen, state)
    deadlines = {(d.id,): _deadline_row(gen, d) for d in _unique_deadlines(state)}
    return agreements, cases, deadlines, transfers, policies.fact_rows(gen, state)


def _key_columns(table: Any) -> list[Any]:
    return [c for c in cast(Table, table.__table__).primary_key.columns if c.name != "generation"]


_STATEMENTS: dict[tuple[str, str], Any] = {}


def _statement(conn: Connection, name: str, build: Callable[[Connection], Any]) -> Any:
    """A statement built once per dialect (building ON CONFLICT clauses costs more than running them)."""
    key = (conn.dialect.name, name)
    found = _STATEMENTS.get(key)
    if found is None:
        found = _STATEMENTS[key] = build(conn)
    return found


def _insert_statistics(conn: Connection) -> Any:
    return upsert(conn, StatisticRow.__table__).on_conflict_do_nothing(index_elements=["generation", "event_id"])


def _delete_keys(conn: Connection, table: Any, gen: int, keys: list[tuple[Any, ...]]) -> None:
    columns = _key_columns(table)

    def build(_: Connection) -> Any:
        t = cast(Table, table.__table__)
        return delete(t).where(and_(t.c.generation == bindparam("g_"),
                                    *(c == bindparam(f"k_{c.name}") for c in columns)))

    conn.execute(_statement(conn, f"delete {table.__tablename__}", build),
                 [{"g_": gen, **{f"k_{c.name}": v for c, v in zip(columns, key, strict=True)}} for key in keys])


def _upsert_rows(conn: Connection, table: Any) -> Any:
    t = cast(Table, table.__table__)
    stmt = upsert(conn, t)
    keys = [c.name for c in t.primary_key.columns]
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in t.columns if c.name not in keys}
    )
