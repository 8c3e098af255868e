"""The projector worker: a faust agent that folds the event log into the read model.

Records are taken from `accordwatch.events` in batches (`take_events`), decoded through
`schemas/`, and applied in one database transaction per batch together with the
partitions' next offsets (`ReadModelStore.apply`, run in a thread so the consumer keeps
its heartbeats). A record that does not decode goes to the dead-letter topic with the
reason in a header, and the batch goes on. The store runs on one thread of its own:
its writes are serial anyway, and one thread keeps one malloc arena instead of one per
pool thread. faust acknowledges (and later commits) the
offsets only after that transaction, so a crash replays at most the uncommitted tail,
which the store skips by event id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import TP, EventT

from schemas.cloudevents import UndecodableRecord, from_record
from services.platform.db import make_engine
from services.projector import metrics
from services.projector.readmodel.migrate import upgrade
from services.projector.readmodel.store import Consumed, ReadModelStore
from services.projector.settings import ProjectorSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
REASON_HEADER = "accordwatch-dlq-reason"
KIND_HEADER = "accordwatch-dlq-kind"


def faust_app(
    app_id: str,
    settings: ProjectorSettings,
    *,
    web_port: int,
    data_dir: Path,
) -> faust.App:
    """A faust app with the settings every accordwatch worker shares."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=str(data_dir),
        web_enabled=True,
        web_bind=settings.api_host,
        web_host=settings.api_host,
        web_port=web_port,
        web_in_thread=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # A crashed worker's partitions move to the others after this long (Kafka's minimum is 6 s).
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 4),
        producer_acks=-1,
        stream_buffer_maxsize=max(2 * settings.batch_max, 1000),
        broker_max_poll_records=settings.batch_max,
        loghandlers=[],
    )


class Projector:
    """Holds the store and the topics; `project` applies one batch of faust events."""

    def __init__(self, settings: ProjectorSettings, store: ReadModelStore) -> None:
        self.settings = settings
        self.store = store
        self.newest_recorded_at: datetime | None = None
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-model-store")
        self.app = faust_app(
            settings.consumer_group, settings, web_port=settings.worker_metrics_port,
            data_dir=settings.home / "faust" / settings.consumer_group,
        )
        self.events = self.app.topic(
            settings.events_topic, key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw",
        )
        self.dlq = self.app.topic(
            settings.dlq_topic, key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw",
        )
        setup_prometheus_sensors(self.app, pattern="/metrics", name_prefix="accordwatch_projector_faust")
        self.app.agent(self.events, name="project")(self._agent)
        self.app.timer(2.0)(self._refresh_gauges)

    async def _agent(self, stream: Any) -> None:
        async for batch in stream.take_events(self.settings.batch_max, within=self.settings.batch_within_s):
            await self.project(batch)

    async def project(self, batch: Sequence[EventT[Any]]) -> None:
        """Decode, dead-letter the undecodable, apply the rest with their offsets."""
        consumed: list[Consumed] = []
        pending: list[Any] = []
        for item in batch:
            message = item.message
            headers = cast(list[tuple[str, bytes]], list(message.headers or []))
            try:
                event = from_record(message.key, message.value, headers)
            except UndecodableRecord as exc:
                pending.append(await self._dead_letter(message, headers, exc))
                consumed.append(Consumed(message.topic, message.partition, message.offset, None))
                continue
            consumed.append(Consumed(message.topic, message.partition, message.offset, event, message.value))
        if pending:
            # The DLQ copy must be durable before the offset of its original is committed.
            await asyncio.gather(*pending)
        started = time.perf_counter()
        applied = await self._in_store_thread(self.store.apply, consumed)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        committed = time.time()
        for item in batch:
            if item.message.timestamp:  # seconds; CreateTime, stamped by ingest's producer
                metrics.APPLY_DELAY.observe(max(0.0, committed - item.message.timestamp))
        metrics.EVENTS_APPLIED.inc(applied.new_events)
        metrics.DUPLICATES.inc(applied.duplicates)
        metrics.REFOLDS.inc(applied.refolds)
        if applied.newest_recorded_at is not None and (
            self.newest_recorded_at is None or applied.newest_recorded_at > self.newest_recorded_at
        ):
            self.newest_recorded_at = applied.newest_recorded_at

    async def _in_store_thread(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, call, *args)

    async def _dead_letter(self, message: Any, headers: list[tuple[str, bytes]], exc: UndecodableRecord) -> Any:
        log.warning("dead-lettering %s[%d]@%d: %s", message.topic, message.partition, message.offset, exc.reason)
        metrics.DLQ_RECORDS.labels(exc.kind).inc()
        extra = [
            (REASON_HEADER, exc.reason[:2000].encode()),
            (KIND_HEADER, exc.kind.encode()),
            ("accordwatch-dlq-origin", f"{message.topic}/{message.partition}/{message.offset}".encode()),
        ]
        return await self.dlq.send(key=message.key, value=message.value or b"", headers=headers + extra)

    async def _refresh_gauges(self) -> None:
        """Staleness and lag gauges; a failure here is logged, never allowed to stop the worker."""
        try:
            await self._gauges()
        except Exception:  # metrics must never take the projector down
            log.exception("refreshing projector gauges failed")

    async def _gauges(self) -> None:
        if self.newest_recorded_at is not None:
            metrics.STALENESS.set((datetime.now(UTC) - self.newest_recorded_at).total_seconds())
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
        except Exception:
            return
        positions = await self._in_store_thread(self.store.positions, self.settings.events_topic)
        for tp in assignment:
            if tp.topic != self.settings.events_topic:
                continue
            highwater = consumer.highwater(TP(tp.topic, tp.partition))
            if highwater is None:
                continue
            done = positions.get(tp.partition, 0)
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, highwater - done))


def create_projector(settings: ProjectorSettings | None = None) -> Projector:
    """Migrate the database and build the worker."""
    settings = settings or ProjectorSettings()
    engine = make_engine(settings.database_url, writer=True)
    upgrade(engine)
    return Projector(settings, ReadModelStore(engine, cache_subjects=settings.state_cache_subjects))


def main() -> None:
    """Run the projector worker in the foreground: `python -m services.projector.worker`."""
    settings = ProjectorSettings()
    projector = create_projector(settings)
    worker = faust.Worker(projector.app, loglevel=settings.log_level.replace("warning", "warn"))
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
