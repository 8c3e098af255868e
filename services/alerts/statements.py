"""What the alerts worker asks of its database: counted by role, run on one thread.

A role (`apply`, `tick`, `claim`, `book`, `gauges`, ...) is set around each piece of work
with `role(...)`; `asyncio.to_thread` carries it into the thread that runs the query.
Counts are robust on a busy machine where timings are not: the bench divides them by the
webhooks delivered to get round trips per delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Engine, event

from services.alerts import metrics

T = TypeVar("T")
_ROLE: ContextVar[str] = ContextVar("accordwatch_alerts_db_role", default="other")


@contextmanager
def role(name: str) -> Iterator[None]:
    """Attribute the statements sent inside the block to `name`."""
    token = _ROLE.set(name)
    try:
        yield
    finally:
        _ROLE.reset(token)


def count(engine: Engine) -> None:
    """Count every statement and transaction `engine` sends, by the current role."""

    @event.listens_for(engine, "before_cursor_execute")
    def on_statement(*_: Any) -> None:
        metrics.DB_STATEMENTS.labels(_ROLE.get()).inc()

    @event.listens_for(engine, "begin")
    def on_begin(*_: Any) -> None:
        metrics.DB_TRANSACTIONS.labels(_ROLE.get()).inc()


class StoreThread:
    """One thread for all of the worker's alert-store calls, in the order they are made.

    The worker's transactions (alert batches, clock ticks, claims, bookings) then never wait
    on each other's write lock: SQLite's busy handler sleeps in steps of up to 100 ms, which
    was most of the old delivery latency. The role travels with the call.
    """

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert-store")

    async def run(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the store thread, its statements counted under `name`."""
        with role(name):
            context = copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(context.run, fn, *args))

    def close(self) -> None:
        self.executor.shutdown(wait=True)
