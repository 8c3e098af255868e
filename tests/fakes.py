"""Fakes of our own ports, for unit tests only."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from aiokafka.errors import KafkaConnectionError

from schemas.cloudevents import KafkaRecord
from schemas.envelope import Event
from services.ingest.publisher import Ack, KafkaUnavailable, Publisher, RecordTooLarge
from services.platform.isolation import Batch, DeadLetters, Parked, PositionConflict, Record, Sink
from services.platform.kafka import record_bytes


class InMemoryPublisher(Publisher):
    """Keeps records in a list; can be switched to behave like an unreachable broker."""

    def __init__(self, max_record_bytes: int | None = None) -> None:
        self.records: list[KafkaRecord] = []
        self.available = True
        self.max_record_bytes = max_record_bytes

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, records: Sequence[KafkaRecord]) -> list[Ack]:
        if not self.available:
            raise KafkaUnavailable("fake broker is down")
        limit = self.max_record_bytes
        for index, r in enumerate(records):
            if limit is not None and (size := record_bytes(r.key, r.value, r.headers)) > limit:
                raise RecordTooLarge(index, size, limit)
        first = len(self.records)
        self.records.extend(records)
        return [Ack(0, first + i) for i in range(len(records))]

    async def ready(self) -> bool:
        return self.available


class InMemorySink(Sink[int]):
    """A worker's store as a dict: events by id, parked records, positions; fails on chosen events.

    `failing` maps an event id to the exception a batch containing it raises (as a fold or
    a database refusing one value would); `outages` are raised by the next writes, one
    each (a database that is down); positions are checked like the real stores check them.
    """

    def __init__(self) -> None:
        self.events: dict[UUID, Event] = {}
        self.parked: list[Parked] = []
        self.stored: dict[tuple[str, int], int] = {}
        self.failing: dict[UUID, Exception] = {}
        self.outages: list[Exception] = []
        self.writes = 0
        self.attempts = 0

    def write(self, batch: Batch) -> int:
        self.attempts += 1
        if self.outages:
            raise self.outages.pop(0)
        positions = batch.positions()
        if batch.expected is not None:
            moved = [tp for tp in positions if self.stored.get(tp, 0) != batch.expected.get(tp, 0)]
            if moved:
                raise PositionConflict(moved)
        for item in batch.consumed:
            if item.event.event_id in self.failing:
                raise self.failing[item.event.event_id]
        for item in batch.consumed:
            self.events.setdefault(item.event.event_id, item.event)
        self.parked.extend(batch.parked)
        for tp, offset in positions.items():
            self.stored[tp] = max(self.stored.get(tp, 0), offset)
        self.writes += 1
        return len(batch.consumed)

    def positions(self, topic: str) -> dict[int, int]:
        return {p: o for (t, p), o in self.stored.items() if t == topic}


class InMemoryDeadLetters(DeadLetters):
    """The dead-letter topic as a list; `away` sends fail first (a broker that is down)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Record, Parked]] = []
        self.away = 0

    async def send(self, record: Record, parked: Parked) -> None:
        if self.away:
            self.away -= 1
            raise KafkaConnectionError("the dead-letter topic is unavailable")
        self.sent.append((record, parked))
