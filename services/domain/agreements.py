"""How each agreement event changes an agreement's state; the fold applies them in effect order.

Status moves forward through `proposed -> negotiating -> signed -> implementing -> in_force`
and never back; `suspended` and `terminated` override from their effective time, and
`AgreementInForce` after a suspension resumes. A fact decided but not yet in effect is
recorded as scheduled, and applied when the state is folded to a time past its effect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

from schemas.envelope import Event, instant
from schemas.events import (
    AgreementInForce,
    AgreementProposed,
    AgreementSigned,
    AgreementSuspended,
    AgreementTerminated,
    ImplementationPlanAdopted,
    LegalActionCompleted,
    NegotiationReported,
    StatisticReported,
    TransferReported,
    TransferTargetAnnounced,
)
from services.domain.state import (
    MAX_FIGURE,
    PROGRESS_ORDER,
    UNSPECIFIED,
    AgreementPart,
    AgreementStatus,
    Cumulative,
    LegalAction,
    MonthBucket,
    Progress,
    Provenance,
    SubjectState,
    Transition,
)

Rule = Callable[[Any, SubjectState, bool], None]
"""(event, state, in_effect): fold one fact; `in_effect` is False for a fact whose effect is still ahead."""


def _agreement(state: SubjectState) -> AgreementPart:
    if state.agreement is None:
        state.agreement = AgreementPart()
    return state.agreement


def _set_status(a: AgreementPart, status: AgreementStatus, on: date | datetime, event: Event, *,
                again: bool = False) -> None:
    """Change the status from `on`; `again` records a repeated status (a second suspension) as a change too."""
    if a.status == status and not again:
        return
    a.status = status
    a.status_since = on
    a.confidence = event.confidence
    a.provenance["status"] = Provenance.of(event)
    a.history.append(Transition(status=status, on=on, event_id=event.event_id))


def _progress(a: AgreementPart, level: Progress, on: date | datetime, event: Event) -> bool:
    """Move the lifecycle forward (never back); suspension and termination still override."""
    if a.progress is not None and PROGRESS_ORDER[level] <= PROGRESS_ORDER[a.progress]:
        return False
    a.progress = level
    if a.override is None:
        _set_status(a, level, on, event)
    return True


def _parties(a: AgreementPart, parties: Iterable[str] | None, event: Event) -> None:
    if parties and not a.parties:
        a.parties = list(parties)
        a.provenance["parties"] = Provenance.of(event)


def _scheduled(a: AgreementPart, status: AgreementStatus, on: date | datetime, event: Event) -> None:
    a.scheduled.append(Transition(status=status, on=on, event_id=event.event_id))


def proposed(event: AgreementProposed, state: SubjectState, in_effect: bool) -> None:
    a = _agreement(state)
    _parties(a, event.data.parties, event)
    a.title = a.title or event.data.title
    a.kind = a.kind or event.data.kind
    if a.proposed_on is None:
        a.proposed_on = event.occurred_at
    _progress(a, "proposed", event.occurred_at, event)


def negotiation(event: NegotiationReported, state: SubjectState, in_effect: bool) -> None:
    a = _agreement(state)
    _parties(a, event.data.parties, event)
    _progress(a, "negotiating", event.occurred_at, event)


def signed(event: AgreementSigned, state: SubjectState, in_effect: bool) -> None:
    a = _agreement(state)
    d = event.data
    _parties(a, d.parties, event)
    if a.signed_on is None:
        a.signed_on = event.occurred_at
        a.signatories = [s.model_dump() for s in d.signatories]
        a.place = d.place
        a.excluded_nationalities = list(d.excluded_nationalities)
        a.conditions = list(d.conditions)
        a.provenance["signed_on"] = Provenance.of(event)
    _progress(a, "signed", event.occurred_at, event)


def legal_action(event: LegalActionCompleted, state: SubjectState, in_effect: bool) -> None:
    a = _agreement(state)
    a.legal_actions.append(
        LegalAction(country=event.data.country, action=event.data.action,
                    on=event.occurred_at, event_id=event.event_id)
    )
    if _progress(a, "implementing", event.occurred_at, event):
        a.implementing_since = event.occurred_at


def plan_adopted(event: ImplementationPlanAdopted, state: SubjectState, in_effect: bool) -> None:
    a = _agreement(state)
    if event.data.eligible_nationalities is not None:
        a.eligible_nationalities = list(event.data.eligible_nationalities)
    a.provenance["implementation_plan"] = Provenance.of(event)
    if _progress(a, "implementing", event.occurred_at, event):
        a.implementing_since = event.occurred_at


def in_force(event: AgreementInForce, state: SubjectState, in_effect: bool) -> None:
    """Entry into force from `effective_on`; after a suspension, a resumption (the first one is still its entry)."""
    a = _agreement(state)
    on = event.data.effective_on or event.occurred_at
    if not in_effect:
        _scheduled(a, "in_force", on, event)
        return
    if a.override == "terminated":
        return
    first = a.in_force_on is None
    if first:
        a.in_force_on = on
        a.provenance["in_force_on"] = Provenance.of(event)
    if a.override == "suspended":
        a.override = None
        a.progress = "in_force"
        if not first:
            a.resumed_on = on
        _set_status(a, "in_force", on, event)
    else:
        _progress(a, "in_force", on, event)


def suspended(event: AgreementSuspended, state: SubjectState, in_effect: bool) -> None:
    """Suspended from when it occurred; a suspension while suspended is a new one (renewed), dated anew."""
    a = _agreement(state)
    if a.override == "terminated":
        return
    a.override = "suspended"
    a.suspended_on = event.occurred_at
    a.provenance["suspended_on"] = Provenance.of(event)
    _set_status(a, "suspended", event.occurred_at, event, again=True)


def terminated(event: AgreementTerminated, state: SubjectState, in_effect: bool) -> None:
    a = _agreement(state)
    on = event.data.effective_on or event.occurred_at
    if not in_effect:
        _scheduled(a, "terminated", on, event)
        return
    if a.override == "terminated":
        return
    a.override = "terminated"
    a.terminated_on = on
    a.provenance["terminated_on"] = Provenance.of(event)
    _set_status(a, "terminated", on, event)


def month_of(moment: date | datetime) -> str:
    """The YYYY-MM a moment falls in (UTC for times)."""
    at = instant(moment)
    return f"{at.year:04d}-{at.month:02d}"


def bounded_figure(figure: int) -> int:
    """A sum held within ±MAX_FIGURE (what the read model keeps of a larger one, flagged approximate)."""
    return max(-MAX_FIGURE, min(MAX_FIGURE, figure))


def transfers(event: TransferReported, state: SubjectState, in_effect: bool) -> None:
    """The total is the latest cumulative report plus the incremental ones after it.

    Month buckets hold the people each report adds. A cumulative report below what the
    reports before it add up to sets the total lower but takes nobody out of a month:
    its month gets no negative count.
    """
    a = _agreement(state)
    d = event.data
    breakdown = dict(d.nationalities or {})
    deltas: dict[str, int] = {}
    if d.cumulative:
        total_delta = d.count - sum(a.running_by_nationality.values())
        for nationality, count in breakdown.items():
            deltas[nationality] = max(0, count - a.running_by_nationality.get(nationality, 0))
        deltas[UNSPECIFIED] = max(0, total_delta - sum(deltas.values()))
        a.transfers_total = d.count
        a.transfers_approximate = d.approximate
        a.latest_cumulative = Cumulative(count=d.count, approximate=d.approximate,
                                         event_id=event.event_id, on=event.occurred_at)
    else:
        deltas = dict(breakdown)
        deltas[UNSPECIFIED] = d.count - sum(breakdown.values())
        total = a.transfers_total + d.count
        a.transfers_total = bounded_figure(total)
        a.transfers_approximate = a.transfers_approximate or d.approximate or total != a.transfers_total
    a.transfer_reports += 1
    a.provenance["transfers_total"] = Provenance.of(event)
    buckets = a.months.setdefault(month_of(d.period_end or event.occurred_at), {})
    for nationality, delta in deltas.items():
        if delta == 0:
            continue
        a.running_by_nationality[nationality] = bounded_figure(a.running_by_nationality.get(nationality, 0) + delta)
        bucket = buckets.setdefault(nationality, MonthBucket())
        count = bucket.count + delta
        bucket.count = bounded_figure(count)
        bucket.approximate = bucket.approximate or d.approximate or count != bucket.count


def target(event: TransferTargetAnnounced, state: SubjectState, in_effect: bool) -> None:
    a = _agreement(state)
    a.transfer_target = event.data.target
    a.transfer_target_by = event.data.by
    a.provenance["transfer_target"] = Provenance.of(event)


def statistic(event: StatisticReported, state: SubjectState, in_effect: bool) -> None:
    """Statistics are rows of their own (see the projector); the subject only counts them."""


RULES: dict[type[Event], Rule] = {
    AgreementProposed: proposed,
    NegotiationReported: negotiation,
    AgreementSigned: signed,
    LegalActionCompleted: legal_action,
    ImplementationPlanAdopted: plan_adopted,
    AgreementInForce: in_force,
    AgreementSuspended: suspended,
    AgreementTerminated: terminated,
    TransferReported: transfers,
    TransferTargetAnnounced: target,
    StatisticReported: statistic,
}
