"""Reusable pieces of the fault tests: more workers, pausing our own processes, a steady poster, checks.

Only processes this test session started are ever signalled (the stack's children, a broker
or a PostgreSQL server a test started itself): the machine is shared.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import Engine, Table, select

from services.stack.broker import free_port
from services.stack.local import LocalStack
from services.stack.processes import ServiceProcess
from tests.receiver import Receiver

SOURCE = {"publisher": "Associated Press", "url": "https://apnews.com/article/accordwatch-faults"}
METRICS_PORT = {"projector-worker": "ACCORDWATCH_PROJECTOR_METRICS_PORT",
                "alerts-worker": "ACCORDWATCH_ALERTS_METRICS_PORT"}


def add_worker(stack: LocalStack, kind: str, instance: int) -> ServiceProcess:
    """Start one more `projector-worker` or `alerts-worker` in the same group (its own metrics port)."""
    proc = stack.service(kind)
    port = free_port()
    proc.name = f"{kind}-{instance}"
    proc.log = proc.log.with_name(f"{proc.name}.log")
    proc.env[METRICS_PORT[kind]] = str(port)
    proc.health_url = f"http://127.0.0.1:{port}/metrics"
    stack.services[proc.name] = proc
    proc.start()
    proc.wait_healthy(timeout=90)
    return proc


def _group_signal(pid: int | None, sig: signal.Signals) -> None:
    assert pid is not None, "the process was never started"
    os.killpg(pid, sig)


def pause(proc: ServiceProcess | Any) -> None:
    """SIGSTOP a process this session started (a ServiceProcess or anything with `.proc`)."""
    _group_signal(proc.proc.pid if proc.proc else None, signal.SIGSTOP)


def resume(proc: ServiceProcess | Any) -> None:
    """SIGCONT a process paused by `pause`."""
    _group_signal(proc.proc.pid if proc.proc else None, signal.SIGCONT)


def fresh_stays(prefix: str, n: int) -> list[dict[str, Any]]:
    """Stay requests dated now on `n` new cases: each fires a critical alert that is sent (not history)."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return [{"id": str(uuid.uuid4()), "type": "StayRequested", "subject": f"{prefix}-{i}", "occurred_at": now,
             "sources": [SOURCE], "confidence": "reported",
             "data": {"requested_by": "U.S. Department of Homeland Security",
                      "court": "Supreme Court of the United States", "affects": ["mpp"]}}
            for i in range(n)]


@dataclass
class Posted:
    """What a `Poster` saw: the ids answered 202, and every other answer with how long it took."""

    acked: set[str] = field(default_factory=set)
    answers: list[tuple[float, int, float]] = field(default_factory=list)
    """(when, status, seconds) per request; status 0 when the connection failed."""
    retried: set[str] = field(default_factory=set)

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = defaultdict(int)
        for _, status, _ in self.answers:
            counts[status] += 1
        return dict(counts)

    def slowest(self, status: int) -> float:
        return max((s for _, st, s in self.answers if st == status), default=0.0)

    @classmethod
    def merged(cls, parts: Iterable[Posted]) -> Posted:
        """What several posters saw together."""
        out = cls()
        for part in parts:
            out.acked |= part.acked
            out.answers += part.answers
            out.retried |= part.retried
        return out


class Poster(threading.Thread):
    """POSTs events in small batches at a steady rate; a batch not answered 202 is sent again, same ids.

    Retrying with the same ids is what a client of ingest does after a 503: the events may
    then be on the topic twice, and must land once.
    """

    def __init__(self, url: str, key: str, events: Sequence[dict[str, Any]], *, rate: float, batch: int = 10,
                 retry_s: float = 0.5, give_up_s: float = 180.0, timeout_s: float = 30.0) -> None:
        super().__init__(name="fault-poster", daemon=True)
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout_s)
        self.events = list(events)
        self.rate = rate
        self.batch = batch
        self.retry_s = retry_s
        self.give_up_s = give_up_s
        self.posted = Posted()
        self.error: BaseException | None = None
        self.started_at = 0.0

    def run(self) -> None:
        try:
            self.started_at = time.monotonic()
            for n, start in enumerate(range(0, len(self.events), self.batch)):
                due = self.started_at + n * self.batch / self.rate
                time.sleep(max(0.0, due - time.monotonic()))
                self._post(self.events[start:start + self.batch])
        except BaseException as exc:  # surfaced by join_checked
            self.error = exc
        finally:
            self.client.close()

    def _post(self, chunk: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + self.give_up_s
        tries = 0
        while True:
            tries += 1
            began = time.monotonic()
            try:
                response = self.client.post("/v1/events/batch", json={"events": chunk})
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            self.posted.answers.append((began - self.started_at, status, time.monotonic() - began))
            if status == 202:
                self.posted.acked.update(e["id"] for e in chunk)
                if tries > 1:
                    self.posted.retried.update(e["id"] for e in chunk)
                return
            if status not in (0, 503):
                raise AssertionError(f"ingest answered {status}: {response.text[:500]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"a batch was not accepted within {self.give_up_s}s")
            time.sleep(self.retry_s)

    def join_checked(self, timeout: float = 600.0) -> Posted:
        self.join(timeout)
        assert not self.is_alive(), "the poster did not finish"
        if self.error is not None:
            raise self.error
        return self.posted


def ids_in(engine: Engine, table: Any, column: str = "id") -> set[str]:
    """Every value of an id column, as strings."""
    t: Table = table.__table__ if hasattr(table, "__table__") else table
    with engine.connect() as conn:
        return {str(v) for v in conn.execute(select(t.c[column])).scalars()}


def wait_for_ids(engines: Iterable[tuple[str, Engine, Any]], wanted: set[str], *, timeout: float) -> float:
    """Wait until every store holds every wanted id; how long it took. Fails naming what is missing."""
    began = time.monotonic()
    pending = list(engines)
    last: dict[str, int] = {}
    while pending:
        name, engine, table = pending[0]
        missing = wanted - ids_in(engine, table)
        if not missing:
            pending.pop(0)
            continue
        last[name] = len(missing)
        if time.monotonic() - began > timeout:
            raise AssertionError(f"after {timeout}s {name} still misses {len(missing)} of {len(wanted)} ids")
        time.sleep(0.5)
    return time.monotonic() - began


def notification_duplicates(receiver: Receiver, path: str) -> dict[str, int]:
    """Per delivered alert change: how many webhook-ids carried it, and how many requests each id got."""
    ids_per_change: dict[tuple[str, str], set[str]] = defaultdict(set)
    requests_per_id: dict[str, int] = defaultdict(int)
    for r in receiver.verified(path):
        data = r.body.get("data", {})
        ids_per_change[(data.get("id", ""), data.get("transition", ""))].add(r.webhook_id)
    for p, webhook_id, _ in receiver.arrived:
        if p == path:
            requests_per_id[webhook_id] += 1
    return {
        "changes_delivered": len(ids_per_change),
        "sent_twice_with_different_webhook_ids": sum(1 for ids in ids_per_change.values() if len(ids) > 1),
        "same_webhook_id_requests_beyond_the_first": sum(n - 1 for n in requests_per_id.values()),
    }


def metric_total(url: str, name: str) -> float:
    """The sum of a metric's samples on a /metrics page (0 when absent)."""
    total = 0.0
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total


SUBJECT_COLUMNS = {"events": "subject", "parked_events": "subject", "subject_states": "subject",
                   "agreements": "id", "cases": "id", "deadlines": "subject", "transfers": "agreement",
                   "statistics": "subject"}


def subjects_differing(dump_a: dict[str, list[tuple[Any, ...]]], dump_b: dict[str, list[tuple[Any, ...]]],
                       columns: Callable[[str], list[str]]) -> set[str]:
    """The subjects whose rows differ between two read-model dumps (tests/conftest.py dump_generation)."""
    differing: set[str] = set()
    for table in set(dump_a) | set(dump_b):
        names = columns(table)
        key = SUBJECT_COLUMNS.get(table)
        index = names.index(key) if key in names else None
        for row in set(dump_a.get(table, [])) ^ set(dump_b.get(table, [])):
            differing.add(str(row[index]) if index is not None else f"<{table}>")
    return differing
