"""Litigation as of a time: where each ruling is in force, stayed or ended, and what that means for a case.

Pure functions over the facts of one case: its rulings, stay requests and stay decisions,
each with the time it was decided (`occurred`) and the time it takes effect (`effective`).
The fold gathers the facts; `settle_case` derives, for one time, each ruling's standing,
which request is still pending, the state of every deadline and the case's status;
`policy.py` combines the cases of a policy. The rules (DESIGN 3.1):

- A ruling is in force from its effective time (default: when issued) in its `regions`
  (none: nationwide) until a later `vacated` or `reversed` ruling naming it is in force
  and not stayed there.
- A ruling blocks what it affects when its outcome is `blocked`, or `vacated` without
  naming earlier rulings. It blocks where it is in force and not stayed.
- Stays count per ruling and per court, from their effective time (default: when
  decided): the court's latest decision holds. `granted` and `administrative` stay the
  ruling everywhere, `granted_in_part` everywhere but `remaining_regions`, `denied` not at
  all, so an administrative stay holds until the same court decides; `lifted` ends every
  stay of the ruling in effect before it.
- A StayDecided naming no rulings concerns every blocking ruling of its case issued by
  the time of the decision, and, when the decision names `affects`, only those affecting
  one of them: "the court stayed the injunction".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from schemas.envelope import instant
from schemas.events import ENDING_OUTCOMES
from services.domain.regions import EVERYWHERE, NOWHERE, Area
from services.domain.state import CasePart, Ruling, StayDecision

END_OF_TIME = datetime.max.replace(tzinfo=UTC)
"""The time a fold without `as_of` is settled at: everything that will ever take effect has."""


@dataclass(frozen=True, slots=True)
class RulingFact:
    """A ruling reduced to what its effect depends on."""

    event_id: UUID
    court: str
    outcome: str
    occurred: datetime
    effective: datetime
    regions: tuple[str, ...]
    ends: tuple[UUID, ...]
    """Earlier rulings of the case it ends (a `vacated` or `reversed` ruling naming them)."""
    affects: tuple[str, ...]
    """What it affects: its own `affects`, or the case's when it names none."""
    blocks: bool


@dataclass(frozen=True, slots=True)
class StayFact:
    """A stay decision reduced to what its effect depends on."""

    event_id: UUID
    court: str
    decision: str
    occurred: datetime
    effective: datetime
    remaining_regions: tuple[str, ...]
    targets: tuple[UUID, ...]

    @property
    def area(self) -> Area:
        """Where it stays the rulings it concerns (denied and lifted: nowhere)."""
        if self.decision in ("granted", "administrative"):
            return EVERYWHERE
        if self.decision == "granted_in_part":
            return Area.except_(self.remaining_regions)
        return NOWHERE

    def describe(self) -> str:
        """`stay granted by ...`, the words a deadline or an alert resolves with."""
        words = {"granted": "stay granted", "granted_in_part": "stay granted in part",
                 "administrative": "administrative stay", "denied": "stay denied", "lifted": "stay lifted"}
        return f"{words[self.decision]} by {self.court}"


def by_effect(stay: StayFact) -> tuple[datetime, datetime, str]:
    """Effect order of stay decisions (effective, then decided, then id)."""
    return stay.effective, stay.occurred, str(stay.event_id)


@dataclass(frozen=True, slots=True)
class RequestFact:
    """A stay request, and the decision that answered it (if one did by the time of the facts)."""

    event_id: UUID
    requested_by: str
    court: str
    occurred: datetime
    respond_by: datetime | None
    affects: tuple[str, ...]
    decided: datetime | None
    decided_by: UUID | None


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """The litigation facts of one case known at some time (all of them decided or in effect by then)."""

    case: str
    rulings: tuple[RulingFact, ...]
    stays: tuple[StayFact, ...]
    requests: tuple[RequestFact, ...]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (times as RFC 3339, ids as strings)."""
        return {
            "case": self.case,
            "rulings": [[str(r.event_id), r.court, r.outcome, r.occurred.isoformat(), r.effective.isoformat(),
                         list(r.regions), [str(x) for x in r.ends], list(r.affects), r.blocks]
                        for r in self.rulings],
            "stays": [[str(s.event_id), s.court, s.decision, s.occurred.isoformat(), s.effective.isoformat(),
                       list(s.remaining_regions), [str(x) for x in s.targets]] for s in self.stays],
            "requests": [[str(q.event_id), q.requested_by, q.court, q.occurred.isoformat(), _iso(q.respond_by),
                          list(q.affects), _iso(q.decided), str(q.decided_by) if q.decided_by else None]
                         for q in self.requests],
        }

    @staticmethod
    def from_json(raw: dict[str, Any]) -> CaseFacts:
        """The inverse of `to_json`."""
        return CaseFacts(
            raw["case"],
            tuple(RulingFact(UUID(e), c, o, _at(oc), _at(ef), tuple(rg), tuple(map(UUID, en)), tuple(af), bl)
                  for e, c, o, oc, ef, rg, en, af, bl in raw["rulings"]),
            tuple(StayFact(UUID(e), c, d, _at(oc), _at(ef), tuple(rr), tuple(map(UUID, tg)))
                  for e, c, d, oc, ef, rr, tg in raw["stays"]),
            tuple(RequestFact(UUID(e), b, c, _at(oc), _maybe_at(rb), tuple(af), _maybe_at(dc),
                              UUID(db) if db else None)
                  for e, b, c, oc, rb, af, dc, db in raw["requests"]),
        )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _maybe_at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


class Timeline:
    """Where each ruling of one case is in force, stayed and blocking, at any time (memoised)."""

    def __init__(self, facts: CaseFacts) -> None:
        self.facts = facts
        self.rulings = {r.event_id: r for r in facts.rulings}
        self._stays: dict[UUID, list[StayFact]] = defaultdict(list)
        for stay in sorted(facts.stays, key=by_effect):
            for target in stay.targets:
                if target in self.rulings:
                    self._stays[target].append(stay)
        self._enders: dict[UUID, list[RulingFact]] = defaultdict(list)
        for ruling in facts.rulings:
            for ended in ruling.ends:
                self._enders[ended].append(ruling)
        self._active: dict[tuple[UUID, datetime], Area] = {}
        self._points: dict[UUID, tuple[datetime, ...]] = {}

    def stays_at(self, ruling: UUID, at: datetime) -> list[StayFact]:
        """The decisions staying a ruling at a time (one per court at most)."""
        holding: dict[str, StayFact] = {}
        for stay in self._stays.get(ruling, ()):
            if stay.effective > at:
                break
            if stay.decision == "lifted":
                holding.clear()
            elif stay.decision == "denied":
                holding.pop(stay.court.casefold(), None)
            else:
                holding[stay.court.casefold()] = stay
        return list(holding.values())

    def stayed(self, ruling: UUID, at: datetime) -> Area:
        """Where a ruling is stayed at a time."""
        area = NOWHERE
        for stay in self.stays_at(ruling, at):
            area = area | stay.area
        return area

    def live(self, ruling: UUID, at: datetime) -> Area:
        """Where a ruling is in force at a time, stayed or not (nowhere before its effective time)."""
        fact = self.rulings[ruling]
        if fact.effective > at:
            return NOWHERE
        area = Area.of(fact.regions)
        for ender in self._enders.get(ruling, ()):
            area = area - self.active(ender.event_id, at)
            if area.empty:
                break
        return area

    def active(self, ruling: UUID, at: datetime) -> Area:
        """Where a ruling is in force and not stayed at a time."""
        key = (ruling, at)
        found = self._active.get(key)
        if found is None:
            found = self.live(ruling, at)
            if not found.empty:
                found = found - self.stayed(ruling, at)
            self._active[key] = found
        return found

    def ended(self, ruling: UUID, at: datetime) -> bool:
        """Whether a later ruling has ended it everywhere by a time."""
        return self.rulings[ruling].effective <= at and self.live(ruling, at).empty

    def points(self, ruling: UUID) -> tuple[datetime, ...]:
        """The times at which where a ruling is active may change, in order."""
        found = self._points.get(ruling)
        if found is None:
            times = {self.rulings[ruling].effective}
            times.update(stay.effective for stay in self._stays.get(ruling, ()))
            for ender in self._enders.get(ruling, ()):
                times.update(self.points(ender.event_id))
            found = self._points[ruling] = tuple(sorted(times))
        return found


# -- from the fold's state to the facts ------------------------------------------------------------


def _order(item: Ruling | StayDecision | Any) -> tuple[datetime, str]:
    return instant(item.occurred_at), str(item.event_id)


def case_facts(subject: str, c: CasePart) -> CaseFacts:
    """The facts of a case, with references and defaults resolved; fills in the derived links on `c`.

    Sorts the case's lists into their canonical order (when decided, then id), so that the
    same facts give the same state whatever order they were folded in.
    """
    c.rulings.sort(key=_order)
    c.stay_decisions.sort(key=_order)
    c.stay_requests.sort(key=_order)
    case_affects = tuple(c.affects)
    rulings: list[RulingFact] = []
    known: dict[UUID, RulingFact] = {}
    for r in c.rulings:
        occurred = instant(r.occurred_at)
        ends = tuple(x for x in r.rulings if x in known) if r.outcome in ENDING_OUTCOMES else ()
        fact = RulingFact(
            r.event_id, r.court, r.outcome, occurred,
            instant(r.effective_at) if r.effective_at is not None else occurred,
            tuple(r.regions), ends, tuple(r.affects) or case_affects,
            r.outcome == "blocked" or (r.outcome == "vacated" and not r.rulings),
        )
        rulings.append(fact)
        known[r.event_id] = fact
    stays: list[StayFact] = []
    for d in c.stay_decisions:
        occurred = instant(d.occurred_at)
        if d.rulings:
            targets = tuple(x for x in d.rulings if x in known)
        else:
            wanted = set(d.affects)
            targets = tuple(r.event_id for r in rulings if r.blocks and r.occurred <= occurred
                            and (not wanted or wanted.intersection(r.affects)))
        d.targets = list(targets)
        stays.append(StayFact(d.event_id, d.court, d.decision, occurred,
                              instant(d.effective_at) if d.effective_at is not None else occurred,
                              tuple(d.remaining_regions), targets))
    return CaseFacts(subject, tuple(rulings), tuple(stays), tuple(_answer_requests(c, case_affects)))


def _answer_requests(c: CasePart, case_affects: tuple[str, ...]) -> Iterable[RequestFact]:
    """Match each decision that answers a request (granted, in part, denied) to the request it answers.

    In the order things were decided: the latest request to the same court (names compared
    without regard to case) still pending when the decision was made; a request made at the
    same moment (the same day, for dates) counts as made before it, whatever the ids. Administrative stays
    and lifts answer no request; a decision of another court answers none either.
    """
    for request in c.stay_requests:
        request.status, request.decided_by, request.decided_on = "pending", None, None
    for decision in c.stay_decisions:
        decision.request_id = None
        if decision.decision in ("administrative", "lifted"):
            continue
        made = instant(decision.occurred_at)  # a request of the same moment (or day) came first
        court = " ".join(decision.court.casefold().split())
        pending = [r for r in c.stay_requests if r.status == "pending" and instant(r.occurred_at) <= made
                   and " ".join(r.court.casefold().split()) == court]
        if not pending:
            continue
        request = pending[-1]
        request.status = decision.decision  # type: ignore[assignment]
        request.decided_by, request.decided_on = decision.event_id, decision.occurred_at
        decision.request_id = request.event_id
    for r in c.stay_requests:
        yield RequestFact(r.event_id, r.requested_by, r.court, instant(r.occurred_at),
                          instant(r.respond_by) if r.respond_by is not None else None,
                          tuple(r.affects) or case_affects,
                          instant(r.decided_on) if r.decided_on is not None else None, r.decided_by)
