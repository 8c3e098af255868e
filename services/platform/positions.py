"""Consumer positions stored with the effects they produced (the tracking records).

Each worker's tables keep, per topic partition, the next offset to read; it is written in
the same transaction as the batch's effects. With the positions a batch expected
(`Batch.expected`), the write is conditional: it only moves a partition on from exactly
where this worker believes it stands, so a stale worker's late batch (its partition moved
to another worker meanwhile) rolls back with `PositionConflict` instead of passing over
records nobody applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, bindparam, func, select, update

from services.platform.db import dialect_insert
from services.platform.isolation import Batch, Partition, PositionConflict


def save_positions(conn: Connection, table: Any, batch: Batch, now: datetime, scope: Mapping[str, Any]) -> None:
    """Store the next offset of each partition of `batch` (`scope`: further key columns, e.g. generation)."""
    t = cast(Table, table.__table__ if hasattr(table, "__table__") else table)
    positions = batch.positions()
    if not positions:
        return
    if batch.expected is None:
        insert = dialect_insert(conn, t)
        greatest = func.greatest if conn.dialect.name == "postgresql" else func.max
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[*scope, "topic", "partition"],
                set_={"next_offset": greatest(t.c.next_offset, insert.excluded.next_offset),
                      "updated_at": insert.excluded.updated_at},
            ),
            [{**scope, "topic": topic, "partition": p, "next_offset": o, "updated_at": now}
             for (topic, p), o in positions.items()],
        )
        return
    expected = {tp: batch.expected.get(tp, 0) for tp in positions}
    fresh = [tp for tp, offset in expected.items() if offset == 0]
    if fresh:
        # A partition nobody stored yet starts at 0; if another worker stored it meanwhile,
        # the conditional update below finds its row and refuses.
        conn.execute(
            dialect_insert(conn, t).on_conflict_do_nothing(),
            [{**scope, "topic": topic, "partition": p, "next_offset": 0, "updated_at": now} for topic, p in fresh],
        )
    moved = conn.execute(
        update(t).where(and_(*(t.c[name] == bindparam(f"s_{name}") for name in scope),
                             t.c.topic == bindparam("s_topic"), t.c.partition == bindparam("s_partition"),
                             t.c.next_offset == bindparam("s_expected")))
        .values(next_offset=bindparam("s_next"), updated_at=bindparam("s_at")),
        [{**{f"s_{k}": v for k, v in scope.items()}, "s_topic": topic, "s_partition": p,
          "s_expected": expected[(topic, p)], "s_next": o, "s_at": now} for (topic, p), o in positions.items()],
    )
    if moved.rowcount != len(positions):
        raise PositionConflict(_moved(conn, t, expected, scope))


def _moved(conn: Connection, t: Table, expected: Mapping[Partition, int],
           scope: Mapping[str, Any]) -> list[Partition]:
    """The partitions whose stored offset is not the expected one."""
    topics = sorted({topic for topic, _ in expected})
    stored: dict[Partition, int] = {}
    for topic in topics:
        stored.update({(topic, p): o for p, o in load_positions(conn, t, topic, scope).items()})
    return [tp for tp, offset in expected.items() if stored.get(tp, 0) != offset]


def load_positions(conn: Connection, table: Any, topic: str, scope: Mapping[str, Any]) -> dict[int, int]:
    """The stored next offset per partition of `topic`."""
    t = cast(Table, table.__table__ if hasattr(table, "__table__") else table)
    query = select(t.c.partition, t.c.next_offset).where(
        t.c.topic == topic, *(t.c[name] == value for name, value in scope.items()))
    return {int(p): int(o) for p, o in conn.execute(query)}
