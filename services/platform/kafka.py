"""Kafka client construction in one place, so every service talks to the broker alike."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer


def make_producer(
    bootstrap_servers: str,
    *,
    client_id: str,
    linger_ms: int = 5,
    request_timeout_ms: int = 5_000,
    max_batch_size: int = 1_048_576,
) -> AIOKafkaProducer:
    """A durable producer: acks from every in-sync replica and idempotent retries."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=max_batch_size,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=100,
        metadata_max_age_ms=60_000,
    )
