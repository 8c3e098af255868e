"""Kafka client construction in one place, so every service talks to the broker alike."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.record.default_records import DefaultRecordBatchBuilder

MAX_REQUEST_BYTES = 1_048_576
"""The producer's `max.request.size` (Kafka's default), and so the largest record it will send."""


def make_producer(
    bootstrap_servers: str,
    *,
    client_id: str,
    linger_ms: int = 5,
    request_timeout_ms: int = 5_000,
    max_batch_size: int = 1_048_576,
    max_request_size: int = MAX_REQUEST_BYTES,
    metadata_max_age_ms: int = 60_000,
) -> AIOKafkaProducer:
    """A durable producer: acks from every in-sync replica and idempotent retries."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=max_batch_size,
        max_request_size=max_request_size,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=100,
        metadata_max_age_ms=metadata_max_age_ms,
    )


def record_bytes(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    """A record's size as the producer counts it against `max.request.size` (an upper bound)."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers))
    return size


async def no_records_between(bootstrap_servers: str, tp: tuple[str, int], start: int, end: int) -> bool:
    """Whether a partition's log holds no record at offsets start..end-1 (a plain read, no group).

    Offsets can be missing for good: transaction markers take offsets, retention deletes
    the oldest. False when in doubt (nothing read within 5 s).
    """
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                              auto_offset_reset="earliest")
    await reader.start()
    try:
        partition = TopicPartition(*tp)
        reader.assign([partition])
        reader.seek(partition, start)
        found = (await reader.getmany(partition, timeout_ms=5000, max_records=1)).get(partition, [])
        return bool(found) and found[0].offset >= end
    finally:
        await reader.stop()
