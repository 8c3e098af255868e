"""A producer writing to every partition of a topic at a steady pace, timing each acknowledgement."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.platform.kafka import make_producer


@dataclass(frozen=True, slots=True)
class Written:
    """One acknowledged record: its partition, when it was sent and when Kafka acknowledged it."""

    partition: int
    sent_at: float
    acked_at: float


@dataclass
class PartitionWriter:
    """Sends record n (its value is n) to each partition every `interval` seconds, with accordwatch's
    producer settings (idempotent, acks=all), from a thread of its own until stopped."""

    bootstrap: str
    topic: str
    partitions: int
    interval: float = 0.05
    written: list[Written] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="partition-writer",
                                        daemon=True)

    def start(self) -> PartitionWriter:
        self._thread.start()
        return self

    def stop(self, timeout: float = 120.0) -> PartitionWriter:
        """Stop sending and wait until every record sent was acknowledged (or failed)."""
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"records still unacknowledged {timeout:.0f}s after the writer stopped"
        return self

    def acked_at(self) -> list[float]:
        return [w.acked_at for w in list(self.written)]

    def partitions_acked_since(self, moment: float) -> int:
        """How many partitions acknowledged a record sent at or after `moment`."""
        return len({w.partition for w in list(self.written) if w.sent_at >= moment})

    def wait_until(self, condition: Callable[[PartitionWriter], Any], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self):
            assert self._thread.is_alive(), f"the writer stopped: {self.errors[:3]}"
            assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
            time.sleep(0.1)

    async def _run(self) -> None:
        producer = make_producer(self.bootstrap, client_id="cluster-test-writer")
        await producer.start()
        pending: set[asyncio.Future[Any]] = set()
        try:
            n = 0
            while not self._stop.is_set():
                for partition in range(self.partitions):
                    n += 1
                    future = await producer.send(self.topic, str(n).encode(), partition=partition)
                    future.add_done_callback(self._done(n, partition, time.monotonic()))
                    pending.add(future)
                    future.add_done_callback(pending.discard)
                await asyncio.sleep(self.interval)
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await producer.stop()

    def _done(self, n: int, partition: int, sent_at: float) -> Callable[[asyncio.Future[Any]], None]:
        def record(future: asyncio.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                self.errors.append(repr(future.exception()) if not future.cancelled() else "cancelled")
                return
            self.written.append(Written(partition, sent_at, time.monotonic()))
            self.acked.add(n)

        return record
