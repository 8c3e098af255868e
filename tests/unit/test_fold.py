"""The pure fold: lifecycle, order, duplicates, corrections, transfers, as-of and known-at."""

from __future__ import annotations

import itertools
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
    return parse_event({"id": str(uuid_utils.uuid7()), "recorded_at": recorded, **doc})  # an `id` in over wins


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


def test_a_granted_stay_holds_a_ruling_before_it_takes_effect() -> None:
    case = "innovation-law-lab-v-wolf"
    ruling = ev("CourtRulingIssued", "2020-02-28", subject=case)
    request = ev("StayRequested", "2020-03-02", subject=case)
    granted = ev("StayDecided", "2020-03-11", subject=case)
    monday = datetime(2020, 3, 9, tzinfo=UTC)
    open_state = project(case, [ruling, request], as_of=monday)
    assert open_state.case is not None
    assert open_state.case.status == "stay_requested"
    assert [d.status for d in open_state.deadlines] == ["open"]
    stayed = project(case, [ruling, request, granted])
    assert stayed.case is not None
    assert stayed.case.status == "stayed"
    assert [(d.status, d.status_by) for d in stayed.deadlines] == [("stayed", granted.id)]
    unstayed = project(case, [ruling, request])
    assert [d.status for d in unstayed.deadlines] == ["met"]  # nothing held it: it took effect


# -- issue 13: the time rules (each test failed on a9271a0) ------------------------------------------


def test_effective_on_orders_the_fold_and_the_history() -> None:
    """Defect 1: in force from 11-19 (decided 11-01) after a suspension of 11-10 is in force, in that order."""
    in_force = ev("AgreementInForce", "2019-11-01", data={"effective_on": "2019-11-19"})
    suspension = ev("AgreementSuspended", "2019-11-10", data={})
    a = project(GT, [signed("2019-10-01"), in_force, suspension]).agreement
    assert a is not None
    assert (a.status, str(a.status_since), str(a.in_force_on)) == ("in_force", "2019-11-19", "2019-11-19")
    assert [(t.status, str(t.on)) for t in a.history] == [
        ("signed", "2019-10-01"), ("suspended", "2019-11-10"), ("in_force", "2019-11-19")]


def test_a_retroactive_entry_into_force_counts_from_its_date_as_of() -> None:
    """Defect 1: decided 11-21 with effect from 11-15: as of 11-18 it is in force (the effect cuts, not the decision)."""
    retroactive = ev("AgreementInForce", "2019-11-21", data={"effective_on": "2019-11-15"})
    events = [signed("2019-10-01"), retroactive]
    assert status(events, as_of=datetime(2019, 11, 18, tzinfo=UTC)) == "in_force"
    assert status(events, as_of=datetime(2019, 11, 14, tzinfo=UTC)) == "signed"
    assert str(project(GT, events).agreement.status_since) == "2019-11-15"  # type: ignore[union-attr]


def test_a_termination_decided_for_later_is_scheduled_not_in_effect() -> None:
    """Defect 2 (the fold's part): as of now, a termination effective in 2099 is ahead, and says when."""
    now = datetime(2026, 12, 3, tzinfo=UTC)
    later = ev("AgreementTerminated", "2026-11-30", data={"reason": "notice", "effective_on": "2099-01-01"})
    events = [signed(), ev("AgreementInForce", "2019-11-21", data={}), later]
    state = project(GT, events, as_of=now)
    assert state.agreement is not None
    assert state.agreement.status == "in_force"
    assert [(t.status, str(t.on)) for t in state.agreement.scheduled] == [("terminated", "2099-01-01")]
    assert state.next_effect_at == datetime(2099, 1, 1, tzinfo=UTC)
    assert status(events, as_of=datetime(2099, 1, 2, tzinfo=UTC)) == "terminated"
    assert status(events) == "terminated"  # the end of time


def test_an_administrative_stay_then_a_denial_reopens_the_ruling_deadline() -> None:
    """Defect 3: the seed's scenario; a denial lets the ruling take effect on Thursday after all."""
    case = "innovation-law-lab-v-wolf"
    scotus = "Supreme Court of the United States"
    ruling = ev("CourtRulingIssued", "2020-03-04", subject=case)  # Ninth Circuit, effective 2020-03-12
    request = ev("StayRequested", "2020-03-05", subject=case)
    administrative = ev("StayDecided", "2020-03-06", subject=case,
                        data={"court": scotus, "decision": "administrative", "affects": ["mpp"]})
    denied = ev("StayDecided", "2020-03-10", subject=case, data={"court": scotus, "decision": "denied", "affects": ["mpp"]})
    events = [ruling, request, administrative, denied]

    def deadline(at: str) -> tuple[str, str | None]:
        [d] = project(case, events, as_of=datetime.fromisoformat(at)).deadlines
        return d.status, d.status_reason

    assert deadline("2020-03-05T12:00:00+00:00") == ("open", None)
    assert deadline("2020-03-08T00:00:00+00:00") == ("stayed", f"administrative stay by {scotus}")
    assert deadline("2020-03-10T12:00:00+00:00") == ("open", None)
    assert deadline("2020-03-13T00:00:00+00:00")[0] == "met"


def test_a_stay_of_another_ruling_leaves_a_deadline_open() -> None:
    """Defect 3: a stay closes nothing it does not concern (another ruling, named)."""
    case = "innovation-law-lab-v-wolf"
    other = ev("CourtRulingIssued", "2020-01-10", subject=case,
               data={"court": "N.D. Cal.", "outcome": "blocked", "affects": ["mpp"]})
    ruling = ev("CourtRulingIssued", "2020-03-04", subject=case)
    stay = ev("StayDecided", "2020-03-06", subject=case,
              data={"court": "Supreme Court of the United States", "decision": "granted", "rulings": [str(other.id)]})
    [d] = project(case, [other, ruling, stay], as_of=datetime(2020, 3, 9, tzinfo=UTC)).deadlines
    assert (d.event_id, d.status) == (ruling.id, "open")


def test_an_agreement_suspended_before_it_was_ever_in_force_enters_into_force() -> None:
    """Defect 4: the first AgreementInForce is its entry into force even after a suspension."""
    events = [signed("2019-10-01"), ev("AgreementSuspended", "2019-11-10", data={}),
              ev("AgreementInForce", "2019-12-01", data={})]
    a = project(GT, events).agreement
    assert a is not None
    assert (a.status, str(a.in_force_on), a.resumed_on) == ("in_force", "2019-12-01", None)


def test_a_second_suspension_dates_the_status_anew() -> None:
    """Defect 4: a suspension while suspended (renewed) moves status_since with suspended_on."""
    events = [signed("2019-10-01"), ev("AgreementInForce", "2019-11-01", data={}),
              ev("AgreementSuspended", "2019-11-10", data={}), ev("AgreementSuspended", "2019-12-10", data={})]
    a = project(GT, events).agreement
    assert a is not None
    assert (a.status, str(a.status_since), str(a.suspended_on)) == ("suspended", "2019-12-10", "2019-12-10")
    assert a.history[-1].on == a.status_since


def test_a_cumulative_report_below_the_running_total_takes_nobody_out_of_a_month() -> None:
    """Defect 4: the total follows the cumulative report; no month bucket goes negative."""
    events = [signed(), transfers("2019-12-01", 100, False), transfers("2020-01-15", 50, True),
              transfers("2020-02-15", 120, True)]
    a = project(GT, events).agreement
    assert a is not None
    assert a.transfers_total == 120
    counts = {month: sum(b.count for b in buckets.values()) for month, buckets in a.months.items()}
    assert min(counts.values()) >= 0
    assert counts == {"2019-12": 100, "2020-01": 0, "2020-02": 20}


def test_a_cycle_of_retractions_removes_the_same_events_whatever_the_arrival_order() -> None:
    """Defect 4: two retractions retracting each other, one more retracting one of them, one a fact."""
    a, b = str(uuid_utils.uuid7()), str(uuid_utils.uuid7())
    fact = transfers("2020-01-31", 500, True)
    first = ev("EventRetracted", "2020-02-01", id=a, data={"event_id": b, "reason": "b is wrong"})
    second = ev("EventRetracted", "2020-02-02", id=b, data={"event_id": a, "reason": "a is wrong"})
    third = ev("EventRetracted", "2020-02-03", data={"event_id": a, "reason": "a is wrong too"})
    plain = ev("EventRetracted", "2020-02-04", data={"event_id": str(fact.id), "reason": "wrong figure"})
    for events in ([signed(), fact, first, second, plain], [signed(), fact, first, second, third, plain]):
        outcomes = set()
        for order in itertools.permutations(events):
            notes = resolve(order).annotations
            outcomes.add(tuple(sorted((str(k), v.status, str(v.retracted_by)) for k, v in notes.items())))
        assert len(outcomes) == 1


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
