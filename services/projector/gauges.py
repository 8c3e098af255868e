"""Domain gauges of the query API, read from the active generation off the event loop, cached briefly.

The gauges a status panel needs (agreements by status, transfers per agreement, open
deadlines and the seconds to the nearest one, policies by status) are declared in `metrics.py` like
every other projector metric. In the query API process they are served by
`ReadModelGauges`, a prometheus-client collector that reads the read model's active
generation when a scrape collects it, keeps what it read for `ttl_s` seconds (so scrapes
from several Prometheus servers, or a dashboard refreshing, cost one read), sets the
declared gauges and yields them. `/metrics` collects on a worker thread, so the three
queries never run on the event loop that serves the API.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, func, select

from services.domain.policy import PolicyStatusName
from services.domain.state import AgreementStatus
from services.projector import metrics
from services.projector.readmodel.store import active_generation
from services.projector.readmodel.tables import AgreementRow, DeadlineRow, PolicyRow

log = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = get_args(AgreementStatus)
POLICY_STATUSES: tuple[str, ...] = get_args(PolicyStatusName)
NO_STATUS = "none"
"""The status label of an agreement whose events do not give it a status yet."""

DOMAIN_GAUGES: tuple[Gauge, ...] = (
    metrics.AGREEMENTS_BY_STATUS, metrics.TRANSFERS_TOTAL, metrics.OPEN_DEADLINES, metrics.NEAREST_DEADLINE,
    metrics.POLICIES_BY_STATUS,
)


@dataclass(frozen=True, slots=True)
class DomainFigures:
    """What the gauges show, read from one generation at one moment."""

    by_status: dict[str, int]
    transfers: dict[str, int]
    open_deadlines: int
    nearest_deadline_s: float | None
    policies: dict[str, int]


def read_figures(conn: Connection, now: datetime) -> DomainFigures:
    """Agreements by status, transfers per agreement, the open deadlines ahead of `now`, policies by status."""
    gen = active_generation(conn)
    by_status = dict.fromkeys(STATUSES, 0)
    for status, count in conn.execute(
        select(AgreementRow.status, func.count()).where(AgreementRow.generation == gen).group_by(AgreementRow.status)
    ):
        by_status[status or NO_STATUS] = int(count)
    transfers = {
        agreement: int(total)
        for agreement, total in conn.execute(
            select(AgreementRow.id, AgreementRow.transfers_total).where(AgreementRow.generation == gen)
        )
    }
    count, nearest = conn.execute(
        select(func.count(), func.min(DeadlineRow.due_at)).where(
            DeadlineRow.generation == gen, DeadlineRow.status == "open", DeadlineRow.due_at > now
        )
    ).one()
    policies = dict.fromkeys(POLICY_STATUSES, 0)
    for status, count_ in conn.execute(
        select(PolicyRow.status, func.count()).where(PolicyRow.generation == gen).group_by(PolicyRow.status)
    ):
        policies[status] = int(count_)
    return DomainFigures(
        by_status=by_status,
        transfers=transfers,
        open_deadlines=int(count),
        nearest_deadline_s=(nearest - now).total_seconds() if nearest is not None else None,
        policies=policies,
    )


class ReadModelGauges(Collector):
    """Sets the declared domain gauges from the read model whenever they are collected."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime], *, ttl_s: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.clock = clock
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self.reads = 0
        self._cached: tuple[float, DomainFigures] | None = None
        self._read_lock = threading.Lock()  # scrapes at once make one read
        self._lock = threading.Lock()  # two scrapes at once must not interleave clear() and set()

    def figures(self) -> DomainFigures:
        """The figures, read now unless a read younger than `ttl_s` is kept."""
        with self._read_lock:
            cached = self._cached
            if cached is not None and self.monotonic() - cached[0] < self.ttl_s:
                return cached[1]
            with self.engine.connect() as conn:
                figures = read_figures(conn, self.clock())
            self.reads += 1
            self._cached = (self.monotonic(), figures)
            return figures

    def describe(self) -> Iterable[Metric]:
        """The families served, without reading anything (registering must not query the database)."""
        return [family for gauge in DOMAIN_GAUGES for family in gauge.describe()]

    def collect(self) -> Iterable[Metric]:
        try:
            figures = self.figures()
        except Exception:  # a scrape must still answer (with the other metrics) when the database does not
            log.exception("reading the domain gauges from the read model failed")
            return []
        with self._lock:
            metrics.AGREEMENTS_BY_STATUS.clear()
            for status, count in figures.by_status.items():
                metrics.AGREEMENTS_BY_STATUS.labels(status).set(count)
            metrics.TRANSFERS_TOTAL.clear()
            for agreement, total in figures.transfers.items():
                metrics.TRANSFERS_TOTAL.labels(agreement).set(total)
            metrics.OPEN_DEADLINES.set(figures.open_deadlines)
            metrics.POLICIES_BY_STATUS.clear()
            for status, count in figures.policies.items():
                metrics.POLICIES_BY_STATUS.labels(status).set(count)
            shown = [metrics.AGREEMENTS_BY_STATUS, metrics.TRANSFERS_TOTAL, metrics.OPEN_DEADLINES,
                     metrics.POLICIES_BY_STATUS]
            if figures.nearest_deadline_s is not None:
                # No deadline ahead: the series is absent rather than a misleading 0.
                metrics.NEAREST_DEADLINE.set(figures.nearest_deadline_s)
                shown.append(metrics.NEAREST_DEADLINE)
            return [family for gauge in shown for family in gauge.collect()]


def install(collector: ReadModelGauges, registry: CollectorRegistry = REGISTRY) -> Callable[[], None]:
    """Serve the domain gauges through `collector`; returns the function that undoes it.

    The declared gauges leave the registry (so each family is exposed once, always fresh)
    and come back when the returned function runs.
    """
    for gauge in DOMAIN_GAUGES:
        with contextlib.suppress(KeyError):  # not registered: a previous install never undone
            registry.unregister(gauge)
    registry.register(collector)

    def uninstall() -> None:
        registry.unregister(collector)
        for gauge in DOMAIN_GAUGES:
            registry.register(gauge)

    return uninstall
