"""The port through which ingest writes events, and its Kafka adapter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from schemas.cloudevents import KafkaRecord
from services.ingest.metrics import PRODUCE_LATENCY
from services.platform.kafka import MAX_REQUEST_BYTES, make_producer, record_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ack:
    """Where Kafka stored a record."""

    partition: int
    offset: int


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time; nothing may be answered 202."""


class RecordTooLarge(Exception):
    """Kafka refuses a record as too large: retrying cannot help, so it is the client's 413."""

    def __init__(self, index: int, size: int | None, limit: int) -> None:
        super().__init__(f"record {index} is {size if size is not None else 'too many'} bytes; Kafka takes {limit}")
        self.index = index
        self.size = size
        self.limit = limit


class Publisher(ABC):
    """Writes records durably; `publish` returns only once every record is acknowledged."""

    @abstractmethod
    async def start(self) -> None:
        """Begin connecting (never blocks on an unreachable broker)."""

    @abstractmethod
    async def stop(self) -> None:
        """Flush and disconnect."""

    @abstractmethod
    async def publish(self, records: Sequence[KafkaRecord]) -> list[Ack]:
        """Write records in order; raise `KafkaUnavailable` unless all were acknowledged.

        Raises `RecordTooLarge` before sending anything when a record is over the size Kafka takes.
        """

    @abstractmethod
    async def ready(self) -> bool:
        """Whether the broker answers now."""


class KafkaPublisher(Publisher):
    """Publishes to the events topic with acks=all and the idempotent producer."""

    def __init__(
        self, bootstrap_servers: str, topic: str, *, timeout_s: float, linger_ms: int,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._timeout_s = timeout_s
        self._linger_ms = linger_ms
        self._max_request_bytes = max_request_bytes
        self._producer: AIOKafkaProducer | None = None
        self._connecting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._connecting = asyncio.create_task(self._connect(), name="kafka-connect")

    async def _connect(self) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(KafkaError),
            wait=wait_exponential(multiplier=0.2, max=5.0),
        ):
            with attempt:
                producer = make_producer(
                    self._bootstrap,
                    client_id="accordwatch-ingest",
                    linger_ms=self._linger_ms,
                    request_timeout_ms=int(self._timeout_s * 1000),
                    max_request_size=self._max_request_bytes,
                )
                try:
                    await producer.start()
                except KafkaError:
                    await producer.stop()
                    log.warning("Kafka at %s not reachable yet; retrying", self._bootstrap)
                    raise
                self._producer = producer
        log.info("connected to Kafka at %s", self._bootstrap)

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, records: Sequence[KafkaRecord]) -> list[Ack]:
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("not connected to Kafka yet")
        for index, r in enumerate(records):  # all checked first: a refused request sends nothing
            size = record_bytes(r.key, r.value, r.headers)
            if size > self._max_request_bytes:
                raise RecordTooLarge(index, size, self._max_request_bytes)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                pending = [
                    await producer.send(self._topic, r.value, key=r.key, headers=r.headers)
                    for r in records
                ]
                metadata = await asyncio.gather(*pending)
        except MessageSizeTooLargeError as exc:  # the broker's own limit is lower than ours
            raise RecordTooLarge(0, None, self._max_request_bytes) from exc
        except (KafkaError, TimeoutError) as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge: {exc!r}") from exc
        PRODUCE_LATENCY.observe(time.perf_counter() - started)
        return [Ack(m.partition, m.offset) for m in metadata]

    async def ready(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(2.0):
                await producer.client.fetch_all_metadata()
        except (KafkaError, TimeoutError):
            return False
        return True
