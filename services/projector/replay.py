"""Rebuild the read model from offset 0 into a fresh generation, then swap it in.

The query API and the live worker keep using the active generation while the rebuild
reads the whole topic with a plain consumer (no group, every partition from the start)
and applies it in large batches. Nobody reads the new generation before the swap, so
while catching up the store only writes events and offsets and holds the events to fold
many batches at once (`defer_fold`): a subject with late events is re-folded once, not
once per batch. Once it has reached the end of the topic and is at least as far as the
live worker on every partition, what is held is folded, and the swap makes the
generation active in one transaction and the old one is dropped.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from schemas.cloudevents import UndecodableRecord, from_record
from services.platform.db import make_engine
from services.projector.readmodel.migrate import upgrade
from services.projector.readmodel.store import Consumed, ReadModelStore
from services.projector.settings import ProjectorSettings

Progressed = Callable[[int, int, float], None]  # records done, records known, events/s


@dataclass(frozen=True)
class Rebuilt:
    generation: int
    records: int
    undecodable: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


async def rebuild(
    settings: ProjectorSettings,
    store: ReadModelStore,
    *,
    batch: int = 5000,
    progress: Progressed | None = None,
    swap: bool = True,
) -> Rebuilt:
    """Read the topic from the start into a new generation; swap when caught up."""
    with _bulk_allocation():
        return await _rebuild(settings, store, batch=batch, progress=progress, swap=swap)


@contextmanager
def _bulk_allocation() -> Iterator[None]:
    """Run the cyclic garbage collector rarely while a rebuild holds many live objects.

    Events are acyclic; with the default thresholds the collector walks every held event
    over and over and takes about half of the decoding time.
    """
    before = gc.get_threshold()
    gc.set_threshold(50_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def _rebuild(
    settings: ProjectorSettings, store: ReadModelStore, *, batch: int, progress: Progressed | None, swap: bool
) -> Rebuilt:
    topic = settings.events_topic
    building = await asyncio.to_thread(store.start_generation)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    started = time.perf_counter()
    records = undecodable = 0
    try:
        # Without a group, subscribing assigns every partition of the topic.
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} does not exist on {settings.kafka_bootstrap_servers}")
            await asyncio.sleep(0.05)
        tps = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*tps)
        pending: asyncio.Task[None] | None = None
        async def end_offsets() -> dict[int, int]:
            return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}

        end = await end_offsets()
        while True:
            done = {tp.partition: await consumer.position(tp) for tp in tps}
            if all(done[p] >= end[p] for p in end):
                # Only at the end of what we knew: look again, and at the live worker's
                # positions (read under the writer's lock, so never while batches flow).
                end = await end_offsets()
                live = await asyncio.to_thread(store.positions, topic)
                end = {p: max(o, live.get(p, 0)) for p, o in end.items()}
            if all(done[p] >= end[p] for p in end):
                if pending is not None:
                    await pending
                    pending = None
                if await asyncio.to_thread(store.fold_deferred, building):
                    continue  # folding took a while: look again for records that came meanwhile
                if not swap or await asyncio.to_thread(store.swap, building, topic):
                    break
                continue
            fetched = await consumer.getmany(*tps, timeout_ms=500, max_records=batch)
            items: list[Consumed] = []
            for tp, messages in fetched.items():
                for m in messages:
                    try:
                        event = from_record(m.key, m.value, m.headers)
                    except UndecodableRecord:
                        undecodable += 1
                        event = None
                    items.append(Consumed(tp.topic, tp.partition, m.offset, event, m.value if event else None))
            if not items:
                continue
            # Overlap decoding the next fetch with writing this one.
            if pending is not None:
                await pending
            pending = asyncio.create_task(_apply(store, items, building))
            records += len(items)
            if progress is not None:
                known = sum(end.values())
                progress(records, known, records / max(time.perf_counter() - started, 1e-9))
        if swap:
            await asyncio.to_thread(store.drop_generations_below, building)
    finally:
        await consumer.stop()
    return Rebuilt(building, records, undecodable, time.perf_counter() - started)


async def _apply(store: ReadModelStore, items: list[Consumed], generation: int) -> None:
    await asyncio.to_thread(store.apply, items, generation=generation, defer_fold=True)


def rebuild_with_progress(settings: ProjectorSettings, *, console: Console) -> Rebuilt:
    """The `accordwatch replay` command: a rich progress bar with events/s and lag."""
    engine = make_engine(settings.database_url, writer=True)
    upgrade(engine)
    store = ReadModelStore(engine, hold_events=settings.replay_hold_events)
    with Progress(
        TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8,.0f} events/s  lag {task.fields[lag]:,}"),
        TimeElapsedColumn(), console=console,
    ) as bar:
        task = bar.add_task("replay", total=None, rate=0.0, lag=0)

        def show(done: int, known: int, rate: float) -> None:
            bar.update(task, completed=done, total=known, rate=rate, lag=max(0, known - done))

        try:
            return asyncio.run(rebuild(settings, store, progress=show))
        finally:
            engine.dispose()
