"""The projector worker: a faust agent that folds the event log into the read model.

The consumer path is the platform's (`services.platform.consumer`): batches from
`accordwatch.events` are decoded and applied in one database transaction each, together
with the partitions' next offsets (`ReadModelStore.write`); a record that does not
decode or cannot be applied is parked on the dead-letter topic and the rest goes on;
transient failures are retried; positions come from the database on every assignment.
The store runs on one thread of its own: its writes are serial anyway, and one thread
keeps one malloc arena instead of one per pool thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust

from services.platform.clock import make_clock
from services.platform.consumer import ConsumerMetrics, WorkerConsumer, worker_app
from services.platform.db import make_engine
from services.platform.isolation import Batch, Record
from services.projector import metrics
from services.projector.readmodel.migrate import upgrade
from services.projector.readmodel.store import Applied, ReadModelStore
from services.projector.settings import ProjectorSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

CONSUMER_METRICS = ConsumerMetrics(
    lag=metrics.CONSUMER_LAG, parked=metrics.DLQ_RECORDS, retries=metrics.BATCH_RETRIES,
    behind=metrics.RECORDS_BEHIND, gaps=metrics.POSITION_SEEKS,
)


class Projector:
    """Holds the store and the faust app; applied batches update the projector's metrics."""

    def __init__(self, settings: ProjectorSettings, store: ReadModelStore) -> None:
        self.settings = settings
        self.store = store
        self.newest_recorded_at: datetime | None = None
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-model-store")
        self.app = worker_app(settings, stream_buffer=max(2 * settings.batch_max, 1000))
        self.consumer = WorkerConsumer(self.app, settings, store, CONSUMER_METRICS, name="project",
                                       run=self._in_store_thread, written=self._written)
        self.app.timer(2.0)(self._refresh_staleness)
        self.app.timer(settings.due_check_s)(self._refresh_due)

    def _written(self, applied: Applied, batch: Batch, records: Sequence[Record]) -> None:
        committed = time.time()
        for record in records:
            if record.timestamp:  # seconds; CreateTime, stamped by ingest's producer
                metrics.APPLY_DELAY.observe(max(0.0, committed - record.timestamp))
        metrics.EVENTS_APPLIED.inc(applied.new_events)
        metrics.DUPLICATES.inc(applied.duplicates)
        metrics.REFOLDS.inc(applied.refolds)
        if applied.newest_recorded_at is not None and (
            self.newest_recorded_at is None or applied.newest_recorded_at > self.newest_recorded_at
        ):
            self.newest_recorded_at = applied.newest_recorded_at

    async def _refresh_due(self) -> None:
        """Current means as of now: fold again what a scheduled effect changes (no event needed)."""
        try:
            applied = await self._in_store_thread(self.store.refresh_due)
        except Exception:  # the clock must keep ticking; the next tick retries
            log.exception("re-folding subjects whose scheduled effect came failed")
            return
        metrics.DUE_REFOLDS.inc(applied.refolds)

    async def _in_store_thread(self, call: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._store_thread, call, *args)
        finally:
            if call == self.store.write:
                metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _refresh_staleness(self) -> None:
        if self.newest_recorded_at is not None:
            metrics.STALENESS.set((datetime.now(UTC) - self.newest_recorded_at).total_seconds())


def create_projector(settings: ProjectorSettings | None = None) -> Projector:
    """Migrate the database and build the worker."""
    settings = settings or ProjectorSettings()
    engine = make_engine(settings.database_url, writer=True, busy_timeout_s=settings.sqlite_busy_timeout_s)
    upgrade(engine)
    store = ReadModelStore(engine, cache_subjects=settings.state_cache_subjects, clock=make_clock(settings.clock_file))
    return Projector(settings, store)


def main() -> None:
    """Run the projector worker in the foreground: `python -m services.projector.worker`."""
    settings = ProjectorSettings()
    projector = create_projector(settings)
    worker = faust.Worker(projector.app, loglevel=settings.log_level.replace("warning", "warn"))
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
