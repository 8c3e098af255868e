"""The litigation rules on the real MPP and transit-ban chains, and the region algebra beneath them."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pytest

from schemas.envelope import Event, subdivisions
from schemas.registry import parse_event
from services.domain.fold import project
from services.domain.litigation import case_facts
from services.domain.policy import PolicyStatus, policy_status
from services.domain.regions import EVERYWHERE, NOWHERE, Area
from tests.chains import (
    BAN_CASE,
    BAN_EXPECTED,
    MPP_CASE,
    MPP_EXPECTED,
    NINTH,
    SCOTUS,
    Expected,
    ban_chain,
    ids,
    mpp_chain,
)


def _events(docs: list[dict[str, Any]], recorded: str = "2026-01-01T00:00:00Z") -> list[Event]:
    return [parse_event({**doc, "recorded_at": recorded}) for doc in docs]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _policy(case: str, events: list[Event], slug: str, moment: datetime, **kw: Any) -> PolicyStatus:
    state = project(case, events, as_of=moment, **kw)
    assert state.case is not None
    return policy_status(slug, [case_facts(case, state.case)], moment)


def _answer(p: PolicyStatus) -> tuple[Any, ...]:
    return (p.status, p.blocked_in, p.since.isoformat() if p.since else None,
            (p.next_change.at.isoformat(), p.next_change.status, p.next_change.blocked_in) if p.next_change else None,
            [q.court for q in p.pending_stay_requests])


@pytest.mark.parametrize("expected", MPP_EXPECTED, ids=[e[0] for e in MPP_EXPECTED])
def test_remain_in_mexico_between_the_steps_of_2019_2020(expected: Expected) -> None:
    moment, *answer = expected
    assert _answer(_policy(MPP_CASE, _events(mpp_chain()), "mpp", _at(moment))) == tuple(answer)


@pytest.mark.parametrize("expected", BAN_EXPECTED, ids=[e[0] for e in BAN_EXPECTED])
def test_the_transit_ban_between_the_steps_of_2019(expected: Expected) -> None:
    moment, *answer = expected
    assert _answer(_policy(BAN_CASE, _events(ban_chain()), "asylum-transit-ban", _at(moment))) == tuple(answer)


def test_on_the_monday_mpp_is_in_effect_and_thursday_is_the_next_change_unless_the_supreme_court_steps_in() -> None:
    """DESIGN 3.1's example: as known before the Supreme Court's stay, Thursday is the next change; after, none."""
    docs = mpp_chain()
    events = _events(docs[:-1], "2020-03-05T00:00:00Z") + _events(docs[-1:], "2020-03-11T15:00:00Z")
    monday = _at("2020-03-09T12:00:00Z")
    before = _policy(MPP_CASE, events, "mpp", _at("2020-03-11T12:00:00Z"), known_at=_at("2020-03-10T00:00:00Z"))
    assert before.next_change is not None
    assert (before.status, before.next_change.at, before.next_change.status, before.next_change.blocked_in) == (
        "in_effect", _at("2020-03-12T00:00:00Z"), "partly_blocked", ["US-AZ", "US-CA"])
    assert [c.action for c in before.next_change.because] == ["granted_in_part"]
    assert [g.court for g in before.governing] == ["U.S. District Court for the Northern District of California"]
    assert [s.decision for s in before.governing[0].stayed_by] == ["administrative"]
    after = _policy(MPP_CASE, events, "mpp", _at("2020-03-11T16:00:00Z"))
    assert after.next_change is None
    assert {s.court for s in after.governing[0].stayed_by} == {NINTH, SCOTUS}
    assert _policy(MPP_CASE, events, "mpp", monday).next_change is not None  # the stay was decided on the 11th


def test_the_thursday_deadline_is_open_then_stayed_and_the_injunction_deadline_met() -> None:
    events = _events(mpp_chain())
    i = ids("mpp")

    def deadlines(moment: str) -> dict[str, tuple[str, str | None]]:
        state = project(MPP_CASE, events, as_of=_at(moment))
        return {d.id: (d.status, d.status_reason) for d in state.deadlines}

    assert deadlines("2019-04-09T00:00:00Z") == {i["pi"]: ("open", None)}
    assert deadlines("2019-04-20T00:00:00Z")[i["pi"]] == ("stayed", f"administrative stay by {NINTH}")
    assert deadlines("2020-03-09T00:00:00Z") == {
        i["pi"]: ("met", "took effect 2020-02-28T17:00:00+00:00"), i["partial"]: ("open", None)}
    assert deadlines("2020-03-11T12:00:00Z")[i["partial"]] == ("stayed", f"stay granted by {SCOTUS}")


def test_the_case_status_follows_requests_and_stays() -> None:
    events = _events(mpp_chain())

    def status(moment: str) -> tuple[str | None, str]:
        c = project(MPP_CASE, events, as_of=_at(moment)).case
        assert c is not None
        return c.status, str(c.status_since)

    assert status("2019-04-09T00:00:00Z") == ("ruled", "2019-04-08")
    assert status("2019-04-11T00:00:00Z") == ("stay_requested", "2019-04-10")
    assert status("2019-06-01T00:00:00Z") == ("stayed", "2019-05-07")
    assert status("2020-02-28T18:00:00Z") == ("ruled", "2020-02-28 09:00:00-08:00")
    assert status("2020-03-13T00:00:00Z") == ("stayed", "2020-03-11")


def test_a_stay_naming_no_rulings_concerns_the_blocking_rulings_of_its_case_affecting_what_it_names() -> None:
    docs = ban_chain()
    for doc in docs:
        if doc["type"] == "StayDecided":
            doc["data"]["rulings"] = []
    # Default: the Supreme Court's stay concerns both injunctions, and so does the Ninth Circuit's of
    # September 10 (it takes the place of that court's stay of August 16 on the first one).
    i = ids("ban")
    p = _policy(BAN_CASE, _events(docs), "asylum-transit-ban", _at("2019-09-12T00:00:00Z"))
    assert p.status == "in_effect"
    assert [[str(s.event_id) for s in g.stayed_by] for g in p.governing] == [[i["sep10"], i["sep11"]]] * 2
    elsewhere = [dict(doc, data={**doc["data"], "affects": ["another-policy"]}) if doc["type"] == "StayDecided"
                 else doc for doc in docs]
    q = _policy(BAN_CASE, _events(elsewhere), "asylum-transit-ban", _at("2019-09-12T00:00:00Z"))
    assert q.status == "blocked"  # stays that name another policy leave these rulings alone


CODES = ["US-AZ", "US-CA", "US-TX", "US-NM"]
UNIVERSE = frozenset(subdivisions("US"))


def _areas() -> list[Area]:
    subsets = [frozenset(c) for n in range(len(CODES) + 1) for c in itertools.combinations(CODES, n)]
    return [Area(codes, but) for codes in subsets for but in (False, True)]


def _set(area: Area) -> frozenset[str]:
    return UNIVERSE - area.codes if area.but else area.codes


def test_region_sets_obey_set_algebra() -> None:
    for a, b in itertools.product(_areas(), repeat=2):
        assert _set(a | b) == _set(a) | _set(b)
        assert _set(a & b) == _set(a) & _set(b)
        assert _set(a - b) == _set(a) - _set(b)
    assert Area.of([]) == EVERYWHERE
    assert (EVERYWHERE - EVERYWHERE).empty
    assert NOWHERE.empty
    assert Area.except_(["US-AZ"]).listed() == sorted(UNIVERSE - {"US-AZ"})


@pytest.mark.parametrize(("request_id", "decision_id"), [
    ("00000000-0000-4000-8000-000000000001", "ffffffff-ffff-4fff-bfff-ffffffffffff"),
    ("ffffffff-ffff-4fff-bfff-ffffffffffff", "00000000-0000-4000-8000-000000000001"),
], ids=["request-id-lower", "request-id-higher"])
def test_a_decision_answers_a_request_of_the_same_day_whatever_their_ids(request_id: str, decision_id: str) -> None:
    source = [{"publisher": "Court docket"}]
    docs = [
        {"id": request_id, "type": "StayRequested", "subject": "same-day", "occurred_at": "2020-03-02",
         "sources": source, "confidence": "confirmed",
         "data": {"requested_by": "DHS", "court": SCOTUS, "affects": ["mpp"]}},
        {"id": decision_id, "type": "StayDecided", "subject": "same-day", "occurred_at": "2020-03-02",
         "sources": source, "confidence": "confirmed",
         "data": {"court": SCOTUS, "decision": "denied", "affects": ["mpp"]}},
    ]
    state = project("same-day", _events(docs), as_of=_at("2020-03-03T00:00:00Z"))
    assert state.case is not None
    assert [(str(r.event_id), r.status, str(r.decided_by)) for r in state.case.stay_requests] == [
        (request_id, "denied", decision_id)]
    assert state.case.pending_stays == []
