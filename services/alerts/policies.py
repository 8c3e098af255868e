"""Policies for the alerts worker: what each case says about each policy, and each policy's status.

The same derivation as the projector's (`services.domain.policy`), on the alert store's
tables: a batch writes the facts of the cases it folded, then each policy whose facts
changed (or whose next effect came) is recomputed from committed facts, under its row lock
on PostgreSQL, so workers folding different cases of one policy never miss each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, select

from services.alerts.tables import AlertPolicy, AlertPolicyFacts
from services.domain.litigation import CaseFacts, case_facts
from services.domain.policy import PolicyStatus, facts_by_policy, policy_status
from services.domain.state import SubjectState

FACTS = cast(Table, AlertPolicyFacts.__table__)
POLICY = cast(Table, AlertPolicy.__table__)


def write_facts(conn: Connection, states: dict[str, SubjectState]) -> set[str]:
    """Store what the folded cases say about each policy; the policies whose facts changed."""
    from services.alerts.store import insert_for  # the store calls this module

    if not states:
        return set()
    stored = {(p, s): f for p, s, f in conn.execute(
        select(FACTS.c.policy, FACTS.c.subject, FACTS.c.facts).where(FACTS.c.subject.in_(sorted(states))))}
    wanted: dict[tuple[str, str], dict[str, Any]] = {}
    for subject, state in states.items():
        if state.case is not None:
            facts = case_facts(subject, state.case)
            for slug, part in facts_by_policy(facts, state.case.affects).items():
                wanted[(slug, subject)] = part.to_json()
    changed = [key for key, facts in wanted.items() if stored.get(key) != facts]
    removed = [key for key in stored if key not in wanted]
    if changed:
        stmt = insert_for(conn, FACTS)
        conn.execute(stmt.on_conflict_do_update(index_elements=["policy", "subject"],
                                                set_={"facts": stmt.excluded.facts}),
                     [{"policy": p, "subject": s, "facts": wanted[(p, s)]} for p, s in changed])
    for policy, subject in removed:
        conn.execute(delete(FACTS).where(FACTS.c.policy == policy, FACTS.c.subject == subject))
    return {policy for policy, _ in (*changed, *removed)}


def recompute(conn: Connection, slug: str, now: datetime) -> PolicyStatus | None:
    """A policy's status now from committed facts, stored; None once no case names it."""
    from services.alerts.store import insert_for

    if conn.dialect.name == "postgresql":
        conn.execute(insert_for(conn, POLICY).on_conflict_do_nothing(),
                     {"policy": slug, "status": "in_effect", "blocked_in": [], "since": None,
                      "next_effect_at": None, "updated_at": now})
        conn.execute(select(POLICY.c.policy).where(POLICY.c.policy == slug).with_for_update())
    facts = [CaseFacts.from_json(raw) for raw in conn.execute(
        select(FACTS.c.facts).where(FACTS.c.policy == slug).order_by(FACTS.c.subject)).scalars()]
    if not facts:
        conn.execute(delete(POLICY).where(POLICY.c.policy == slug))
        return None
    status = policy_status(slug, facts, now)
    row = {"policy": slug, "status": status.status, "blocked_in": status.blocked_in, "since": status.since,
           "next_effect_at": status.next_effect_at, "updated_at": now}
    stmt = insert_for(conn, POLICY)
    conn.execute(stmt.on_conflict_do_update(index_elements=["policy"],
                                            set_={k: stmt.excluded[k] for k in row if k != "policy"}), row)
    return status


def due(conn: Connection, now: datetime, *, limit: int = 500) -> list[str]:
    """Policies whose next effect has come."""
    query = select(POLICY.c.policy).where(POLICY.c.next_effect_at <= now).order_by(POLICY.c.next_effect_at)
    return list(conn.execute(query.limit(limit)).scalars())


def named(slugs: Iterable[str]) -> list[str]:
    """Policies in the order they are locked (always the same order: no deadlock between workers)."""
    return sorted(set(slugs))
