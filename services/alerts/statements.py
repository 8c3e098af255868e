"""Counting what the alerts worker asks of its database: statements and transactions, by role.

A role (`apply`, `tick`, `claim`, `book`, `gauges`, ...) is set around each piece of work
with `role(...)`; `asyncio.to_thread` carries it into the thread that runs the query.
Counts are robust on a busy machine where timings are not: the bench divides them by the
webhooks delivered to get round trips per delivery.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, event

from services.alerts import metrics

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
