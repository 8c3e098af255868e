"""The status of a policy as of a time, from the litigation of every case that affects it. Pure.

A policy is any slug named in `affects` (`mpp`, `asylum-transit-ban`, an agreement id).
It is blocked where a ruling blocking it is in force and not stayed (see `litigation.py`):
`in_effect` where nothing blocks it, `blocked` everywhere, `partly_blocked` in some regions.
`next_change` is the first scheduled effect after the time that changes that answer, as
far as the facts decided by then tell (a ruling taking effect on Thursday; a Supreme Court
stay decided before Thursday removes it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from services.domain.litigation import CaseFacts, RequestFact, RulingFact, StayFact, Timeline
from services.domain.regions import NOWHERE, Area

PolicyStatusName = Literal["in_effect", "blocked", "partly_blocked"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StayRef(_Out):
    """A stay decision holding a ruling."""

    event_id: UUID
    court: str
    decision: str
    remaining_regions: list[str]
    effective_at: datetime


class Governing(_Out):
    """A ruling that blocks the policy, in force or stayed."""

    case: str
    event_id: UUID
    court: str
    outcome: str
    regions: list[str]
    effective_at: datetime
    in_force: bool
    stayed_by: list[StayRef]


class PendingRequest(_Out):
    """A stay request not yet answered."""

    case: str
    event_id: UUID
    requested_by: str
    court: str
    requested_at: datetime
    respond_by: datetime | None


class Cause(_Out):
    """A ruling or stay decision taking effect at a change."""

    case: str
    event_id: UUID
    type: Literal["CourtRulingIssued", "StayDecided"]
    court: str
    action: str


class NextChange(_Out):
    """The next scheduled change of the policy's status."""

    at: datetime
    status: PolicyStatusName
    blocked_in: list[str]
    because: list[Cause]


class PolicyStatus(_Out):
    """A policy as of a time."""

    id: str
    status: PolicyStatusName
    blocked_in: list[str]
    since: datetime | None
    governing: list[Governing]
    pending_stay_requests: list[PendingRequest]
    next_change: NextChange | None
    as_of: datetime
    next_effect_at: datetime | None
    """When anything of this answer (status, stays, pending requests) next changes by itself."""


def status_of(area: Area) -> tuple[PolicyStatusName, list[str]]:
    """A policy's status and `blocked_in` for where it is blocked."""
    if area.empty:
        return "in_effect", []
    if area.everywhere:
        return "blocked", []
    return "partly_blocked", area.listed()


def facts_for(facts: CaseFacts, slug: str) -> CaseFacts:
    """The part of a case's facts that bears on one policy.

    The rulings blocking it, the rulings that end those (and so on), the stay decisions
    concerning any of them, and the stay requests that name it.
    """
    keep = {r.event_id for r in facts.rulings if r.blocks and slug in r.affects}
    grew = True
    while grew:
        enders = {r.event_id for r in facts.rulings if keep.intersection(r.ends)} - keep
        keep |= enders
        grew = bool(enders)
    rulings = tuple(r for r in facts.rulings if r.event_id in keep)
    stays = tuple(
        StayFact(s.event_id, s.court, s.decision, s.occurred, s.effective, s.remaining_regions,
                 tuple(t for t in s.targets if t in keep))
        for s in facts.stays if keep.intersection(s.targets)
    )
    requests = tuple(q for q in facts.requests if slug in q.affects)
    return CaseFacts(facts.case, rulings, stays, requests)


def facts_by_policy(facts: CaseFacts, slugs: Iterable[str] = ()) -> dict[str, CaseFacts]:
    """`facts_for` every policy the case names (`slugs`) or its facts name, in one pass over them."""
    blocking: dict[str, set[UUID]] = {}
    enders: dict[UUID, list[UUID]] = {}
    for r in facts.rulings:
        if r.blocks:
            for slug in r.affects:
                blocking.setdefault(slug, set()).add(r.event_id)
        for ended in r.ends:
            enders.setdefault(ended, []).append(r.event_id)
    requests: dict[str, list[RequestFact]] = {}
    for q in facts.requests:
        for slug in q.affects:
            requests.setdefault(slug, []).append(q)
    out: dict[str, CaseFacts] = {}
    for slug in sorted({*slugs, *blocking, *requests}):
        keep = set(blocking.get(slug, ()))
        todo = list(keep)
        while todo:
            for ender in enders.get(todo.pop(), ()):
                if ender not in keep:
                    keep.add(ender)
                    todo.append(ender)
        rulings = tuple(r for r in facts.rulings if r.event_id in keep)
        stays = tuple(
            StayFact(s.event_id, s.court, s.decision, s.occurred, s.effective, s.remaining_regions,
                     tuple(t for t in s.targets if t in keep))
            for s in facts.stays if keep.intersection(s.targets)
        ) if keep else ()
        out[slug] = CaseFacts(facts.case, rulings, stays, tuple(requests.get(slug, ())))
    return out


def policy_status(slug: str, cases: Sequence[CaseFacts], at: datetime) -> PolicyStatus:
    """Where a policy is blocked at `at`, since when, what holds the rulings, and what changes next."""
    timelines = [Timeline(facts_for(c, slug)) for c in cases]
    blocking = [(t, r) for t in timelines for r in t.facts.rulings if r.blocks and slug in r.affects]

    def blocked_at(moment: datetime) -> Area:
        area = NOWHERE
        for timeline, ruling in blocking:
            area = area | timeline.active(ruling.event_id, moment)
        return area

    points = sorted({p for timeline, ruling in blocking for p in timeline.points(ruling.event_id)})
    now = blocked_at(at)
    since: datetime | None = None
    before = NOWHERE
    for point in points:
        if point > at:
            break
        area = blocked_at(point)
        if status_of(area) != status_of(before):
            since, before = point, area
    status, blocked_in = status_of(now)
    next_change = None
    for point in (p for p in points if p > at):
        area = blocked_at(point)
        if status_of(area) != (status, blocked_in):
            changed, where = status_of(area)
            next_change = NextChange(at=point, status=changed, blocked_in=where,
                                     because=list(_causes(timelines, point)))
            break
    later = [p for p in points if p > at]
    later += [q.decided for t in timelines for q in t.facts.requests if q.decided is not None and q.decided > at]
    return PolicyStatus(
        id=slug, status=status, blocked_in=blocked_in, since=since,
        governing=list(_governing(blocking, at)), pending_stay_requests=list(_pending(timelines, at)),
        next_change=next_change, as_of=at, next_effect_at=min(later, default=None),
    )


def _governing(blocking: Iterable[tuple[Timeline, RulingFact]], at: datetime) -> Iterable[Governing]:
    for timeline, ruling in sorted(blocking, key=lambda pair: (pair[1].effective, str(pair[1].event_id))):
        if timeline.ended(ruling.event_id, at):
            continue
        stays = timeline.stays_at(ruling.event_id, at)
        in_force = ruling.effective <= at
        if not in_force and not stays:
            continue  # scheduled and nothing holds it: that is `next_change`, not governing yet
        yield Governing(
            case=timeline.facts.case, event_id=ruling.event_id, court=ruling.court, outcome=ruling.outcome,
            regions=list(ruling.regions), effective_at=ruling.effective, in_force=in_force,
            stayed_by=[StayRef(event_id=s.event_id, court=s.court, decision=s.decision,
                               remaining_regions=list(s.remaining_regions), effective_at=s.effective)
                       for s in sorted(stays, key=lambda s: (s.effective, str(s.event_id)))],
        )


def _pending(timelines: Iterable[Timeline], at: datetime) -> Iterable[PendingRequest]:
    for timeline in timelines:
        for q in timeline.facts.requests:
            if q.occurred <= at and (q.decided is None or q.decided > at):
                yield PendingRequest(case=timeline.facts.case, event_id=q.event_id, requested_by=q.requested_by,
                                     court=q.court, requested_at=q.occurred, respond_by=q.respond_by)


def _causes(timelines: Iterable[Timeline], at: datetime) -> Iterable[Cause]:
    for timeline in timelines:
        for ruling in timeline.facts.rulings:
            if ruling.effective == at:
                yield Cause(case=timeline.facts.case, event_id=ruling.event_id, type="CourtRulingIssued",
                            court=ruling.court, action=ruling.outcome)
        for stay in timeline.facts.stays:
            if stay.effective == at:
                yield Cause(case=timeline.facts.case, event_id=stay.event_id, type="StayDecided",
                            court=stay.court, action=stay.decision)
