"""What the worker's gap check asks the real broker: are offsets missing from a log for good?"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from services.platform.kafka import no_records_between
from tests.conftest import Broker

pytestmark = pytest.mark.kafka


async def write_in_transactions(bootstrap: str, topic: str, n: int) -> None:
    """`n` records, each in a transaction of its own: every commit marker takes an offset of its own."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"t-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        for i in range(n):
            async with producer.transaction():
                await producer.send_and_wait(topic, f"record {i}".encode(), partition=0)
    finally:
        await producer.stop()


def test_offsets_taken_by_transaction_markers_hold_no_records_and_others_do(kafka: Broker) -> None:
    topic = kafka.topic(partitions=1)
    asyncio.run(write_in_transactions(kafka.bootstrap, topic, 3))  # records at 0, 2, 4; markers at 1, 3, 5
    offsets = [r.offset for r in kafka.read_all(topic, expect=3)]
    assert offsets == [0, 2, 4]
    assert asyncio.run(no_records_between(kafka.bootstrap, (topic, 0), 1, 2)) is True
    assert asyncio.run(no_records_between(kafka.bootstrap, (topic, 0), 0, 2)) is False
    assert asyncio.run(no_records_between(kafka.bootstrap, (topic, 0), 1, 4)) is False
