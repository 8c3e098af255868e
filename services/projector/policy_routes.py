"""Policies on the query API: `GET /v1/policies` and `GET /v1/policies/{slug}?as_of=&known_at=`.

A policy is any slug named in `affects`. Its status now is derived at request time from
what the cases stored (`policy_facts`) through the pure `policy_status`; as of another time,
or as known at a time, from the events of the cases that name it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from schemas.envelope import SLUG, SLUG_MAX
from services.domain.policy import PolicyStatus
from services.platform.auth import Principal, require
from services.platform.pages import PageTokens, position_text
from services.platform.problems import Problem, problem_responses
from services.projector.params import AsOf, KnownAt, Limit, PageToken, parse_bound
from services.projector.readmodel import queries

router = APIRouter()
Reader = Annotated[Principal, Depends(require("read"))]
Slug = Annotated[str, Path(pattern=SLUG, max_length=SLUG_MAX,
                           description="The policy: a slug named in `affects` (mpp, asylum-transit-ban, ...).")]
Status = Literal["in_effect", "blocked", "partly_blocked"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StayOut(_Out):
    """A stay decision holding a ruling."""

    event_id: UUID
    court: str
    decision: str
    remaining_regions: list[str]
    effective_at: datetime


class GoverningRulingOut(_Out):
    """A ruling that blocks the policy, in force (or scheduled) and possibly stayed."""

    case: str
    event_id: UUID
    court: str
    outcome: str
    regions: list[str] = Field(description="ISO 3166-2; empty: nationwide")
    effective_at: datetime
    in_force: bool
    stayed_by: list[StayOut]


class PendingStayRequestOut(_Out):
    """A stay request not yet answered by the court asked."""

    case: str
    event_id: UUID
    requested_by: str
    court: str
    requested_at: datetime
    respond_by: datetime | None


class CauseOut(_Out):
    """A ruling or stay decision taking effect at the next change."""

    case: str
    event_id: UUID
    type: Literal["CourtRulingIssued", "StayDecided"]
    court: str
    action: str = Field(description="the ruling's outcome or the stay decision")


class NextChangeOut(_Out):
    """The next scheduled change of the policy's status (as far as the decisions made by `as_of` tell)."""

    at: datetime
    status: Status
    blocked_in: list[str]
    because: list[CauseOut]


class PolicyOut(_Out):
    """A policy: in effect, blocked, or blocked in some regions, as of a time."""

    id: str
    status: Status
    blocked_in: list[str] = Field(description="sorted ISO 3166-2 codes when partly_blocked, else []")
    since: datetime | None = Field(description="when the status began; null: it never changed")
    governing: list[GoverningRulingOut]
    pending_stay_requests: list[PendingStayRequestOut]
    next_change: NextChangeOut | None
    as_of: datetime


class PoliciesOut(_Out):
    """Policies as of now, a page at a time."""

    items: list[PolicyOut]
    next: str | None


def policy_out(status: PolicyStatus) -> PolicyOut:
    """The HTTP shape of a policy's status."""
    return PolicyOut.model_validate(status.model_dump(exclude={"next_effect_at"}))


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


@router.get("/v1/policies", summary="Every policy's status now", response_model=PoliciesOut,
            responses=problem_responses(401, 403, 422))
def list_policies(
    request: Request,
    _: Reader,
    status: Annotated[Status | None, Query()] = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> PoliciesOut:
    """Every policy named in `affects`, ordered by id, with its status, governing rulings and next change."""
    now = _now(request)
    tokens: PageTokens = request.app.state.page_tokens
    filters = {"status": status}
    after = position_text(tokens.read(page_token, "policies", filters), "after", "page_token")
    with _engine(request).connect() as conn:
        found = queries.list_policies(conn, status=status, after=after, limit=limit)
        ids = [row.id for row in found.rows]
        statuses = queries.policies_now(conn, ids, now)
    following = tokens.issue("policies", filters, {"after": found.next_after}) if found.next_after else None
    return PoliciesOut(items=[policy_out(statuses[i]) for i in ids if i in statuses], next=following)


@router.get("/v1/policies/{slug}", summary="One policy, as of any date", response_model=PolicyOut,
            responses=problem_responses(401, 403, 404, 422, s404="No case names this policy"))
def get_policy(request: Request, slug: Slug, _: Reader, as_of: AsOf = None, known_at: KnownAt = None) -> PolicyOut:
    """The policy now, or as of a date and as known at a time."""
    moment, known = parse_bound("as_of", as_of), parse_bound("known_at", known_at)
    now = _now(request)
    with _engine(request).connect() as conn:
        if not queries.policy_exists(conn, slug):
            raise Problem(404, "Unknown policy", f"no case names the policy {slug!r}", kind="not-found")
        if moment is None and known is None:
            return policy_out(queries.policies_now(conn, [slug], now)[slug])
        return policy_out(queries.policy_as_of(conn, slug, as_of=now if moment is None else moment, known_at=known))
