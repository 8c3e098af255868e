"""Properties of the time model over generated streams (hypothesis).

Streams mix agreement and litigation events with past and future effective dates,
corrections that move `occurred_at`, retractions of retractions, administrative, partial and
lifted stays, rulings that end earlier ones, late arrivals and duplicates. Three properties:
(a) every arrival order gives the same state; (b) the incremental paths (`advance` batch by
batch, folds in checkpointed slices) give exactly `project` of the whole set; (c) a
brute-force oracle written here, "what is in effect at T" straight from the raw events,
agrees with the fold on the agreement's status and the policy's status at sampled times.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import Event, instant, subdivisions
from schemas.registry import parse_event
from services.domain.fold import advance, fold_pairs, project, resolve, settle
from services.domain.litigation import case_facts
from services.domain.policy import PolicyStatus, policy_status
from services.domain.state import SubjectState

AGREEMENT, CASE, POLICY = "us-gt-aca-2019", "some-case-v-dhs", "mpp"
START = date(2020, 1, 1)
NS = UUID("0d9e3b5e-61a4-4f0e-9b7e-0f5bd3e1a013")
REGIONS = ["US-AZ", "US-CA", "US-TX"]
COURTS = ["Court A", "Court B", "Court C"]
UNIVERSE = frozenset(subdivisions("US"))
SOURCE = [{"publisher": "test"}]


def day(n: int) -> str:
    return (START + timedelta(days=n)).isoformat()


def at(n: int, hour: int = 12) -> datetime:
    return datetime.combine(START + timedelta(days=n), datetime.min.time(), tzinfo=UTC) + timedelta(hours=hour)


# -- generating streams ------------------------------------------------------------------------------


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A stream of events of one agreement and one case, in the order they were recorded."""
    docs: list[dict[str, Any]] = []
    rulings: list[str] = []
    decided: dict[str, int] = {}
    corrected: set[str] = set()

    def add(kind: str, subject: str, occurred: int, data: dict[str, Any]) -> str:
        event_id = str(uuid5(NS, f"{len(docs)}"))
        recorded = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=len(docs))
        docs.append({"id": event_id, "type": kind, "subject": subject, "occurred_at": day(occurred),
                     "recorded_at": recorded.isoformat(), "sources": SOURCE, "data": data})
        return event_id

    agreement_kinds = ["proposed", "signed", "legal", "in_force", "in_force", "suspended", "suspended", "terminated",
                       "transfers"]
    case_kinds = ["ruling", "ruling", "ruling", "request", "stay", "stay", "stay"]
    if draw(st.booleans()):
        add("LawsuitFiled", CASE, draw(st.integers(0, 10)), {"court": COURTS[0], "affects": [POLICY]})
    plan = (["agreement"] * draw(st.integers(0, 10)) + ["case"] * draw(st.integers(0, 12))
            + ["meta"] * draw(st.integers(0, 4)))
    plan = draw(st.permutations(plan))
    for part in plan:
        occurred = draw(st.integers(0, 40))
        effect = draw(st.one_of(st.none(), st.integers(-8, 20)))
        effective = None if effect is None else day(max(0, occurred + effect))
        kind = draw(st.sampled_from(agreement_kinds if part == "agreement" else case_kinds if part == "case"
                                    else ["retract", "correct"]))
        data: dict[str, Any]
        if kind == "proposed":
            add("AgreementProposed", AGREEMENT, occurred, {"parties": ["US", "GT"]})
        elif kind == "signed":
            add("AgreementSigned", AGREEMENT, occurred, {"parties": ["US", "GT"]})
        elif kind == "legal":
            add("LegalActionCompleted", AGREEMENT, occurred, {"country": "GT", "action": "ratified"})
        elif kind in ("in_force", "terminated"):
            data = {} if effective is None else {"effective_on": effective}
            add("AgreementInForce" if kind == "in_force" else "AgreementTerminated", AGREEMENT, occurred, data)
        elif kind == "suspended":
            add("AgreementSuspended", AGREEMENT, occurred, {})
        elif kind == "transfers":
            add("TransferReported", AGREEMENT, occurred,
                {"count": draw(st.integers(0, 300)), "cumulative": draw(st.booleans())})
        elif kind == "ruling":
            outcome = draw(st.sampled_from(["blocked", "blocked", "blocked", "vacated", "reversed", "upheld"]))
            named = draw(st.lists(st.sampled_from(rulings), max_size=2, unique=True)) if rulings else []
            reviewing: bool = draw(st.booleans())
            if named and reviewing:  # mostly reviewing what came before it
                occurred = min(40, max(decided[r] for r in named) + draw(st.integers(0, 5)))
                effective = None if effect is None else day(max(0, occurred + effect))
            data = {"court": draw(st.sampled_from(COURTS)), "outcome": outcome,
                    "regions": draw(st.lists(st.sampled_from(REGIONS), max_size=2, unique=True)),
                    "rulings": named, "affects": draw(st.sampled_from([[POLICY], [POLICY], [], ["other-policy"]]))}
            if effective is not None:
                data["effective_at"] = effective
            rulings.append(add("CourtRulingIssued", CASE, occurred, data))
            decided[rulings[-1]] = occurred
        elif kind == "request":
            add("StayRequested", CASE, occurred,
                {"requested_by": "DHS", "court": draw(st.sampled_from(COURTS)),
                 "affects": draw(st.sampled_from([[POLICY], []]))})
        elif kind == "stay":
            decision = draw(st.sampled_from(["granted", "granted_in_part", "denied", "administrative", "lifted"]))
            named = draw(st.lists(st.sampled_from(rulings), max_size=2, unique=True)) if rulings else []
            data = {"court": draw(st.sampled_from(COURTS)), "decision": decision,
                    "rulings": named if draw(st.booleans()) else [],
                    "affects": draw(st.sampled_from([[POLICY], [], ["other-policy"]]))}
            if decision == "granted_in_part":
                data["remaining_regions"] = draw(st.lists(st.sampled_from(REGIONS), min_size=1, max_size=2,
                                                          unique=True))
            if effective is not None:
                data["effective_at"] = effective
            add("StayDecided", CASE, occurred, data)
        elif kind == "retract" and docs:
            target = draw(st.sampled_from(docs))  # retractions too: retractions of retractions
            add("EventRetracted", target["subject"], occurred, {"event_id": target["id"], "reason": "wrong"})
        elif kind == "correct":
            targets = [d for d in docs if d["type"] not in ("EventRetracted", "EventCorrected")
                       and d["id"] not in corrected]
            if targets:
                target = draw(st.sampled_from(targets))
                corrected.add(target["id"])
                add("EventCorrected", target["subject"], occurred,
                    {"event_id": target["id"], "changes": {"occurred_at": day(draw(st.integers(0, 40)))}})
    return docs


def parsed(docs: Sequence[dict[str, Any]]) -> list[Event]:
    return [parse_event(doc) for doc in docs]


def of(events: Sequence[Event], subject: str) -> list[Event]:
    return [e for e in events if e.subject == subject]


def policy(state: SubjectState, moment: datetime) -> PolicyStatus | None:
    if state.case is None:
        return None
    return policy_status(POLICY, [case_facts(CASE, state.case)], moment)


TIMES = st.integers(-2, 62).map(lambda n: at(n, hour=0))


# -- (a) arrival order ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(streams(), st.randoms(use_true_random=False), TIMES)
def test_every_arrival_order_with_duplicates_gives_the_same_state(
    docs: list[dict[str, Any]], rng: random.Random, moment: datetime
) -> None:
    events = parsed(docs)
    arrived = [*events, *rng.sample(events, k=min(3, len(events)))]
    rng.shuffle(arrived)
    for subject in (AGREEMENT, CASE):
        for as_of in (moment, None):
            expected = project(subject, of(events, subject), as_of=as_of)
            got = project(subject, of(arrived, subject), as_of=as_of)
            assert got.model_dump_json() == expected.model_dump_json()
            if as_of is not None:
                assert policy(got, as_of) == policy(expected, as_of)


# -- (b) the incremental paths ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(streams(), st.randoms(use_true_random=False), st.lists(st.integers(-2, 62), min_size=1, max_size=6))
def test_advancing_batch_by_batch_as_time_goes_on_equals_one_projection(
    docs: list[dict[str, Any]], rng: random.Random, days: list[int]
) -> None:
    events = parsed(docs)
    arrived = list(events)
    rng.shuffle(arrived)  # late arrivals: an event recorded earlier may come after later ones
    clock = [at(n, hour=0) for n in sorted(days)]
    for subject in (AGREEMENT, CASE):
        mine = of(arrived, subject)
        state: SubjectState | None = None
        seen: list[Event] = []
        now = clock[0]
        position = 0
        step = 0
        while position < len(mine):
            size = rng.randrange(1, 5)
            batch = mine[position:position + size]
            position += size
            now = clock[min(step, len(clock) - 1)]
            step += 1
            seen.extend(batch)
            moved = advance(state, batch, as_of=now) if state is not None else None
            state = moved if moved is not None else project(subject, seen, as_of=now)
        if state is None:
            continue
        expected = project(subject, mine, as_of=now)
        assert state.model_dump_json() == expected.model_dump_json()
        assert policy(state, now) == policy(expected, now)


@settings(max_examples=100, deadline=None)
@given(streams(), st.lists(st.integers(0, 20), max_size=4), TIMES)
def test_folding_in_checkpointed_slices_equals_one_fold(
    docs: list[dict[str, Any]], cuts: list[int], moment: datetime
) -> None:
    """As the store does: slices of the facts in effect, checkpoints between them, one settle at the end."""
    events = parsed(docs)
    for subject in (AGREEMENT, CASE):
        resolution = resolve(of(events, subject))
        pairs = list(zip(resolution.fact_keys, resolution.facts, strict=True))
        applied = sum(1 for key, _ in pairs if key[0] <= moment)
        state = SubjectState(subject=subject, meta_targets=resolution.meta_targets)
        done = 0
        for cut in sorted({min(c, applied) for c in cuts}):
            fold_pairs(state, pairs[done:cut], as_of=moment)
            state = SubjectState.model_validate_json(state.model_dump_json())  # a checkpoint, as stored
            done = cut
        fold_pairs(state, pairs[done:], as_of=moment)
        settle(state, moment)
        expected = project(subject, of(events, subject), as_of=moment)
        assert state.model_dump_json() == expected.model_dump_json()


# -- (c) the oracle ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """An event as the oracle sees it: the document, with corrections applied."""

    id: str
    type: str
    occurred: datetime
    recorded: str
    data: dict[str, Any]

    @property
    def effective(self) -> datetime:
        moment = self.data.get("effective_on") or self.data.get("effective_at")
        return instant(date.fromisoformat(moment)) if moment else self.occurred

    @property
    def key(self) -> tuple[datetime, datetime, str, str]:
        return self.effective, self.occurred, self.recorded, self.id


def oracle_facts(docs: Sequence[dict[str, Any]], subject: str) -> list[Raw]:
    """The facts left once retractions (of retractions) and corrections are applied, by brute force."""
    docs = [d for d in docs if d["subject"] == subject]
    by_id = {d["id"]: d for d in docs}
    retractors: dict[str, list[str]] = {}
    for d in docs:
        if d["type"] == "EventRetracted":
            retractors.setdefault(d["data"]["event_id"], []).append(d["id"])

    def removed(event_id: str) -> bool:  # streams only retract what came before: no cycles here
        return any(not removed(r) for r in retractors.get(event_id, []))

    occurred = {d["id"]: d["occurred_at"] for d in docs}
    for d in docs:
        if d["type"] == "EventCorrected" and not removed(d["id"]) and d["data"]["event_id"] in by_id:
            occurred[d["data"]["event_id"]] = d["data"]["changes"]["occurred_at"]
    return [Raw(d["id"], d["type"], instant(date.fromisoformat(occurred[d["id"]])), d["recorded_at"], d["data"])
            for d in docs if d["type"] not in ("EventRetracted", "EventCorrected") and not removed(d["id"])]


LEVELS = {"AgreementProposed": "proposed", "AgreementSigned": "signed", "LegalActionCompleted": "implementing",
          "AgreementInForce": "in_force"}
ORDER = ["proposed", "negotiating", "signed", "implementing", "in_force"]


def oracle_agreement(facts: list[Raw], moment: datetime) -> str | None:
    """Terminated once a termination is in effect; else suspended if the last of suspensions and entries
    into force in effect is a suspension; else the furthest stage reached."""
    live = [f for f in facts if f.effective <= moment]
    if any(f.type == "AgreementTerminated" for f in live):
        return "terminated"
    switches = sorted((f for f in live if f.type in ("AgreementSuspended", "AgreementInForce")), key=lambda f: f.key)
    if switches and switches[-1].type == "AgreementSuspended":
        return "suspended"
    reached = [ORDER.index(LEVELS[f.type]) for f in live if f.type in LEVELS]
    return ORDER[max(reached)] if reached else None


def oracle_policy(facts: list[Raw], moment: datetime) -> tuple[str, list[str], list[str]]:
    """Status, blocked_in and pending requests' ids of the policy at `moment`, straight from the rules."""
    known = [f for f in facts if min(f.occurred, f.effective) <= moment]  # decided, or in effect, by then
    case_affects = {a for f in known for a in f.data.get("affects", [])}
    rulings = {f.id: f for f in known if f.type == "CourtRulingIssued"}
    order = {f.id: (f.occurred, f.id) for f in rulings.values()}

    def affects(f: Raw) -> set[str]:
        return set(f.data.get("affects") or case_affects)

    def blocks(f: Raw) -> bool:
        return f.data["outcome"] == "blocked" or (f.data["outcome"] == "vacated" and not f.data.get("rulings"))

    def concerns(d: Raw, ruling: Raw) -> bool:
        named = d.data.get("rulings")
        if named:
            return ruling.id in named
        wanted = set(d.data.get("affects") or [])
        return blocks(ruling) and ruling.occurred <= d.occurred and (not wanted or bool(wanted & affects(ruling)))

    def stayed(ruling: Raw) -> set[str]:
        holding: dict[str, set[str]] = {}
        decisions = sorted((f for f in known if f.type == "StayDecided" and f.effective <= moment
                            and concerns(f, ruling)), key=lambda f: (f.effective, f.occurred, f.id))
        for d in decisions:
            court = d.data["court"].casefold()
            if d.data["decision"] == "lifted":
                holding.clear()
            elif d.data["decision"] == "denied":
                holding.pop(court, None)
            elif d.data["decision"] == "granted_in_part":
                holding[court] = set(UNIVERSE) - set(d.data["remaining_regions"])
            else:
                holding[court] = set(UNIVERSE)
        return set().union(*holding.values())

    def active(ruling: Raw) -> set[str]:
        if ruling.effective > moment:
            return set()
        where = set(ruling.data.get("regions") or UNIVERSE)
        for other in rulings.values():
            if other.data["outcome"] in ("vacated", "reversed") and ruling.id in other.data.get("rulings", []) \
                    and order[ruling.id] < order[other.id]:
                where -= active(other)
        return where - stayed(ruling)

    blocked: set[str] = set()
    for ruling in rulings.values():
        if blocks(ruling) and POLICY in affects(ruling):
            blocked |= active(ruling)
    status = "in_effect" if not blocked else "blocked" if blocked == UNIVERSE else "partly_blocked"
    # Requests: each decision granting, denying or partly granting answers the latest pending one to its court
    # (made by then: a request of the same moment counts as made before the decision).
    requests = sorted((f for f in known if f.type == "StayRequested"), key=lambda f: (f.occurred, f.id))
    answered: dict[str, datetime] = {}
    for d in sorted((f for f in known if f.type == "StayDecided"), key=lambda f: (f.occurred, f.id)):
        if d.data["decision"] in ("administrative", "lifted"):
            continue
        open_ = [q for q in requests if q.id not in answered and q.occurred <= d.occurred
                 and q.data["court"].casefold() == d.data["court"].casefold()]
        if open_:
            answered[open_[-1].id] = d.occurred
    never = datetime.max.replace(tzinfo=UTC)
    pending = sorted(q.id for q in requests
                     if q.occurred <= moment < answered.get(q.id, never) and POLICY in affects(q))
    return status, sorted(blocked) if status == "partly_blocked" else [], pending


@settings(max_examples=200, deadline=None)
@given(streams(), st.lists(st.integers(-2, 62), min_size=1, max_size=5))
def test_an_oracle_over_the_raw_events_agrees_with_the_fold(docs: list[dict[str, Any]], days: list[int]) -> None:
    events = parsed(docs)
    agreement, case = oracle_facts(docs, AGREEMENT), oracle_facts(docs, CASE)
    for n in days:
        for moment in (at(n, hour=0), at(n, hour=12)):
            a = project(AGREEMENT, of(events, AGREEMENT), as_of=moment).agreement
            assert (a.status if a else None) == oracle_agreement(agreement, moment)
            state = project(CASE, of(events, CASE), as_of=moment)
            found = policy(state, moment)
            status, blocked_in, pending = oracle_policy(case, moment)
            if found is None:
                assert (status, blocked_in, pending) == ("in_effect", [], [])
                continue
            assert (found.status, found.blocked_in) == (status, blocked_in)
            assert sorted(str(q.event_id) for q in found.pending_stay_requests) == pending
            if found.next_change is not None:  # the next change is what the oracle finds at that time
                ahead = found.next_change.at
                known = [f for f in case if min(f.occurred, f.effective) <= moment]
                assert oracle_policy(known, ahead)[:2] == (found.next_change.status, found.next_change.blocked_in)
