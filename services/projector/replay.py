"""Rebuild the read model from offset 0 into a fresh generation, then swap it in.

The query API and the live worker keep using the active generation while the rebuild
reads the whole topic with a plain consumer (no group, every partition from the start)
and applies it in large batches. A rebuild has no order across subjects and a subject
lives on one partition, so the bulk of it runs in `replay_processes` processes, each
rebuilding its share of the partitions up to the end it saw at the start (and folding
them) into the same generation; then one pass over every partition takes whatever came
since, from the positions those processes committed, and swaps. What fails is isolated
like the live worker does it (a record that fails is parked in the new generation; the
live workers already put it on the dead-letter topic; a subject whose deferred fold fails
is applied again event by event). Nobody reads the new generation before the swap, so
while catching up the store only writes events and offsets and holds the events to fold
many batches at once (`defer_fold`): a subject with late events is re-folded once, not
once per batch. Once it has reached the end of the topic and is at least as far as the
live worker on every partition, what is held is folded, and the swap makes the
generation active in one transaction and the old one is dropped.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from schemas.cloudevents import from_record
from services.platform.clock import make_clock
from services.platform.db import make_engine
from services.platform.isolation import Hooks, Isolator, NoDeadLetters, Parked, Record, bisect, in_thread
from services.projector.readmodel.migrate import upgrade
from services.projector.readmodel.store import Applied, GenerationSink, ReadModelStore
from services.projector.settings import ProjectorSettings

Progressed = Callable[[int, int, float], None]  # records done, records known, events/s


@dataclass(frozen=True)
class Rebuilt:
    generation: int
    records: int
    parked: int
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
    processes: int | None = None,
) -> Rebuilt:
    """Read the topic from the start into a new generation; swap when caught up."""
    started = time.perf_counter()
    building = await asyncio.to_thread(store.start_generation)
    share = processes if processes is not None else settings.replay_processes
    done = parked = 0
    if share > 1:
        done, parked = await _rebuild_in_processes(settings, building, share, batch, progress)
    with _bulk_allocation():
        tail = await _rebuild(settings, store, building, batch=batch, swap=swap, resume=share > 1,
                              progress=progress and _after(done, started, progress))
    return Rebuilt(building, done + tail.records, parked + tail.parked, time.perf_counter() - started)


def _after(done: int, started: float, progress: Progressed) -> Progressed:
    """Report the final pass's progress after what the processes did, at the rate since the start."""

    def show(records: int, known: int, _: float) -> None:
        total = done + records
        progress(total, max(known, total), total / max(time.perf_counter() - started, 1e-9))

    return show


async def _rebuild_in_processes(
    settings: ProjectorSettings, building: int, processes: int, batch: int, progress: Progressed | None
) -> tuple[int, int]:
    """Rebuild the partitions up to their current ends in `processes` processes; records done and parked."""
    ends = await _end_offsets(settings)
    shares = [sorted(p for p in ends if p % processes == n) for n in range(processes)]
    shares = [share for share in shares if share]
    context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
    counter = context.Value("q", 0)
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(len(shares), mp_context=context, initializer=_share_counter,
                             initargs=(counter,)) as pool:
        jobs = [loop.run_in_executor(pool, _rebuild_share, settings, building, {p: ends[p] for p in share}, batch)
                for share in shares]
        waiting = asyncio.gather(*jobs)
        while not waiting.done():
            await asyncio.wait([waiting], timeout=0.25)
            if progress is not None:
                done = counter.value
                progress(done, sum(ends.values()), done / max(time.perf_counter() - started, 1e-9))
        results = waiting.result()
    return sum(r for r, _ in results), sum(u for _, u in results)


async def _end_offsets(settings: ProjectorSettings) -> dict[int, int]:
    consumer = _consumer(settings, settings.events_topic)
    await consumer.start()
    try:
        tps = await _assigned(consumer, settings)
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def _assigned(consumer: AIOKafkaConsumer, settings: ProjectorSettings) -> list[TopicPartition]:
    """Every partition of the events topic (a group-less subscription is assigned them all)."""
    deadline = time.monotonic() + 30
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {settings.events_topic} does not exist on {settings.kafka_bootstrap_servers}")
        await asyncio.sleep(0.05)
    return sorted(consumer.assignment())


_COUNTER: Any = None


def _share_counter(counter: Any) -> None:
    global _COUNTER
    _COUNTER = counter


def _rebuild_share(settings: ProjectorSettings, building: int, ends: dict[int, int], batch: int) -> tuple[int, int]:
    """In a process of its own: rebuild these partitions up to `ends` into `building`, folded."""
    engine = make_engine(settings.database_url, writer=True)
    # Other processes fold into the same generation; after the partitions grew, the same subjects too.
    store = ReadModelStore(engine, hold_events=settings.replay_hold_events, shared_generation=True,
                           clock=make_clock(settings.clock_file))
    try:
        with _bulk_allocation():
            return asyncio.run(_read_share(settings, store, building, ends, batch))
    finally:
        engine.dispose()


async def _read_share(
    settings: ProjectorSettings, store: ReadModelStore, building: int, ends: dict[int, int], batch: int
) -> tuple[int, int]:
    tps = [TopicPartition(settings.events_topic, p) for p in sorted(ends)]
    consumer = _consumer(settings)
    await consumer.start()
    records = 0
    folding = _Folding(settings, store, building)
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        pending: asyncio.Task[None] | None = None
        while True:
            remaining = [tp for tp in tps if await consumer.position(tp) < ends[tp.partition]]
            if not remaining:
                break
            fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=batch)
            items = _records(fetched, ends)
            if not items:
                continue
            if pending is not None:
                await pending
            pending = asyncio.create_task(folding.apply(items))
            records += len(items)
            if _COUNTER is not None:
                with _COUNTER.get_lock():
                    _COUNTER.value += len(items)
        if pending is not None:
            await pending
        await folding.fold(store.held_subjects(building))
    finally:
        await consumer.stop()
    return records, len(folding.parked)


def _consumer(settings: ProjectorSettings, *topics: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )


def _records(fetched: dict[TopicPartition, list[Any]], ends: dict[int, int] | None = None) -> list[Record]:
    """The fetched records (only those before `ends`, when given)."""
    items: list[Record] = []
    for tp, messages in fetched.items():
        for m in messages:
            if ends is not None and m.offset >= ends[tp.partition]:
                break
            items.append(Record(tp.topic, tp.partition, m.offset, m.key, m.value, list(m.headers or ())))
    return items


class _Folding:
    """A rebuild's batches, and the folds of what they hold, each isolated like the live worker's.

    One writer per partition (this pass, or one process's share): positions only move
    forward, no checks. A batch that fails is bisected and the failing record parked; a
    deferred fold that fails is bisected by subject, and a subject that fails alone has its
    held events taken back out and applied again batch-wise, so the one that fails is parked.
    """

    def __init__(self, settings: ProjectorSettings, store: ReadModelStore, generation: int) -> None:
        self.store = store
        self.generation = generation
        self.topic = settings.events_topic
        self.parked: list[Parked] = []
        hooks: Hooks[Applied] = Hooks(parked=self.parked.append)
        self.isolator = Isolator(GenerationSink(store, generation), NoDeadLetters(), from_record, in_thread,
                                 retry_max_s=settings.retry_max_s, hooks=hooks, checked=False)
        self.refolder = Isolator(GenerationSink(store, generation, defer_fold=False), NoDeadLetters(), from_record,
                                 in_thread, retry_max_s=settings.retry_max_s, hooks=hooks, checked=False)

    async def apply(self, records: list[Record]) -> None:
        """Store a batch (folded later); fold what is held once there is enough of it."""
        await self.isolator.apply(records)
        if self.store.holding(self.generation) >= self.store.hold_events:
            await self.fold(self.store.held_subjects(self.generation))

    async def fold(self, subjects: list[str]) -> int:
        """Fold the held events of `subjects`; how many subjects."""
        if subjects:
            await bisect(subjects, self._fold, self._refold_alone)
        return len(subjects)

    async def _fold(self, subjects: list[str]) -> None:
        async def call() -> None:
            await asyncio.to_thread(self.store.fold_deferred, self.generation, subjects)

        await self.isolator.retrying(call)

    async def _refold_alone(self, subject: str, exc: Exception) -> None:
        """One subject's held events fail to fold together: apply them again in log order, parking what fails."""
        items = await self.isolator.retrying(
            partial(asyncio.to_thread, self.store.release_held, self.generation, subject, self.topic))
        await self.refolder.apply_decoded(items)


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


@dataclass(frozen=True)
class _Pass:
    records: int
    parked: int


async def _rebuild(
    settings: ProjectorSettings, store: ReadModelStore, building: int, *, batch: int, swap: bool, resume: bool,
    progress: Progressed | None,
) -> _Pass:
    """Read every partition into `building` (from its start, or from the positions stored in it), fold, swap."""
    topic = settings.events_topic
    consumer = _consumer(settings, topic)
    await consumer.start()
    started = time.perf_counter()
    records = 0
    folding = _Folding(settings, store, building)
    try:
        tps = await _assigned(consumer, settings)
        await consumer.seek_to_beginning(*tps)
        if resume:
            stored = await asyncio.to_thread(store.positions, topic, generation=building)
            for tp in tps:
                if stored.get(tp.partition):
                    consumer.seek(tp, stored[tp.partition])
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
                if await folding.fold(store.held_subjects(building)):
                    continue  # folding took a while: look again for records that came meanwhile
                if not swap or await asyncio.to_thread(store.swap, building, topic):
                    break
                continue
            fetched = await consumer.getmany(*tps, timeout_ms=500, max_records=batch)
            items = _records(fetched)
            if not items:
                continue
            # Overlap reading the next fetch with writing this one.
            if pending is not None:
                await pending
            pending = asyncio.create_task(folding.apply(items))
            records += len(items)
            if progress is not None:
                known = sum(end.values())
                progress(records, known, records / max(time.perf_counter() - started, 1e-9))
        if swap:
            await asyncio.to_thread(store.drop_generations_below, building)
    finally:
        await consumer.stop()
    return _Pass(records, len(folding.parked))


def rebuild_with_progress(settings: ProjectorSettings, *, console: Console) -> Rebuilt:
    """The `accordwatch replay` command: a rich progress bar with events/s and lag."""
    engine = make_engine(settings.database_url, writer=True)
    upgrade(engine)
    store = ReadModelStore(engine, hold_events=settings.replay_hold_events, clock=make_clock(settings.clock_file))
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
