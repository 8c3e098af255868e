"""The alerts worker: rules on every event and on the clock, and webhook delivery.

One faust app (consumer group `accordwatch-alerts`) with:
- an agent taking batches from `accordwatch.events` and applying each in one transaction
  (`AlertStore.apply`: alert transitions, notifications, outbox rows, offsets);
- a timer acting on due reminders, deadlines and expiries (`AlertStore.tick`);
- a long-running task delivering the outbox (`Dispatcher`): each batch hands the deliveries
  it wrote (leased to it in the same transaction) straight to per-subscriber lanes;
- one thread for every alert-store call, so the worker's transactions never wait on each
  other's write lock;
- faust's web server serving /metrics (faust's Prometheus sensor plus ours).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import faust
import mode.loop
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import TP, EventT
from sqlalchemy.exc import SQLAlchemyError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from schemas.cloudevents import UndecodableRecord, from_record
from services.alerts import metrics, outbox, statements
from services.alerts.delivery import Sender
from services.alerts.dispatcher import Dispatcher
from services.alerts.egress import EgressPolicy
from services.alerts.migrate import upgrade
from services.alerts.rules import RuleSet, RulesFileError, load_rules
from services.alerts.settings import AlertsSettings
from services.alerts.statements import StoreThread
from services.alerts.store import AlertStore, Consumed, Outcome
from services.platform.db import make_engine

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


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


class AlertsWorker:
    """Holds the store, the dispatcher and the faust app."""

    def __init__(self, settings: AlertsSettings, rules: RuleSet, *, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.engine = make_engine(settings.database_url, writer=True)
        upgrade(self.engine)
        statements.count(self.engine)
        self.store = AlertStore(
            self.engine, rules,
            notify_max_age=timedelta(seconds=settings.notify_max_age_s),
            late_after=timedelta(seconds=settings.late_after_s),
        )
        self.db = StoreThread()
        self.sender = Sender(EgressPolicy(settings.allow_list), settings.delivery_timeout_s, clock,
                             pool_size=settings.endpoint_concurrency)
        self.dispatcher = Dispatcher(
            self.engine, self.sender, delivery_policy(settings),
            concurrency=settings.endpoint_concurrency, buffer=settings.endpoint_buffer, clock=clock, db=self.db,
        )
        data_dir = settings.home / "faust" / settings.consumer_group
        data_dir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
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
            broker_commit_interval=1.0,
            broker_session_timeout=settings.session_timeout_s,
            broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 4),
            stream_buffer_maxsize=max(4 * settings.batch_max, 4096),
            broker_max_poll_records=settings.batch_max,
            loghandlers=[],
        )
        self.events = self.app.topic(
            settings.events_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        )
        setup_prometheus_sensors(self.app, pattern="/metrics", name_prefix="accordwatch_alerts_faust")
        self.app.agent(self.events, name="alerts")(self._agent)
        self.app.timer(settings.tick_s)(self._tick)
        self.app.timer(2.0)(self._refresh_gauges)
        self.app.task(self._deliver)

    async def _agent(self, stream: Any) -> None:
        async for batch in stream.take_events(self.settings.batch_max, within=self.settings.batch_within_s):
            await self.evaluate(batch)

    async def evaluate(self, batch: Sequence[EventT[Any]]) -> None:
        """Decode a batch and apply it; undecodable records are skipped (the projector dead-letters them)."""
        consumed: list[Consumed] = []
        for item in batch:
            message = item.message
            headers = cast(list[tuple[str, bytes]], list(message.headers or []))
            try:
                event = from_record(message.key, message.value, headers)
            except UndecodableRecord as exc:
                metrics.DLQ_RECORDS.labels(exc.kind).inc()
                event = None
            consumed.append(Consumed(message.topic, message.partition, message.offset, event))
        handoff, reserved = self.dispatcher.reserve()
        outcome: Outcome | None = None
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(SQLAlchemyError), wait=wait_exponential(0.1, max=10),
                before_sleep=lambda state: log.warning("applying a batch failed (%s); retrying", state.outcome),
                reraise=True,
            ):
                with attempt:  # a database hiccup (locked, failover) retries the whole batch; it is idempotent
                    handoff.room = dict(reserved)
                    outcome = await self.db.run("apply", self.store.apply, consumed, self.clock(), handoff)
        finally:
            self.dispatcher.accept(reserved, outcome)
        assert outcome is not None
        metrics.EVENTS_APPLIED.inc(outcome.new_events)
        metrics.EVALUATION_ERRORS.inc(len(outcome.failed_subjects))
        self._count(outcome)

    async def _tick(self) -> None:
        try:
            outcome = await self.db.run("tick", self.store.tick, self.clock())
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
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
        except Exception:
            return
        positions = await self.db.run("gauges", self.store.positions, self.settings.events_topic)
        for tp in assignment:
            if tp.topic != self.settings.events_topic:
                continue
            highwater = consumer.highwater(TP(tp.topic, tp.partition))
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, highwater - positions.get(tp.partition, 0)))


def main() -> None:
    """Run the alerts worker in the foreground: `python -m services.alerts.worker`."""
    settings = AlertsSettings()
    try:
        rules = load_rules(settings.rules_file)
    except RulesFileError as exc:  # a bad file stops the service, naming the line
        raise SystemExit(f"accordwatch alerts: {exc}") from None
    mode.loop.use("uvloop")
    worker = AlertsWorker(settings, rules)
    faust.Worker(worker.app, loglevel=settings.log_level.replace("warning", "warn")).execute_from_commandline()


if __name__ == "__main__":
    main()
