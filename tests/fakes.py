"""Fakes of our own ports, for unit tests only."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.cloudevents import KafkaRecord
from services.ingest.publisher import Ack, KafkaUnavailable, Publisher, RecordTooLarge
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
