"""The alerts worker: rules on every event and on the clock, and webhook delivery.

One faust app (consumer group `accordwatch-alerts`) with:
- the platform's consumer path on `accordwatch.events`, applying each batch in one
  transaction (`AlertStore.apply`: alert transitions, notifications, outbox rows, parked
  records, offsets); a record that does not decode or whose rules raise is parked on the
  dead-letter topic and the rest goes on;
- a timer acting on due reminders, deadlines and expiries (`AlertStore.tick`);
- a long-running task delivering the outbox (`Dispatcher`): each batch hands the deliveries
  it wrote (leased to it in the same transaction) straight to per-subscriber lanes;
- one thread for every alert-store call on SQLite, so the worker's transactions never wait
  on each other's write lock (on PostgreSQL the dispatcher's claims and bookings have their own);
- faust's web server serving /metrics (faust's Prometheus sensor plus ours).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import faust
from sqlalchemy import Engine, event

from services.alerts import metrics, outbox, statements
from services.alerts.delivery import Sender
from services.alerts.dispatcher import Dispatcher
from services.alerts.egress import EgressPolicy
from services.alerts.migrate import upgrade
from services.alerts.rules import RuleSet, RulesFileError, load_rules
from services.alerts.sealing import Sealer, SealingKeyMissing
from services.alerts.settings import AlertsSettings
from services.alerts.statements import StoreThread
from services.alerts.store import AlertStore, Handoff, Outcome
from services.platform.clock import make_clock
from services.platform.consumer import ConsumerMetrics, WorkerConsumer, worker_app
from services.platform.db import make_engine
from services.platform.isolation import Batch, Record, Sink

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


def delivery_policy(settings: AlertsSettings) -> outbox.Policy:
    """Retry schedule and give-up rules from the settings."""
    return outbox.Policy(
        schedule=settings.retry_schedule,
        disable_after=settings.disable_after_failures,
        max_retry_after_s=settings.max_retry_after_s,
        lease=timedelta(seconds=settings.delivery_timeout_s + 30),
    )


class AlertsSink(Sink[Outcome]):
    """The alert store as the consumer path's port: each batch applied at the clock's time."""

    def __init__(self, store: AlertStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.handoff: Handoff | None = None
        """The dispatcher's room for this write's deliveries (set around each write by the worker)."""

    def write(self, batch: Batch) -> Outcome:
        return self.store.apply(batch, self.clock(), self.handoff)

    def positions(self, topic: str) -> dict[int, int]:
        return self.store.positions(topic)


CONSUMER_METRICS = ConsumerMetrics(
    lag=metrics.CONSUMER_LAG, parked=metrics.DLQ_RECORDS, retries=metrics.BATCH_RETRIES,
    behind=metrics.RECORDS_BEHIND, gaps=metrics.POSITION_SEEKS,
)


def sqlite_cache(engine: Engine, mb: int) -> None:
    """Give each of `engine`'s SQLite connections a page cache of `mb` MiB."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA cache_size=-{int(mb) * 1024}")


class AlertsWorker:
    """Holds the store, the dispatcher and the faust app."""

    def __init__(
        self, settings: AlertsSettings, rules: RuleSet, *, clock: Clock = utc_now, rules_clock: Clock | None = None
    ) -> None:
        """`clock` times webhook delivery (the wall clock: receivers check signatures' timestamps against
        theirs); `rules_clock` is the now the rules judge the facts by (an injected clock in tests and demos)."""
        self.settings = settings
        self.clock = clock
        self.rules_clock = rules_clock or clock
        self.engine = make_engine(settings.database_url, writer=True, busy_timeout_s=settings.sqlite_busy_timeout_s)
        if self.engine.dialect.name == "sqlite":
            sqlite_cache(self.engine, settings.sqlite_cache_mb)
        sealer = Sealer.from_settings(settings)
        upgrade(self.engine, sealer)
        statements.count(self.engine)
        self.store = AlertStore(
            self.engine, rules,
            notify_max_age=timedelta(seconds=settings.notify_max_age_s),
            late_after=timedelta(seconds=settings.late_after_s), wall_clock=clock,
        )
        self.db = StoreThread()
        # PostgreSQL takes writers side by side: the dispatcher's claims and bookings run on a
        # thread of their own, so a subscriber's results and retries never queue behind the
        # alert transactions, nor those behind them. SQLite has one writer: one thread for all.
        self.dispatch_db = self.db if self.engine.dialect.name == "sqlite" else StoreThread()
        self.sender = Sender(EgressPolicy(settings.allow_list), sealer, settings.delivery_timeout_s, clock,
                             pool_size=settings.endpoint_concurrency,
                             max_response_bytes=settings.max_response_bytes)
        self.dispatcher = Dispatcher(
            self.engine, self.sender, delivery_policy(settings),
            concurrency=settings.endpoint_concurrency, buffer=settings.endpoint_buffer, clock=clock,
            db=self.dispatch_db,
        )
        self.sink = AlertsSink(self.store, self.rules_clock)
        self.app = worker_app(settings, stream_buffer=max(4 * settings.batch_max, 4096))
        self.consumer = WorkerConsumer(self.app, settings, self.sink, CONSUMER_METRICS, name="alerts",
                                       run=self._in_store, written=self._written)
        self.app.timer(settings.tick_s)(self._tick)
        self.app.timer(2.0)(self._refresh_gauges)
        self.app.task(self._deliver)

    async def _in_store(self, call: Callable[..., T], *args: Any) -> T:
        """Run a consumer-path call on the store thread; a batch with the dispatcher's hand-off room."""
        if getattr(call, "__func__", None) is not AlertsSink.write:
            found: Any = await self.db.run("positions", call, *args)
            return cast(T, found)
        handoff, reserved = self.dispatcher.reserve()
        outcome: Outcome | None = None
        try:
            handoff.room = dict(reserved)
            self.sink.handoff = handoff
            written: Outcome = await self.db.run("apply", self.sink.write, *args)
            outcome = written
            return cast(T, written)
        finally:
            self.sink.handoff = None
            self.dispatcher.accept(reserved, outcome)

    def _written(self, outcome: Outcome, batch: Batch, records: Sequence[Record]) -> None:
        metrics.EVENTS_APPLIED.inc(outcome.new_events)
        self._count(outcome)

    async def _tick(self) -> None:
        try:
            outcome = await self.db.run("tick", self.store.tick, self.rules_clock())
        except Exception:  # the clock must keep ticking; the next tick retries
            log.exception("acting on due timers failed")
            return
        self.dispatcher.accept({}, outcome)
        self._count(outcome)

    def _count(self, outcome: Outcome) -> None:
        for rule, severity in outcome.fired:
            metrics.FIRED.labels(rule, severity).inc()
        metrics.NOTIFICATIONS.labels("true").inc(outcome.notifications - outcome.suppressed)
        metrics.NOTIFICATIONS.labels("false").inc(outcome.suppressed)

    async def _deliver(self) -> None:
        await self.sender.start()
        try:
            await self.dispatcher.run()
        finally:
            await self.sender.close()

    async def _refresh_gauges(self) -> None:
        try:
            await self._gauges()
        except Exception:  # metrics must never take the worker down
            log.exception("refreshing alerts gauges failed")

    async def _gauges(self) -> None:
        counts = await self.db.run("gauges", self.store.firing_counts)
        for rule in self.store.rules.rules:
            metrics.FIRING.labels(rule.id, rule.severity).set(counts.get((rule.id, rule.severity), 0))
        pending, disabled = await self.db.run("gauges", outbox.depth, self.engine)
        metrics.OUTBOX_DEPTH.set(pending)
        metrics.SUBSCRIPTIONS_DISABLED.set(disabled)
        in_memory, spilled = self.dispatcher.held()
        metrics.WEBHOOKS_IN_MEMORY.set(in_memory)
        metrics.SUBSCRIPTIONS_SPILLED.set(spilled)


def main() -> None:
    """Run the alerts worker in the foreground: `python -m services.alerts.worker`."""
    settings = AlertsSettings()
    try:
        rules = load_rules(settings.rules_file)
    except RulesFileError as exc:  # a bad file stops the service, naming the line
        raise SystemExit(f"accordwatch alerts: {exc}") from None
    # asyncio's loop, not uvloop: see services.platform.http.uvicorn_options (aiokafka#1038).
    try:
        worker = AlertsWorker(settings, rules, rules_clock=make_clock(settings.clock_file))
    except SealingKeyMissing as exc:
        raise SystemExit(f"accordwatch alerts: {exc}") from None
    faust.Worker(worker.app, loglevel=settings.log_level.replace("warning", "warn")).execute_from_commandline()


if __name__ == "__main__":
    main()
