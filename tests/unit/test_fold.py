"""The pure fold: lifecycle, order, duplicates, corrections, transfers, as-of and known-at."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import uuid_utils
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import Event
from schemas.registry import parse_event
from services.domain.fold import advance, fold, project, resolve
from tests.samples import event

GT = "us-gt-aca-2019"


def ev(kind: str, occurred: str, recorded: str = "2020-06-01T00:00:00Z", **over: Any) -> Event:
    doc = event(kind, subject=over.pop("subject", GT), occurred_at=occurred, **over)
    return parse_event({"id": str(uuid_utils.uuid7()), "recorded_at": recorded, **doc})


def signed(on: str = "2019-07-26") -> Event:
    return ev("AgreementSigned", on, data={"parties": ["US", "GT"]})


def transfers(on: str, count: int, cumulative: bool, **data: Any) -> Event:
    return ev("TransferReported", on, data={"count": count, "cumulative": cumulative, **data})


def status(events: list[Event], **kw: Any) -> str | None:
    a = project(GT, events, **kw).agreement
    return a.status if a else None


def test_lifecycle_moves_forward_whatever_the_arrival_order() -> None:
    proposed = ev("AgreementProposed", "2019-06-30", data={"parties": ["US", "GT"]})
    in_force = ev("AgreementInForce", "2019-11-21", data={"effective_on": "2019-11-21"})
    assert status([proposed]) == "proposed"
    assert status([proposed, signed()]) == "signed"
    assert status([in_force, signed(), proposed]) == "in_force"
    # A signing reported after entry into force does not move the status back.
    assert status([proposed, in_force, signed("2019-12-01")]) == "in_force"


def test_suspension_and_termination_override() -> None:
    base = [signed(), ev("AgreementInForce", "2019-11-21", data={"effective_on": "2019-11-21"})]
    suspended = ev("AgreementSuspended", "2020-03-16", data={"reason": "pandemic"})
    terminated = ev("AgreementTerminated", "2021-02-06", data={"reason": "notice", "effective_on": "2021-02-06"})
    assert status([*base, suspended]) == "suspended"
    assert status([*base, suspended, terminated]) == "terminated"
    assert status([*base, suspended, terminated], as_of=datetime(2020, 6, 1, tzinfo=UTC)) == "suspended"


def test_late_event_refolds_and_duplicates_count_once() -> None:
    sign, early, late = signed(), transfers("2020-01-31", 100, True), transfers("2019-12-15", 40, False)
    state = fold(GT, resolve([sign, early]))
    assert advance(state, [late]) is None  # earlier than the last folded event: re-fold needed
    again = transfers("2020-02-10", 5, False)
    advanced = advance(state, [again])
    assert advanced is not None
    assert advanced == project(GT, [sign, early, again])
    assert project(GT, [sign, early, again, again]).agreement.transfers_total == 105  # type: ignore[union-attr]


def test_cumulative_then_incremental_never_double_counts() -> None:
    events = [signed(), transfers("2019-12-01", 30, False), transfers("2020-03-10", 800, True, approximate=True),
              transfers("2020-03-20", 25, False, nationalities={"HN": 25})]
    a = project(GT, events).agreement
    assert a is not None
    assert (a.transfers_total, a.transfers_approximate) == (825, True)
    assert "HN" in a.months["2020-03"]


def test_retraction_and_correction() -> None:
    wrong = transfers("2020-01-31", 500, True)
    retract = ev("EventRetracted", "2020-02-01", data={"event_id": str(wrong.id), "reason": "wrong figure"})
    assert project(GT, [signed(), wrong, retract]).agreement.transfers_total == 0  # type: ignore[union-attr]
    fix = ev("EventCorrected", "2020-02-01", data={"event_id": str(wrong.id), "changes": {"data": {"count": 50}}})
    assert project(GT, [signed(), wrong, fix]).agreement.transfers_total == 50  # type: ignore[union-attr]


def test_as_of_and_known_at() -> None:
    late_news = ev("AgreementInForce", "2019-11-21", recorded="2020-05-01T00:00:00Z",
                   data={"effective_on": "2019-11-21"})
    events = [ev("AgreementSigned", "2019-07-26", recorded="2019-07-27T00:00:00Z", data={"parties": ["US", "GT"]}),
              late_news]
    assert status(events, as_of=datetime(2019, 8, 1, tzinfo=UTC)) == "signed"
    assert status(events) == "in_force"
    assert status(events, known_at=datetime(2020, 1, 1, tzinfo=UTC)) == "signed"


def test_ruling_deadline_closed_by_a_granted_stay() -> None:
    case = "innovation-law-lab-v-wolf"
    ruling = ev("CourtRulingIssued", "2020-02-28", subject=case)
    request = ev("StayRequested", "2020-03-02", subject=case)
    granted = ev("StayDecided", "2020-03-11", subject=case)
    open_state = project(case, [ruling, request])
    assert open_state.case is not None
    assert open_state.case.status == "stay_requested"
    assert [d.status for d in open_state.deadlines] == ["open"]
    closed = project(case, [ruling, request, granted])
    assert closed.case is not None
    assert closed.case.status == "stayed"
    assert [d.status for d in closed.deadlines] == ["closed"]


EVENTS = [signed(), ev("AgreementInForce", "2019-11-21", data={"effective_on": "2019-11-21"}),
          transfers("2019-12-01", 30, False), transfers("2020-01-15", 300, True, approximate=True),
          transfers("2020-02-01", 12, False, nationalities={"SV": 12}), transfers("2020-03-10", 800, True),
          ev("TransferTargetAnnounced", "2020-01-01", data={"target": 2000, "by": "2020-12-31"}),
          ev("AgreementSuspended", "2020-03-16", data={"reason": "pandemic"})]
EVENTS.append(ev("EventCorrected", "2020-03-11", data={"event_id": str(EVENTS[5].id), "changes": {"data": {"count": 810}}}))
EVENTS.append(ev("EventRetracted", "2020-03-12", data={"event_id": str(EVENTS[4].id), "reason": "double report"}))
EXPECTED = project(GT, EVENTS).model_dump_json()


@settings(max_examples=150, deadline=None)
@given(st.permutations(EVENTS), st.lists(st.sampled_from(EVENTS), max_size=6))
def test_any_permutation_with_duplicates_folds_identically(order: list[Event], repeats: list[Event]) -> None:
    assert project(GT, [*order, *repeats]).model_dump_json() == EXPECTED
