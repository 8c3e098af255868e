"""The isolator on a fake store: no record stops the batch or costs another; nothing is skipped."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from sqlalchemy import exc as sa_exc

from schemas.cloudevents import UndecodableRecord, from_record, to_record
from schemas.envelope import Event
from schemas.registry import parse_event
from services.platform.isolation import (
    Batch,
    Hooks,
    Isolator,
    Partition,
    Record,
    bisect,
    clean_reason,
    in_thread,
    is_transient,
)
from tests.fakes import InMemoryDeadLetters, InMemorySink
from tests.samples import event

TOPIC = "events"


def events(n: int) -> list[Event]:
    return [parse_event({**event("TransferReported", subject=f"us-gt-aca-{i % 7}"), "id": str(uuid.uuid4()),
                         "recorded_at": "2026-01-05T10:00:00Z"}) for i in range(n)]


def records(evs: Sequence[Event], partitions: int = 3, start: int = 0) -> list[Record]:
    """The events spread round-robin over partitions, offsets counting from `start` in each."""
    out = []
    for i, e in enumerate(evs):
        raw = to_record(e, source="test")
        out.append(Record(TOPIC, i % partitions, start + i // partitions, raw.key, raw.value, raw.headers))
    return out


def isolator(sink: InMemorySink, dlq: InMemoryDeadLetters | None = None, *, partitions: int = 3,
             hooks: Hooks[int] | None = None, decode: Any = from_record) -> Isolator[int]:
    found = Isolator(sink, dlq or InMemoryDeadLetters(), decode, in_thread, retry_max_s=0.01, hooks=hooks or Hooks())
    found.positions = {(TOPIC, p): 0 for p in range(partitions)}
    return found


async def test_a_batch_is_one_write_when_nothing_fails() -> None:
    sink = InMemorySink()
    evs = events(300)
    await isolator(sink).apply(records(evs))
    assert sink.writes == sink.attempts == 1
    assert set(sink.events) == {e.event_id for e in evs}
    assert sink.stored == {(TOPIC, 0): 100, (TOPIC, 1): 100, (TOPIC, 2): 100}


async def test_an_event_that_fails_to_apply_is_parked_alone_and_every_other_event_is_applied() -> None:
    sink, dlq = InMemorySink(), InMemoryDeadLetters()
    evs = events(1000)
    bad = evs[617]
    sink.failing[bad.event_id] = OverflowError("date value out of range")
    worker = isolator(sink, dlq)
    await worker.apply(records(evs))
    assert set(sink.events) == {e.event_id for e in evs} - {bad.event_id}
    [parked] = sink.parked
    assert (parked.event_id, parked.kind, parked.error, parked.reason) == (
        bad.event_id, "apply_error", "OverflowError", "date value out of range")
    assert (parked.partition, parked.offset) == (617 % 3, 617 // 3)
    assert [p for _, p in dlq.sent] == [parked], "on the dead-letter topic before its position was committed"
    assert sink.stored == {(TOPIC, 0): 334, (TOPIC, 1): 333, (TOPIC, 2): 333}
    assert worker.positions == sink.stored
    assert sink.attempts <= 2 * 10 + 2, "bisection: a couple of writes per halving, not one per event"


async def test_several_failing_events_are_each_parked_and_a_later_event_of_their_subject_still_applies() -> None:
    sink = InMemorySink()
    evs = events(200)
    bad = [evs[3], evs[4], evs[150]]
    for e in bad:
        sink.failing[e.event_id] = ValueError(f"cannot fold {e.event_id}")
    await isolator(sink).apply(records(evs))
    assert {p.event_id for p in sink.parked} == {e.event_id for e in bad}
    assert len(sink.events) == 197
    assert evs[3 + 7].event_id in sink.events, "the same subject's later events are applied"


async def test_undecodable_and_hostile_records_are_parked_with_why_and_the_rest_applied() -> None:
    sink, dlq = InMemorySink(), InMemoryDeadLetters()
    evs = events(6)
    batch = records(evs, partitions=1)
    batch[1] = Record(TOPIC, 0, 1, b"k", b"{not json")
    batch[2] = Record(TOPIC, 0, 2, b"k", b'{"hostile": true}')

    def decode(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> Event:
        if value == b'{"hostile": true}':
            raise OverflowError("date value out of range")  # not the decode error the path knows
        return from_record(key, value, headers)

    await isolator(sink, dlq, partitions=1, decode=decode).apply(batch)
    assert [(p.offset, p.kind, p.error) for p in sink.parked] == [
        (1, "not_json", "UndecodableRecord"), (2, "decode_error", "OverflowError")]
    assert set(sink.events) == {evs[i].event_id for i in (0, 3, 4, 5)}
    assert sink.stored == {(TOPIC, 0): 6}
    assert len(dlq.sent) == 2


async def test_a_database_that_is_down_retries_the_same_batch_until_it_applies_once() -> None:
    sink = InMemorySink()
    locked = sa_exc.OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))
    sink.outages = [locked, locked, sa_exc.OperationalError("SELECT 1", {}, OSError("connection refused"))]
    retries: list[str] = []
    hooks: Hooks[int] = Hooks(retrying=lambda exc, wait: retries.append(type(exc).__name__))
    evs = events(50)
    await isolator(sink, hooks=hooks).apply(records(evs))
    assert retries == ["OperationalError"] * 3
    assert sink.writes == 1
    assert len(sink.events) == 50
    assert sink.parked == [], "a transient failure never parks"


async def test_the_dead_letter_topic_away_holds_the_batch_until_it_is_back() -> None:
    sink, dlq = InMemorySink(), InMemoryDeadLetters()
    dlq.away = 3
    batch = records(events(4), partitions=1)
    batch[2] = Record(TOPIC, 0, 2, b"k", b"{not json")
    await isolator(sink, dlq, partitions=1).apply(batch)
    assert [p.offset for _, p in dlq.sent] == [2]
    assert [p.offset for p in sink.parked] == [2]
    assert sink.stored == {(TOPIC, 0): 4}


async def test_a_parked_record_that_cannot_be_stored_is_tried_again_never_skipped() -> None:
    sink = InMemorySink()
    evs = events(2)
    sink.failing[evs[1].event_id] = ValueError("bad")
    sink.outages = []
    worker = isolator(sink, partitions=1)
    original = sink.write
    refusals = [sa_exc.IntegrityError("INSERT", {}, Exception("unexpected"))]

    def write(batch: Batch) -> int:
        if batch.parked and refusals:
            raise refusals.pop()
        return original(batch)

    sink.write = write  # type: ignore[method-assign]
    await worker.apply(records(evs, partitions=1))
    assert [p.event_id for p in sink.parked] == [evs[1].event_id]
    assert sink.stored == {(TOPIC, 0): 2}


async def test_a_partition_another_worker_moved_on_drops_what_is_behind_and_applies_the_rest() -> None:
    sink = InMemorySink()
    evs = events(30)
    worker = isolator(sink, partitions=1)
    sink.stored[(TOPIC, 0)] = 20  # another worker applied 0..19 after this one read position 0
    behind: list[int] = []
    worker.hooks.behind = behind.append
    await worker.apply(records(evs, partitions=1))
    assert set(sink.events) == {e.event_id for e in evs[20:]}
    assert sink.stored == {(TOPIC, 0): 30}
    assert worker.positions == {(TOPIC, 0): 30}
    assert sum(behind) == 20


async def test_a_stale_workers_late_batch_writes_nothing() -> None:
    sink = InMemorySink()
    worker = isolator(sink, partitions=1)
    sink.stored[(TOPIC, 0)] = 50  # the partition moved on past this whole batch
    await worker.apply(records(events(30), partitions=1))
    assert sink.events == {}
    assert sink.stored == {(TOPIC, 0): 50}


async def test_records_past_the_stored_position_are_not_applied_over_the_gap() -> None:
    sink = InMemorySink()
    asked: list[tuple[Partition, int, int]] = []
    accept = False

    async def gap(tp: Partition, expected: int, first: int) -> bool:
        asked.append((tp, expected, first))
        return accept

    worker = isolator(sink, partitions=1, hooks=Hooks(gap=gap))
    evs = events(10)
    await worker.apply(records(evs[5:], partitions=1, start=5))  # 0..4 never came (a seek that ran ahead)
    assert asked == [((TOPIC, 0), 0, 5)]
    assert sink.events == {}
    assert sink.stored == {}
    await worker.apply(records(evs, partitions=1))  # sought back: they come from the stored position
    assert len(sink.events) == 10
    accept = True
    await worker.apply(records(events(3), partitions=1, start=12))  # a real hole in the log: taken on
    assert sink.stored == {(TOPIC, 0): 15}


async def test_records_of_partitions_this_worker_does_not_hold_are_not_applied() -> None:
    sink = InMemorySink()
    worker = isolator(sink, partitions=2)
    await worker.apply(records(events(9), partitions=3))
    assert set(sink.stored) == {(TOPIC, 0), (TOPIC, 1)}
    assert len(sink.events) == 6


async def test_bisect_finds_each_failing_item_in_few_attempts() -> None:
    attempts: list[int] = []
    alone: list[int] = []

    async def attempt(items: list[int]) -> None:
        attempts.append(len(items))
        if {13, 77} & set(items):
            raise ValueError("no")

    async def on_alone(item: int, exc: Exception) -> None:
        alone.append(item)

    await bisect(list(range(128)), attempt, on_alone)
    assert alone == [13, 77]
    assert len(attempts) < 40


@pytest.mark.parametrize(("exc", "transient"), [
    (sa_exc.OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked")), True),
    (sa_exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full")), True),
    (sa_exc.OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly")), True),
    (sa_exc.InterfaceError("SELECT", {}, Exception("connection already closed"), connection_invalidated=True), True),
    (sa_exc.ProgrammingError("SELECT", {}, Exception('relation "events" does not exist')), True),
    (KafkaConnectionError("no broker"), True),
    (KafkaTimeoutError(), True),
    (TimeoutError(), True),
    (OSError(28, "No space left on device"), True),
    (sa_exc.DataError("INSERT", {}, Exception("integer out of range")), False),
    (sa_exc.DataError("INSERT", {}, Exception("PostgreSQL text fields cannot contain NUL (0x00) bytes")), False),
    (sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")), False),
    (OverflowError("Python int too large to convert to SQLite INTEGER"), False),
    (OverflowError("date value out of range"), False),
    (UndecodableRecord("value is not JSON", "not_json"), False),
    (KeyError("x"), False),
])
def test_failures_of_the_surroundings_are_transient_and_failures_of_the_data_are_not(
    exc: BaseException, transient: bool
) -> None:
    assert is_transient(exc) is transient


def test_reasons_are_stored_without_nul_and_bounded() -> None:
    assert clean_reason("a\x00b" + "c" * 5000) == "a\\x00b" + "c" * 1994
