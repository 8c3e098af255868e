"""How litigation events and deadlines add to a subject's state.

Rulings, stay requests and stay decisions are kept as facts, each with when it was
decided and when it takes effect; what they mean at a time (in force, stayed, pending,
the deadlines' state, the case's status) is derived by `litigation.settle_case`, so
their fold does not depend on the order they come in.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.envelope import Event
from schemas.events import CourtRulingIssued, DeadlineSet, LawsuitFiled, StayDecided, StayRequested
from services.domain.agreements import Rule
from services.domain.state import CasePart, Deadline, Provenance, Ruling, StayDecision, StayRequest, SubjectState


def _case(state: SubjectState) -> CasePart:
    if state.case is None:
        state.case = CasePart()
    return state.case


def _affects(c: CasePart, affects: Iterable[str]) -> None:
    new = set(affects) - set(c.affects)
    if new:
        c.affects = sorted({*c.affects, *new})


def lawsuit(event: LawsuitFiled, state: SubjectState, in_effect: bool) -> None:
    c = _case(state)
    d = event.data
    c.title = c.title or d.title
    c.court = c.court or d.court
    c.filed_on = c.filed_on or event.occurred_at
    c.plaintiffs = c.plaintiffs or list(d.plaintiffs)
    c.defendants = c.defendants or list(d.defendants)
    _affects(c, d.affects)
    c.provenance.setdefault("filed_on", Provenance.of(event))


def ruling(event: CourtRulingIssued, state: SubjectState, in_effect: bool) -> None:
    c = _case(state)
    d = event.data
    c.rulings.append(
        Ruling(event_id=event.event_id, court=d.court, outcome=d.outcome, occurred_at=event.occurred_at,
               effective_at=d.effective_at, regions=list(d.regions), rulings=list(d.rulings),
               affects=list(d.affects), confidence=event.confidence)
    )
    _affects(c, d.affects)


def stay_requested(event: StayRequested, state: SubjectState, in_effect: bool) -> None:
    c = _case(state)
    d = event.data
    c.stay_requests.append(
        StayRequest(event_id=event.event_id, requested_by=d.requested_by, court=d.court,
                    occurred_at=event.occurred_at, respond_by=d.respond_by,
                    affects=list(d.affects), confidence=event.confidence)
    )
    _affects(c, d.affects)


def stay_decided(event: StayDecided, state: SubjectState, in_effect: bool) -> None:
    c = _case(state)
    d = event.data
    c.stay_decisions.append(
        StayDecision(event_id=event.event_id, court=d.court, decision=d.decision, occurred_at=event.occurred_at,
                     effective_at=d.effective_at, remaining_regions=list(d.remaining_regions),
                     rulings=list(d.rulings), affects=list(d.affects), confidence=event.confidence)
    )
    _affects(c, d.affects)


def deadline(event: DeadlineSet, state: SubjectState, in_effect: bool) -> None:
    state.deadlines.append(
        Deadline(
            id=str(event.event_id), subject=state.subject, due_at=event.data.due_at,
            description=event.data.description, kind=event.data.kind, origin="DeadlineSet",
            event_id=event.event_id, confidence=event.confidence,
        )
    )


RULES: dict[type[Event], Rule] = {
    LawsuitFiled: lawsuit,
    CourtRulingIssued: ruling,
    StayRequested: stay_requested,
    StayDecided: stay_decided,
    DeadlineSet: deadline,
}

ORDER_FREE: tuple[type[Event], ...] = (CourtRulingIssued, StayRequested, StayDecided, DeadlineSet)
"""Litigation facts whose fold only adds them: one that comes late needs no re-fold of its subject."""
