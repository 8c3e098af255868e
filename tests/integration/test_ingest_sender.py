"""Ingest replaces a producer whose aiokafka sender task has died, instead of answering 503 for good."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from schemas.cloudevents import KafkaRecord
from services.ingest.publisher import KafkaPublisher, KafkaUnavailable
from tests.conftest import Broker

pytestmark = pytest.mark.kafka

UVLOOP_ERROR = "unable to perform operation on <TCPTransport closed=True reading=False>; the handler is closed"


def record(i: int) -> KafkaRecord:
    return KafkaRecord(key=f"subject-{i}".encode(), value=f"event {i}".encode(), headers=[])


async def publish_until_acknowledged(publisher: KafkaPublisher, rec: KafkaRecord, *, timeout: float) -> float:
    """Publish as a client retrying 503s would; the seconds until Kafka acknowledged."""
    started = time.monotonic()
    while True:
        try:
            await publisher.publish([rec])
            return time.monotonic() - started
        except KafkaUnavailable:
            if time.monotonic() - started > timeout:
                raise
            await asyncio.sleep(0.2)


async def break_the_sender_then_publish(bootstrap: str, topic: str) -> float:
    """Publish, kill the sender task as uvloop's RuntimeError does, publish again: seconds until it landed."""
    publisher = KafkaPublisher(bootstrap, topic, timeout_s=5.0, linger_ms=0)
    await publisher.start()
    try:
        await publish_until_acknowledged(publisher, record(0), timeout=60)
        producer: Any = publisher._producer
        real_send = producer.client.send

        async def failing_once(node_id: int, request: Any, **kwargs: Any) -> Any:
            producer.client.send = real_send
            raise RuntimeError(UVLOOP_ERROR)  # what uvloop raises and aiokafka does not catch (#1038)

        producer.client.send = failing_once
        with pytest.raises(KafkaUnavailable):
            await publisher.publish([record(1)])
        assert producer._sender.sender_task.done()  # aiokafka's sender is gone for good
        recovered = await publish_until_acknowledged(publisher, record(2), timeout=60)
        assert publisher._producer is not producer
        assert await publisher.ready()
        return recovered
    finally:
        await publisher.stop()


def test_a_producer_whose_sender_task_died_is_replaced_and_publishing_resumes(
    kafka: Broker, caplog: pytest.LogCaptureFixture,
) -> None:
    topic = kafka.topic(partitions=1)
    recovered = asyncio.run(break_the_sender_then_publish(kafka.bootstrap, topic))
    assert recovered < 60
    assert any("sender task has ended" in r.getMessage() and r.levelname == "CRITICAL" for r in caplog.records)
    values = [r.value for r in kafka.read_all(topic)]
    assert values == [b"event 0", b"event 2"]
