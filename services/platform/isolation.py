"""Applying consumed records so that no record can stop a worker or cost another.

A worker hands every batch it takes from the events topic to an `Isolator`, which
decodes it and gives it to the worker's `Sink` (our port: the read model, the alert
store) to write effects and positions in one transaction. A batch stays one
transaction in the happy path; only when it fails:

- a transient failure (the database down, locked or out of disk, the dead-letter topic
  away) retries the same transaction with capped exponential backoff for as long as it
  lasts, with a log line and a metric per try;
- a permanent failure (anything else: a value the database refuses, an exception in the
  fold or the rules) bisects the batch until the failing record is alone, parks it
  (dead-letter topic first, then its id and position in one transaction, never in the
  subject's history) and applies the rest;
- a position conflict (the stored next offset is not where this worker left it: another
  worker moved the partition on, or a rebuild swapped in) re-reads the stored
  positions, drops what is behind them and applies what is left.

The stored positions are the truth: the isolator only applies a partition's records
from exactly the next offset stored with the effects, so nothing is applied twice by
position and nothing is ever skipped.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from aiokafka.errors import KafkaError
from sqlalchemy import exc as sa_exc
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from schemas.cloudevents import UndecodableRecord
from schemas.envelope import Event

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")
Partition = tuple[str, int]
"""A topic partition: (topic, partition)."""

REASON_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Record:
    """A record as taken from the topic, whatever the Kafka client."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp: float | None = None
    """Seconds since the epoch: the record's CreateTime (stamped by ingest's producer)."""

    @property
    def tp(self) -> Partition:
        return (self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class Consumed:
    """A record that decoded: its position, its event and the bytes it came as."""

    topic: str
    partition: int
    offset: int
    event: Event
    value: bytes | None = None


@dataclass(frozen=True, slots=True)
class Parked:
    """A record set aside with its reason: on the dead-letter topic, in no subject's history."""

    topic: str
    partition: int
    offset: int
    kind: str
    """not_json, unknown_type, invalid, mismatch (it does not decode), decode_error, apply_error."""
    error: str
    """The exception's class."""
    reason: str
    """The exception's message (NUL-free, at most REASON_LIMIT characters)."""
    event_id: UUID | None = None
    subject: str | None = None
    type: str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """What one transaction writes: the events, the parked records and the positions they move."""

    consumed: Sequence[Consumed]
    parked: Sequence[Parked] = ()
    expected: Mapping[Partition, int] | None = None
    """The next offset the database must hold for each partition of the batch before it is
    written (None: no check, positions only ever move forward)."""

    def positions(self) -> dict[Partition, int]:
        """The next offset of every partition the batch came from."""
        found: dict[Partition, int] = {}
        items: list[Consumed | Parked] = [*self.consumed, *self.parked]
        for item in items:
            key = (item.topic, item.partition)
            found[key] = max(found.get(key, 0), item.offset + 1)
        return found


class PositionConflict(Exception):
    """A partition's stored next offset is not the one the batch expected; nothing was written."""

    def __init__(self, partitions: Sequence[Partition]) -> None:
        super().__init__(f"stored positions moved under this worker: {sorted(partitions)}")
        self.partitions = list(partitions)


class Sink(abc.ABC, Generic[R]):
    """Where a worker's batches go: effects and positions in one database transaction."""

    @abc.abstractmethod
    def write(self, batch: Batch) -> R:
        """Write a batch in one transaction; raise PositionConflict (and write nothing) when
        `batch.expected` does not match the stored positions."""

    @abc.abstractmethod
    def positions(self, topic: str) -> dict[int, int]:
        """The next offset to read per partition of `topic`, as stored with the effects."""


class DeadLetters(abc.ABC):
    """Where a parked record goes before the position past it is committed."""

    @abc.abstractmethod
    async def send(self, record: Record, parked: Parked) -> None:
        """Make the parked record durable on the dead-letter topic (or raise)."""


class NoDeadLetters(DeadLetters):
    """Parks in the database only (a rebuild: the live workers put the copies on the topic)."""

    async def send(self, record: Record, parked: Parked) -> None:
        return None


class Decoder(Protocol):
    def __call__(self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> Event: ...


Runner = Callable[..., Awaitable[Any]]
"""Runs a blocking call off the event loop: `await run(fn, *args)`."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failure is the surroundings' (retry it) rather than the data's (park the record).

    Transient: the database unreachable, restarting, locked or out of disk (SQLAlchemy's
    OperationalError, and a connection it invalidated), deadlocks and serialisation
    failures (OperationalError on PostgreSQL), a schema or privilege the code does not find
    (ProgrammingError: parking every record would empty the stream into the DLQ), the
    server's internal errors, Kafka unavailable, timeouts and OS errors. Permanent: what
    one value causes (DataError, IntegrityError, the driver refusing to bind it, an
    exception in decoding, the fold or the rules).
    """
    if not isinstance(exc, Exception):
        return False
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return isinstance(exc, sa_exc.OperationalError | sa_exc.ProgrammingError | sa_exc.InternalError)
    return isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError | KafkaError | TimeoutError
                      | OSError | MemoryError)


def clean_reason(text: str) -> str:
    """An exception message fit for a database column and a Kafka header (no NUL, bounded)."""
    return text.replace("\x00", "\\x00")[:REASON_LIMIT]


def _header_id(headers: Sequence[tuple[str, bytes]]) -> UUID | None:
    for name, raw in headers:
        if name == "ce_id":
            try:
                return UUID(raw.decode(errors="replace"))
            except ValueError:
                return None
    return None


def _reason(exc: BaseException) -> str:
    """What went wrong, without what varies between tries (SQLAlchemy adds the statement and its parameters)."""
    if isinstance(exc, UndecodableRecord):
        return exc.reason
    if isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
        return str(exc.orig).strip() or repr(exc.orig)
    return str(exc) or repr(exc)


def park(record: Record, exc: BaseException, kind: str, event: Event | None = None) -> Parked:
    """The parked form of a record that failed with `exc`."""
    reason = _reason(exc)
    return Parked(
        record.topic, record.partition, record.offset, kind, type(exc).__qualname__, clean_reason(reason),
        event.event_id if event is not None else _header_id(record.headers),
        event.subject if event is not None else None,
        event.type if event is not None else None,
    )


@dataclass(slots=True)
class _Slot:
    record: Record
    item: Consumed | Parked
    sent: bool = False


@dataclass(slots=True)
class Hooks(Generic[R]):
    """What a worker does around the isolator: metrics and logs, and where a gap sends it."""

    written: Callable[[R, Batch, Sequence[Record]], None] = lambda result, batch, records: None
    parked: Callable[[Parked], None] = lambda parked: None
    retrying: Callable[[BaseException, float], None] = lambda exc, wait: None
    behind: Callable[[int], None] = lambda records: None
    """Records dropped because the stored position is past them (already applied)."""
    gap: Callable[[Partition, int, int], Awaitable[bool]] | None = None
    """A partition's first record is past its stored position: True applies anyway (a real
    hole in the log), False drops the partition's records for now (the hook seeks back)."""


@dataclass
class Isolator(Generic[R]):
    """Applies batches of records to a sink, isolating each failing record (see the module)."""

    sink: Sink[R]
    dead_letters: DeadLetters
    decode: Decoder
    run: Runner
    retry_max_s: float = 30.0
    hooks: Hooks[R] = field(default_factory=Hooks)
    checked: bool = True
    """Apply each partition only from its stored position (`positions`); False: no check,
    positions only move forward (a single writer replaying into a fresh generation)."""
    positions: dict[Partition, int] = field(default_factory=dict)
    """The next offset stored for each partition this worker holds (set on assignment)."""

    async def apply(self, records: Sequence[Record]) -> None:
        """Apply a batch: every record is applied, parked, or found already applied by position."""
        slots = [self._decoded(r) for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset))]
        await self.apply_slots(slots)

    async def apply_decoded(self, items: Sequence[Consumed]) -> None:
        """Apply events that already decoded (a rebuild re-applying what a deferred fold refused)."""
        slots = [_Slot(Record(c.topic, c.partition, c.offset, c.event.subject.encode(), c.value), c) for c in items]
        await self.apply_slots(slots)

    async def apply_slots(self, slots: list[_Slot]) -> None:
        slots = await self._admitted(slots)
        while slots:
            try:
                await self._isolate(slots)
                return
            except PositionConflict as conflict:
                log.warning("%s; re-reading them", conflict)
                await self._resync({topic for topic, _ in conflict.partitions})
                slots = await self._admitted(slots)

    def _decoded(self, record: Record) -> _Slot:
        try:
            event = self.decode(record.key, record.value, record.headers)
        except UndecodableRecord as exc:
            return _Slot(record, park(record, exc, exc.kind))
        except Exception as exc:  # anything a hostile record makes the decoder raise
            return _Slot(record, park(record, exc, "decode_error"))
        return _Slot(record, Consumed(record.topic, record.partition, record.offset, event, record.value))

    async def _admitted(self, slots: list[_Slot]) -> list[_Slot]:
        """The slots still to apply: from each partition's stored position on, without a gap."""
        if not self.checked:
            return slots
        kept: list[_Slot] = []
        behind = 0
        first: dict[Partition, int] = {}
        for slot in slots:
            tp = slot.record.tp
            expected = self.positions.get(tp)
            if expected is None or slot.record.offset < expected:
                behind += 1  # not held here (any more), or applied already
                continue
            first.setdefault(tp, slot.record.offset)
            kept.append(slot)
        if behind:
            self.hooks.behind(behind)
        dropped: set[Partition] = set()
        for tp, offset in first.items():
            expected = self.positions[tp]
            if offset > expected and not (self.hooks.gap is not None and await self.hooks.gap(tp, expected, offset)):
                dropped.add(tp)
        return [s for s in kept if s.record.tp not in dropped] if dropped else kept

    async def stored(self, topic: str) -> dict[int, int]:
        """The positions stored for `topic` (read again while the database is away)."""

        async def read() -> dict[int, int]:
            found: dict[int, int] = await self.run(self.sink.positions, topic)
            return found

        return await self.retrying(read)

    async def _resync(self, topics: set[str]) -> None:
        """Re-read the stored positions of the partitions held here (they moved under this worker)."""
        for topic in topics:
            stored = await self.stored(topic)
            for tp in [tp for tp in self.positions if tp[0] == topic]:
                now = stored.get(tp[1], 0)
                if now < self.positions[tp]:
                    log.error("the stored position of %s went back from %d to %d", tp, self.positions[tp], now)
                self.positions[tp] = now

    async def _isolate(self, slots: list[_Slot]) -> None:
        await bisect(slots, self._write, self._park_alone)

    async def _park_alone(self, slot: _Slot, exc: Exception) -> None:
        """A record that fails alone: park it (or, if it is parked already, keep trying to store that)."""
        if isinstance(slot.item, Consumed):
            slot.item = park(slot.record, exc, "apply_error", slot.item.event)
        else:
            log.error("storing parked record %s failed (%s); retrying", slot.item, exc)
        await self._write([slot], everything=True)

    async def _write(self, slots: list[_Slot], *, everything: bool = False) -> None:
        """One transaction; transient failures (with `everything`, any failure) are retried."""
        consumed = [s.item for s in slots if isinstance(s.item, Consumed)]
        parked = [s.item for s in slots if isinstance(s.item, Parked)]
        batch = Batch(consumed, parked)
        if self.checked:
            batch = Batch(consumed, parked, {tp: self.positions[tp] for tp in batch.positions()})

        async def attempt() -> R:
            for slot in slots:
                if isinstance(slot.item, Parked) and not slot.sent:
                    await self.dead_letters.send(slot.record, slot.item)
                    slot.sent = True
            result: R = await self.run(self.sink.write, batch)
            return result

        result = await self.retrying(attempt, everything=everything)
        if self.checked:
            self.positions.update(batch.positions())
        for item in parked:
            log.warning("parked %s[%d]@%d (%s: %s)", item.topic, item.partition, item.offset, item.error, item.reason)
            self.hooks.parked(item)
        self.hooks.written(result, batch, [s.record for s in slots])

    async def retrying(self, call: Callable[[], Awaitable[T]], *, everything: bool = False) -> T:
        """`await call()`, again and again while it fails transiently (with `everything`, at all)."""
        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, PositionConflict):
                return False
            return isinstance(exc, Exception) if everything else is_transient(exc)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            if exc is not None:
                log.warning("try %d failed (%s: %s); again in %.1fs", state.attempt_number,
                            type(exc).__name__, str(exc).splitlines()[0][:300] if str(exc) else "", wait)
                self.hooks.retrying(exc, wait)

        async for attempt in AsyncRetrying(
            retry=retry_if_exception(retryable), wait=wait_exponential(multiplier=0.05, max=self.retry_max_s),
            before_sleep=before_sleep, reraise=True,
        ):
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity retries until success or re-raises")  # pragma: no cover


async def bisect(
    items: list[T], attempt: Callable[[list[T]], Awaitable[None]], alone: Callable[[T, Exception], Awaitable[None]]
) -> None:
    """`attempt(items)`; on a permanent failure, halves attempted in order until the failing item is
    alone, then `alone(item, exc)`. Position conflicts and cancellation pass through."""
    try:
        await attempt(items)
        return
    except PositionConflict:
        raise
    except Exception as exc:  # permanent: attempts retry their transient failures themselves
        if len(items) == 1:
            await alone(items[0], exc)
            return
        log.info("%d items failed together (%s: %s); bisecting", len(items), type(exc).__name__,
                 str(exc).splitlines()[0][:300] if str(exc) else "")
    half = len(items) // 2
    await bisect(items[:half], attempt, alone)
    await bisect(items[half:], attempt, alone)


async def in_thread(call: Callable[..., T], *args: Any) -> T:
    """The default runner: the default thread pool."""
    return await asyncio.to_thread(call, *args)
