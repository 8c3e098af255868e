"""Fakes of our own ports, for unit tests only."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.cloudevents import KafkaRecord
from services.ingest.publisher import Ack, KafkaUnavailable, Publisher


class InMemoryPublisher(Publisher):
    """Keeps records in a list; can be switched to behave like an unreachable broker."""

    def __init__(self) -> None:
        self.records: list[KafkaRecord] = []
        self.available = True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, records: Sequence[KafkaRecord]) -> list[Ack]:
        if not self.available:
            raise KafkaUnavailable("fake broker is down")
        first = len(self.records)
        self.records.extend(records)
        return [Ack(0, first + i) for i in range(len(records))]

    async def ready(self) -> bool:
        return self.available
