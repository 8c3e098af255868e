"""Accepted shapes that once broke or unsettled the fold: each folds, the same way whatever the order."""

from __future__ import annotations

from itertools import permutations
from typing import Any
from uuid import UUID

import pytest

from schemas.envelope import MAX_COUNT, Event
from schemas.registry import parse_event
from services.domain.fold import advance, bounded_figure, project, resolve
from services.domain.state import MAX_FIGURE, UNSPECIFIED
from tests.samples import event

SUBJECT = "us-gt-aca-2019"
RECORDED = "2026-11-22T12:00:00Z"


def ev(kind: str, n: int, occurred: str = "2020-01-01", **data: Any) -> Event:
    doc = event(kind, subject=SUBJECT, occurred_at=occurred, id=str(UUID(int=n)), recorded_at=RECORDED)
    doc["data"].update(data)
    return parse_event(doc)


def retract(n: int, target: int) -> Event:
    return ev("EventRetracted", n, event_id=str(UUID(int=target)))


def test_retractions_of_each_other_resolve_the_same_in_every_arrival_order() -> None:
    """Two retractions naming each other: which one stands used to depend on the arrival order."""
    events = [ev("AgreementSigned", 1, parties=["US", "GT"]), retract(2, 3), retract(3, 2), retract(4, 1)]
    outcomes = {
        tuple(sorted((str(k), a.status) for k, a in resolve(list(order)).annotations.items()))
        for order in permutations(events)
    }
    assert len(outcomes) == 1
    states = {project(SUBJECT, list(order)).model_dump_json() for order in permutations(events)}
    assert len(states) == 1


def test_a_retraction_of_itself_and_a_correction_of_itself_fold() -> None:
    events = [ev("AgreementSigned", 1, parties=["US", "GT"]), retract(2, 2),
              ev("EventCorrected", 3, event_id=str(UUID(int=3)), changes={"occurred_at": "2020-02-02"})]
    state = project(SUBJECT, events)
    assert state.agreement is not None
    assert state.agreement.status == "signed"


@pytest.mark.parametrize(
    ("target", "changes"),
    [
        (("AgreementSigned", {"parties": ["US", "GT"]}), {"data": {"count": MAX_COUNT}}),  # not its field
        (("AgreementSigned", {"parties": ["US", "GT"]}), {"data": {"parties": ["US"]}}),  # NegotiationReported's rule
        (("DeadlineSet", {}), {"data": {"kind": "aca"}}),  # AgreementProposed's values
        (("TransferReported", {"period_start": "2020-01-01"}), {"data": {"period_end": "1000-01-01"}}),
        (("TransferReported", {"approximate": False}), {"data": {"nationalities": {"SV": MAX_COUNT}}}),
    ],
)
def test_a_correction_valid_by_some_type_but_wrong_for_its_target_is_recorded_not_applied(
    target: tuple[str, dict[str, Any]], changes: dict[str, Any]
) -> None:
    kind, data = target
    original = ev(kind, 1, **data)
    correction = ev("EventCorrected", 2, event_id=str(UUID(int=1)), changes=changes)
    resolution = resolve([original, correction])
    note = resolution.annotations[UUID(int=1)]
    assert note.corrected_by == []
    assert note.correction_errors
    assert "not applied" in note.correction_errors[0]
    assert resolution.facts == [original]
    project(SUBJECT, [original, correction])


def test_transfer_sums_past_32_bits_are_exact() -> None:
    reports = [ev("TransferReported", n, f"2020-01-0{n}", count=MAX_COUNT, cumulative=False, approximate=False,
                  nationalities={"SV": MAX_COUNT}, period_start=None, period_end=None) for n in range(1, 6)]
    a = project(SUBJECT, reports).agreement
    assert a is not None
    assert a.transfers_total == 5 * MAX_COUNT > 2**31
    assert a.months["2020-01"]["SV"].count == 5 * MAX_COUNT
    assert a.transfers_approximate is False


def test_a_sum_past_max_figure_is_held_at_it_and_flagged_approximate() -> None:
    """MAX_FIGURE reports of MAX_COUNT cannot be posted in a test: start from a state that has nearly that many."""
    first = ev("TransferReported", 1, "2020-01-01", count=10, cumulative=False, approximate=False,
               period_start=None, period_end=None)
    state = project(SUBJECT, [first])
    assert state.agreement is not None
    state.agreement.transfers_total = MAX_FIGURE - 5
    state.agreement.months["2020-01"][UNSPECIFIED].count = MAX_FIGURE - 5
    state.agreement.running_by_nationality[UNSPECIFIED] = MAX_FIGURE - 5
    later = ev("TransferReported", 2, "2020-01-02", count=MAX_COUNT, cumulative=False, approximate=False,
               period_start=None, period_end=None)
    after = advance(state, [later])
    assert after is not None
    assert after.agreement is not None
    assert after.agreement.transfers_total == MAX_FIGURE
    assert after.agreement.transfers_approximate is True
    bucket = after.agreement.months["2020-01"][UNSPECIFIED]
    assert (bucket.count, bucket.approximate) == (MAX_FIGURE, True)
    # A cumulative report afterwards is exact again.
    reset = ev("TransferReported", 3, "2020-01-03", count=7, cumulative=True, approximate=False,
               period_start=None, period_end=None)
    again = advance(after, [reset])
    assert again is not None
    assert again.agreement is not None
    assert (again.agreement.transfers_total, again.agreement.transfers_approximate) == (7, False)


def test_bounded_figure_holds_both_signs() -> None:
    assert bounded_figure(MAX_FIGURE + 1) == MAX_FIGURE
    assert bounded_figure(-MAX_FIGURE - 1) == -MAX_FIGURE
    assert bounded_figure(12) == 12
