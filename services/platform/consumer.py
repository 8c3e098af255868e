"""The one consumer path of both workers: faust app, agent, positions from the database.

`worker_app` builds the faust app every worker runs. `WorkerConsumer` puts a faust agent
on the events topic that hands each batch (`take_events`) to an `Isolator` (decode ->
apply the batch -> effects and positions in one transaction -> only then does faust ack
and later commit), and keeps the positions honest:

- faust 0.15 acks a batch in `take_events`' `finally`, and commits when an exception
  leaves an agent, so nothing but cancellation ever leaves the agent body;
- on every assignment the worker reads the positions stored with its effects; faust's
  consumer is replaced by one whose `perform_seek()` (run by faust after every assignment,
  and whenever records arrive while its flow is stopped) seeks every held partition to
  them, so a Kafka commit that ran ahead of the database never skips records (faust's own
  seek goes to Kafka's committed offsets, and aiokafka's `seek_to_committed` does not seek
  at all for a committed offset of 0). The stored positions are committed to Kafka too,
  so the group's offsets other tools show follow the database;
- a partition whose first record is past its stored position is sought back (flow stopped,
  buffers cleared, as faust does at a rebalance); a hole is taken as real only once a
  plain read of the log confirms there are no records in it.

Lag gauges come from the same in-memory positions (no query per scrape). A watchdog stops
the worker (non-zero exit) when aiokafka's fetcher task has ended while the worker runs:
nothing would restart it, and the process would stay up consuming nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.transport.drivers import aiokafka as kafka_driver
from faust.types import TP
from prometheus_client import Counter, Gauge

from schemas.cloudevents import from_record
from services.platform.isolation import Batch, DeadLetters, Hooks, Isolator, Parked, Partition, Record, Sink
from services.platform.kafka import no_records_between
from services.platform.settings import WorkerSettings

log = logging.getLogger(__name__)

R = TypeVar("R")

REASON_HEADER = "accordwatch-dlq-reason"
KIND_HEADER = "accordwatch-dlq-kind"
ERROR_HEADER = "accordwatch-dlq-error"
ORIGIN_HEADER = "accordwatch-dlq-origin"
GROUP_HEADER = "accordwatch-dlq-group"
GAP_RETRIES = 3
"""Seeks back to a partition's stored position before the log is read to see whether it has a hole there."""
FETCHER_CHECK_S = 5.0
"""How often the worker checks that aiokafka's fetcher task is still running."""


class FetcherEnded(RuntimeError):
    """aiokafka's fetcher task ended while the worker runs: it consumes nothing more."""


def fetcher_failure(app: Any) -> BaseException | None:
    """Why the aiokafka fetcher feeding faust's consumer thread has ended, or None while it runs (or closes).

    aiokafka's fetch task (`Fetcher.error_future`) ends only on cancellation or when an
    error escapes it (e.g. a RuntimeError from a closed transport, aio-libs/aiokafka#1038);
    aiokafka never restarts it and `getmany` then just returns nothing.
    """
    client = getattr(getattr(app.consumer, "_thread", None), "_consumer", None)  # faust's AIOKafkaConsumerThread
    fetcher = getattr(client, "_fetcher", None)
    task = getattr(fetcher, "error_future", None)
    if task is None or client is None or client._closed or not task.done():
        return None
    if task.cancelled():
        return FetcherEnded("aiokafka's fetcher task was cancelled while its consumer is open")
    exc: BaseException | None = task.exception()
    return exc if exc is not None else FetcherEnded("aiokafka's fetcher task returned while its consumer is open")


class PositionedConsumer(kafka_driver.Consumer):
    """faust's Kafka consumer, seeking each held partition to the position stored with the worker's effects."""

    async def perform_seek(self) -> None:
        await super().perform_seek()  # Kafka's committed offsets, and faust's bookkeeping of them
        stored: Callable[[], Mapping[Partition, int]] | None = getattr(self.transport, "stored_positions", None)
        if stored is None:
            return
        assigned = self.assignment()
        wanted = {TP(topic, partition): offset for (topic, partition), offset in stored().items()
                  if TP(topic, partition) in assigned}
        if not wanted:
            return
        await self.seek_wait(wanted)
        for tp, offset in wanted.items():
            # As faust's own perform_seek leaves them for a committed offset: the next record
            # read is `offset`, and acknowledgements commit from there.
            self._read_offset[tp] = offset if offset > 0 else None
            self._committed_offset[tp] = offset if offset > 0 else None


class PositionedTransport(kafka_driver.Transport):
    """faust's aiokafka transport with the `PositionedConsumer`."""

    Consumer = PositionedConsumer
    stored_positions: Callable[[], Mapping[Partition, int]] | None = None


def worker_app(settings: WorkerSettings, *, stream_buffer: int) -> faust.App:
    """A faust app with what every accordwatch worker shares (its /metrics on faust's web server).

    `stream_buffer` is how many records faust may hold for the agent beyond the batch in hand.
    """
    data_dir = settings.home / "faust" / settings.consumer_group
    data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.consumer_group,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=str(data_dir),
        web_enabled=True,
        web_bind=settings.api_host,
        web_host=settings.api_host,
        web_port=settings.worker_metrics_port,
        web_in_thread=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        consumer_metadata_max_age_ms=int(settings.kafka_metadata_max_age_s * 1000),
        producer_metadata_max_age_ms=int(settings.kafka_metadata_max_age_s * 1000),
        broker_commit_interval=1.0,
        # A crashed worker's partitions move to the others after this long (Kafka's minimum is 6 s).
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 4),
        producer_acks=-1,
        stream_buffer_maxsize=stream_buffer,
        broker_max_poll_records=settings.batch_max,
        loghandlers=[],
    )
    setup_prometheus_sensors(app, pattern="/metrics", name_prefix=f"accordwatch_{settings.service}_faust")
    app.transport = PositionedTransport(app.conf.broker_consumer, app)
    return app


@dataclass(frozen=True)
class ConsumerMetrics:
    """The metrics of a worker's consumer path (declared once, in the service's metrics module)."""

    lag: Gauge
    """Records on the topic not yet applied, by partition."""
    parked: Counter
    """Records parked on the dead-letter topic, by reason."""
    retries: Counter
    """Tries of a batch that failed transiently (the log line names the error)."""
    behind: Counter
    """Records dropped because the stored position was past them (applied already)."""
    gaps: Counter
    """Times a partition was sought back to its stored position."""


class TopicDeadLetters(DeadLetters):
    """The dead-letter topic: the record as it was, plus why, where from, and who parked it."""

    def __init__(self, topic: Any, group: str, *, timeout_s: float = 15.0) -> None:
        self.topic = topic
        self.group = group
        self.timeout_s = timeout_s

    async def send(self, record: Record, parked: Parked) -> None:
        headers = [
            *record.headers,
            (REASON_HEADER, parked.reason.encode()),
            (KIND_HEADER, parked.kind.encode()),
            (ERROR_HEADER, parked.error.encode()),
            (ORIGIN_HEADER, f"{record.topic}/{record.partition}/{record.offset}".encode()),
            (GROUP_HEADER, self.group.encode()),
        ]
        async with asyncio.timeout(self.timeout_s):
            delivered = await self.topic.send(key=record.key, value=record.value or b"", headers=headers)
            await delivered


def record_of(message: Any) -> Record:
    """Our record type from a faust message."""
    return Record(message.topic, message.partition, message.offset, message.key, message.value,
                  list(message.headers or ()), message.timestamp)


class WorkerConsumer(Generic[R]):
    """A worker's agent on the events topic, its positions, its dead letters and its lag gauges."""

    def __init__(
        self,
        app: faust.App,
        settings: WorkerSettings,
        sink: Sink[R],
        metrics: ConsumerMetrics,
        *,
        name: str,
        run: Callable[..., Awaitable[Any]],
        written: Callable[[R, Batch, Sequence[Record]], None] = lambda result, batch, records: None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.topic = settings.events_topic
        events = app.topic(self.topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                           value_serializer="raw")
        dlq = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                        value_serializer="raw")
        self.isolator: Isolator[R] = Isolator(
            sink, TopicDeadLetters(dlq, settings.consumer_group), from_record, run,
            retry_max_s=settings.retry_max_s,
            hooks=Hooks(written=written, parked=self._parked, retrying=self._retrying, behind=metrics.behind.inc,
                        gap=self._gap),
        )
        self._gap_seeks: dict[tuple[Partition, int], int] = {}
        transport: Any = app.transport
        transport.stored_positions = lambda: self.isolator.positions
        app.agent(events, name=name)(self._agent)
        signals: Any = app  # mode's signal types do not take bound async methods
        signals.on_rebalance_complete.connect(self._on_rebalance_complete)
        signals.on_partitions_revoked.connect(self._on_partitions_revoked)
        app.timer(2.0)(self._refresh_lag)
        app.timer(FETCHER_CHECK_S)(self._watch_fetcher)

    async def _agent(self, stream: Any) -> None:
        async for batch in stream.take_events(self.settings.batch_max, within=self.settings.batch_within_s):
            await self.consume([record_of(item.message) for item in batch])

    async def consume(self, records: Sequence[Record]) -> None:
        """Apply a batch; nothing but cancellation leaves (faust would ack the batch, then skip it)."""
        wait = 0.1
        while True:
            try:
                await self.isolator.apply(records)
                return
            except Exception:  # a bug in the path itself: never skip, try the batch again
                log.exception("applying a batch failed unexpectedly; trying it again in %.1fs", wait)
                self.metrics.retries.inc()
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.settings.retry_max_s)

    async def _on_rebalance_complete(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """Seek every assigned partition to the position stored with the effects (through a Kafka commit)."""
        consumer: Any = self.app.consumer
        assigned = sorted(tp for tp in consumer.assignment() if tp.topic == self.topic)
        stored = await self.isolator.stored(self.topic)
        offsets = {tp: stored.get(tp.partition, 0) for tp in assigned}
        self.isolator.positions = {(tp.topic, tp.partition): offset for tp, offset in offsets.items()}
        self._gap_seeks.clear()
        # faust's perform_seek, right after this signal, seeks there (PositionedConsumer); the
        # commit (backwards too) keeps the group's offsets in Kafka in line with the database.
        if offsets and not await consumer._commit(offsets):
            log.warning("committing the stored positions to Kafka failed (the seek goes by the database)")
        log.info("assigned %s at stored positions %s", [tp.partition for tp in assigned], list(offsets.values()))

    async def _on_partitions_revoked(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        revoked: set[TP] = args[0] if args else kwargs.get("revoked", set())
        for tp in revoked:
            if self.isolator.positions.pop((tp.topic, tp.partition), None) is not None:
                self.metrics.lag.remove(str(tp.partition))

    async def _gap(self, tp: Partition, expected: int, first: int) -> bool:
        """The first record of a partition is past its stored position: seek back, unless the log has a hole."""
        key = (tp, expected)
        tries = self._gap_seeks.get(key, 0)
        bootstrap = self.settings.kafka_bootstrap_servers
        if tries >= GAP_RETRIES and await no_records_between(bootstrap, tp, expected, first):
            log.error("%s: offsets %d..%d hold no records; going on from %d", tp, expected, first - 1, first)
            return True
        self._gap_seeks[key] = tries + 1
        log.warning("%s: next record at %d but the stored position is %d; seeking back", tp, first, expected)
        self.metrics.gaps.inc()
        await self._seek_to_stored()
        return False

    async def _seek_to_stored(self) -> None:
        """Seek every held partition to its stored position, the flow stopped as faust does at a rebalance."""
        consumer: Any = self.app.consumer
        flow = self.app.flow_control
        consumer.stop_flow()
        flow.suspend()
        flow.clear()  # records already queued for the agent are from the wrong place
        try:
            await consumer.perform_seek()
        finally:
            flow.resume()
            consumer.resume_flow()

    async def _watch_fetcher(self) -> None:
        """Stop the worker (exit status 1) once aiokafka's fetcher has ended, so a supervisor restarts it.

        The restarted worker resumes from the positions stored with its effects.
        """
        if self.app.should_stop:
            return
        failure = fetcher_failure(self.app)
        if failure is None:
            return
        log.critical("aiokafka's fetcher task has ended (%r, from %r); this worker would consume nothing more: "
                     "stopping it so that it is restarted from its stored positions", failure, failure.__cause__)
        await self.app.crash(FetcherEnded(f"aiokafka's fetcher task has ended: {failure!r}"))

    def _parked(self, parked: Parked) -> None:
        self.metrics.parked.labels(parked.kind).inc()

    def _retrying(self, exc: BaseException, wait: float) -> None:
        self.metrics.retries.inc()

    async def _refresh_lag(self) -> None:
        """Lag per held partition: the topic's end offset minus the stored position."""
        try:
            consumer = self.app.consumer
            for (topic, partition), position in list(self.isolator.positions.items()):
                highwater = consumer.highwater(TP(topic, partition))
                if highwater is not None:
                    self.metrics.lag.labels(str(partition)).set(max(0, highwater - position))
        except Exception:  # metrics must never take the worker down
            log.exception("refreshing the lag gauges failed")
