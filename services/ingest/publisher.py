"""The port through which ingest writes events, and its Kafka adapter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from schemas.cloudevents import KafkaRecord
from services.ingest.metrics import PRODUCE_LATENCY
from services.platform.kafka import MAX_REQUEST_BYTES, make_producer, record_bytes

log = logging.getLogger(__name__)

SEND_AS_BATCHES = 16
"""From this many records on, a request's records go to Kafka as whole batches, one per partition."""
_PARTITIONER = DefaultPartitioner()


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
        metadata_max_age_s: float = 60.0,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._metadata_max_age_ms = int(metadata_max_age_s * 1000)
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
                    metadata_max_age_ms=self._metadata_max_age_ms,
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

    def _live_producer(self) -> AIOKafkaProducer | None:
        """The producer, unless aiokafka's sender task has ended: then a new one is connected in its place.

        aiokafka never restarts its sender task; once an error escaped it (aio-libs/aiokafka#983,
        #1038) every send fails, and ingest would answer 503 for good.
        """
        producer = self._producer
        if producer is None:
            return None
        sender = producer._sender.sender_task
        if sender is None or not sender.done():
            return producer
        cause = None if sender.cancelled() else sender.exception()
        log.critical("aiokafka's sender task has ended (%r, from %r); connecting a new producer",
                     cause, cause.__cause__ if cause else None)
        self._producer = None
        self._connecting = asyncio.create_task(self._replace(producer), name="kafka-reconnect")
        return None

    async def _replace(self, broken: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):  # its batches have failed already; only its sockets are left
            await broken.stop()
        await self._connect()

    async def publish(self, records: Sequence[KafkaRecord]) -> list[Ack]:
        producer = self._live_producer()
        if producer is None:
            raise KafkaUnavailable("not connected to Kafka yet")
        for index, r in enumerate(records):  # all checked first: a refused request sends nothing
            size = record_bytes(r.key, r.value, r.headers)
            if size > self._max_request_bytes:
                raise RecordTooLarge(index, size, self._max_request_bytes)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                if len(records) >= SEND_AS_BATCHES:
                    acks = await self._send_batches(producer, records)
                else:
                    pending = [
                        await producer.send(self._topic, r.value, key=r.key, headers=r.headers)
                        for r in records
                    ]
                    # Awaited one after another: by the time the first is acknowledged most of
                    # the others are too, and gather's callback per future cost more.
                    acks = [Ack(m.partition, m.offset) for m in [await future for future in pending]]
        except MessageSizeTooLargeError as exc:  # the broker's own limit is lower than ours
            raise RecordTooLarge(0, None, self._max_request_bytes) from exc
        except (KafkaError, TimeoutError) as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge: {exc!r}") from exc
        PRODUCE_LATENCY.observe(time.perf_counter() - started)
        return acks

    async def _send_batches(self, producer: AIOKafkaProducer, records: Sequence[KafkaRecord]) -> list[Ack]:
        """Fill one record batch per partition and hand each to the producer whole.

        The partition of each key is the one `send` would choose (the same partitioner over
        the same sorted partitions); a record's offset is its batch's base offset plus its
        place in the batch. `send` per record spent more CPU than validating the record.
        """
        topic = self._topic
        partitions = sorted(await producer.partitions_for(topic))
        of_key: dict[bytes, int] = {}
        by_partition: dict[int, list[int]] = {}
        for index, record in enumerate(records):
            partition = of_key.get(record.key)
            if partition is None:
                partition = of_key[record.key] = _PARTITIONER(record.key, partitions, partitions)
            by_partition.setdefault(partition, []).append(index)
        sent: list[tuple[int, list[int], asyncio.Future[Any]]] = []
        for partition, indexes in by_partition.items():
            batch, members = producer.create_batch(), list[int]()
            for index in indexes:
                r = records[index]
                if batch.append(key=r.key, value=r.value, timestamp=None, headers=r.headers) is None:
                    sent.append((partition, members, await producer.send_batch(batch, topic, partition=partition)))
                    batch, members = producer.create_batch(), list[int]()
                    if batch.append(key=r.key, value=r.value, timestamp=None, headers=r.headers) is None:
                        raise MessageSizeTooLargeError(f"a record of {len(r.value)} bytes does not fit in a batch")
                members.append(index)
            sent.append((partition, members, await producer.send_batch(batch, topic, partition=partition)))
        acks: list[Ack | None] = [None] * len(records)
        for partition, members, future in sent:
            base = (await future).offset
            for place, index in enumerate(members):
                acks[index] = Ack(partition, base + place)
        return [ack for ack in acks if ack is not None]

    async def ready(self) -> bool:
        producer = self._live_producer()
        if producer is None:
            return False
        try:
            async with asyncio.timeout(2.0):
                await producer.client.fetch_all_metadata()
        except (KafkaError, TimeoutError):
            return False
        return True
