"""Kafka operations the fault tests do to a running system (reusable: the cluster tests use them too)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from aiokafka.structs import OffsetAndMetadata


async def partition_count(bootstrap: str, topic: str) -> int:
    """How many partitions `topic` has now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        return len(described["partitions"])
    finally:
        await admin.close()


async def grow_partitions(bootstrap: str, topic: str, total: int) -> None:
    """Increase `topic` to `total` partitions (subjects whose key now hashes elsewhere move partition)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(total_count=total)})
    finally:
        await admin.close()


async def commit_to_end(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Commit the end of every partition for `group` (none of its members may be running): a commit ahead."""
    tps = [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in end.items()})
        return {tp.partition: offset for tp, offset in end.items()}
    finally:
        await consumer.stop()
