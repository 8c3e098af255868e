"""Policies in the read model, derived through the pure `policy_status` from what each case says.

`policy_facts` holds, per policy and case, the case's facts that bear on the policy; the
store writes those rows with the case's other rows. A policy's status now is derived from
them at query time; as of another time (or as known at a time) from the cases' events. The
`policies` table keeps each policy's status now for Grafana and the gauges: recomputed from
committed facts, under a row lock, whenever a case's facts about it change (in the batch's
transaction) and when its next effect comes (the projector's timer).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, select

from services.domain.litigation import CaseFacts, case_facts
from services.domain.policy import PolicyStatus, facts_by_policy, policy_status
from services.domain.state import SubjectState
from services.projector.readmodel.tables import PolicyFactRow, PolicyRow

POLICY = cast(Table, PolicyRow.__table__)


def fact_rows(gen: int, state: SubjectState) -> dict[tuple[Any, ...], dict[str, Any]]:
    """A case's `policy_facts` rows, by (policy, case)."""
    if state.case is None:
        return {}
    facts = case_facts(state.subject, state.case)
    return {
        (slug, state.subject): {"generation": gen, "policy": slug, "case": state.subject, "facts": part.to_json()}
        for slug, part in facts_by_policy(facts, state.case.affects).items()
    }


def facts_of(conn: Connection, gen: int, slugs: Sequence[str]) -> dict[str, list[CaseFacts]]:
    """The stored facts of each policy, by policy."""
    found: dict[str, list[CaseFacts]] = defaultdict(list)
    query = select(PolicyFactRow.policy, PolicyFactRow.facts).where(
        PolicyFactRow.generation == gen, PolicyFactRow.policy.in_(sorted(slugs))).order_by(PolicyFactRow.case)
    for slug, raw in conn.execute(query):
        found[slug].append(CaseFacts.from_json(raw))
    return found


def refresh(conn: Connection, gen: int, slugs: Iterable[str], now: datetime) -> int:
    """Recompute the `policies` rows of some policies as of `now`, from committed facts; how many.

    On PostgreSQL the rows are locked first (created if missing, then SELECT ... FOR UPDATE,
    in id order): a policy is affected by several cases, which other workers may be writing
    at the same time; whoever locks second reads the facts the first committed.
    """
    from services.projector.readmodel.store import upsert  # the store calls this module

    wanted = sorted(set(slugs))
    if not wanted:
        return 0
    if conn.dialect.name == "postgresql":
        conn.execute(upsert(conn, POLICY).on_conflict_do_nothing(),
                     [_placeholder(gen, slug, now) for slug in wanted])
        conn.execute(select(PolicyRow.id).where(PolicyRow.generation == gen, PolicyRow.id.in_(wanted))
                     .order_by(PolicyRow.id).with_for_update())
    facts = facts_of(conn, gen, wanted)
    gone = [slug for slug in wanted if slug not in facts]
    if gone:
        conn.execute(delete(POLICY).where(POLICY.c.generation == gen, POLICY.c.id.in_(gone)))
    rows = [_row(gen, policy_status(slug, facts[slug], now), now) for slug in wanted if slug in facts]
    if rows:
        stmt = upsert(conn, POLICY)
        keys = {"generation", "id"}
        conn.execute(stmt.on_conflict_do_update(
            index_elements=sorted(keys),
            set_={c.name: stmt.excluded[c.name] for c in POLICY.columns if c.name not in keys}), rows)
    return len(rows)


def due(conn: Connection, gen: int, now: datetime, *, limit: int = 500) -> list[str]:
    """Policies whose status changes by itself by `now` (a scheduled effect came)."""
    query = select(PolicyRow.id).where(
        PolicyRow.generation == gen, PolicyRow.next_effect_at <= now).order_by(PolicyRow.next_effect_at).limit(limit)
    return list(conn.execute(query).scalars())


def _placeholder(gen: int, slug: str, now: datetime) -> dict[str, Any]:
    return {"generation": gen, "id": slug, "status": "in_effect", "blocked_in": [], "since": None,
            "next_change_at": None, "next_change_status": None, "pending_stay_requests": 0, "document": {},
            "next_effect_at": None, "updated_at": now}


def _row(gen: int, status: PolicyStatus, now: datetime) -> dict[str, Any]:
    change = status.next_change
    return {
        "generation": gen, "id": status.id, "status": status.status, "blocked_in": status.blocked_in,
        "since": status.since, "next_change_at": change.at if change else None,
        "next_change_status": change.status if change else None,
        "pending_stay_requests": len(status.pending_stay_requests),
        "document": status.model_dump(mode="json", exclude={"as_of", "next_effect_at"}),  # as of `updated_at`
        "next_effect_at": status.next_effect_at, "updated_at": now,
    }
