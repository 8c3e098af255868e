"""The pure fold: a subject's events, in world order, to its state. No I/O, no clock.

- `resolve` applies retractions and corrections and orders the remaining facts by
  `occurred_at` (then `recorded_at`, then id), never by arrival.
- `project` folds the resolved facts, optionally as of a date (`as_of`, world time) and
  as known at a time (`known_at`, by `recorded_at`).
- `advance` is the fast path for events that come after everything folded so far; it
  returns None when a full `project` is needed (a late event, a retraction, a correction).

The same set of events yields the same state whatever order they arrived in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import singledispatch
from typing import Any
from uuid import UUID

from schemas.envelope import Event, instant
from schemas.events import (
    AgreementInForce,
    AgreementProposed,
    AgreementSigned,
    AgreementSuspended,
    AgreementTerminated,
    CourtRulingIssued,
    DeadlineSet,
    EventCorrected,
    EventRetracted,
    ImplementationPlanAdopted,
    LawsuitFiled,
    LegalActionCompleted,
    NegotiationReported,
    StatisticReported,
    StayDecided,
    StayRequested,
    TransferReported,
    TransferTargetAnnounced,
)
from schemas.registry import parse_event
from services.domain.state import (
    MAX_FIGURE,
    PROGRESS_ORDER,
    UNSPECIFIED,
    AgreementPart,
    AgreementStatus,
    CasePart,
    CaseStatus,
    Cumulative,
    Deadline,
    LegalAction,
    MonthBucket,
    Progress,
    Provenance,
    Ruling,
    SortKey,
    StayDecision,
    StayRequest,
    SubjectState,
    Transition,
)

META_TYPES = (EventRetracted, EventCorrected)


# -- resolving retractions and corrections -------------------------------------------------


@dataclass(slots=True)
class Annotation:
    """How an event stands after retractions and corrections."""

    retracted_by: UUID | None = None
    corrected_by: list[UUID] = field(default_factory=list)
    correction_errors: list[str] = field(default_factory=list)
    original: Event | None = None

    @property
    def status(self) -> str:
        """active, retracted or corrected."""
        if self.retracted_by is not None:
            return "retracted"
        return "corrected" if self.corrected_by else "active"


@dataclass(frozen=True, slots=True)
class Resolution:
    """The effective facts of a subject, in world order, and what happened to each event."""

    facts: list[Event]
    events: list[Event]
    annotations: dict[UUID, Annotation]
    meta_targets: set[UUID]
    fact_keys: list[SortKey] | None = None
    """The facts' sort keys, when already computed (same order as `facts`)."""


def resolve(events: Iterable[Event], known_at: datetime | None = None) -> Resolution:
    """Apply retractions and corrections; order the facts that remain by world time."""
    by_id: dict[UUID, Event] = {}
    for event in events:
        if known_at is not None and event.recorded_at is not None and event.recorded_at > known_at:
            continue
        by_id.setdefault(event.event_id, event)
    keyed = sorted(((e.sort_key, e) for e in by_id.values()), key=_first)
    ordered = [e for _, e in keyed]
    retractions: dict[UUID, list[EventRetracted]] = {}
    corrections: list[EventCorrected] = []
    meta_targets: set[UUID] = set()
    for event in ordered:
        if isinstance(event, EventRetracted):
            retractions.setdefault(event.data.event_id, []).append(event)
            meta_targets.add(event.data.event_id)
        elif isinstance(event, EventCorrected):
            corrections.append(event)
            meta_targets.add(event.data.event_id)
    if not meta_targets:
        # Nothing retracted or corrected: the facts are every event, already in world order.
        return Resolution(list(ordered), ordered, {eid: Annotation() for eid in by_id}, meta_targets,
                          [k for k, _ in keyed])

    in_effect_against = _retracted_by([e.event_id for e in ordered], retractions)
    annotations = {eid: Annotation(retracted_by=in_effect_against[eid]) for eid in by_id}
    effective = dict(by_id)
    for correction in corrections:
        target_id = correction.data.event_id
        if annotations[correction.event_id].retracted_by is not None or target_id not in effective:
            continue
        target = effective[target_id]
        note = annotations[target_id]
        try:
            effective[target_id] = _corrected(target, correction)
        except (ValueError, TypeError, ArithmeticError) as exc:  # InvalidEvent, or anything the re-parse raises
            note.correction_errors.append(f"correction {correction.event_id} not applied: {exc}")
            continue
        note.original = note.original or by_id[target_id]
        note.corrected_by.append(correction.event_id)

    facts = sorted(
        (
            effective[eid]
            for eid, note in annotations.items()
            if note.retracted_by is None and not isinstance(by_id[eid], META_TYPES)
        ),
        key=lambda e: e.sort_key,
    )
    return Resolution(facts, ordered, annotations, meta_targets)


def _retracted_by(order: list[UUID], retractions: dict[UUID, list[EventRetracted]]) -> dict[UUID, UUID | None]:
    """For each event, the retraction in effect against it: the first of its retractions not itself retracted.

    A depth-first walk on a stack of generators rather than Python's own (a chain of thousands
    of retractions of retractions must not exhaust the recursion limit), started from each
    event in world order. A retraction met again on the path being walked (a cycle) counts as
    not in effect there; as the walk follows world order, a cycle resolves the same way
    whatever order the events arrived in.
    """
    memo: dict[UUID, UUID | None] = {}
    on_path: Counter[UUID] = Counter()

    def walk(node: UUID) -> Generator[UUID, UUID | None, UUID | None]:
        for retraction in retractions.get(node, ()):
            rid = retraction.event_id
            if on_path[rid] - (rid == node) > 0:  # an ancestor on this path: a cycle
                continue
            if (yield rid) is None:  # that retraction is itself in effect
                return rid
        return None

    for root in order:
        if root in memo:
            continue
        stack = [(root, walk(root))]
        on_path[root] += 1
        value: UUID | None = None
        while stack:
            node, frame = stack[-1]
            try:
                asked = frame.send(value)
            except StopIteration as done:
                memo[node] = value = done.value
                on_path[node] -= 1
                stack.pop()
                continue
            if asked in memo:
                value = memo[asked]
            else:
                stack.append((asked, walk(asked)))
                on_path[asked] += 1
                value = None
    return memo


def _first(pair: tuple[SortKey, Event]) -> SortKey:
    return pair[0]


def _corrected(target: Event, correction: EventCorrected) -> Event:
    changes = correction.data.changes
    raw: dict[str, Any] = target.model_dump(mode="json", exclude_none=True)
    for name in changes.model_fields_set:
        value = getattr(changes, name)
        if name == "data":
            raw["data"] = {**raw["data"], **(value or {})}
        else:
            raw[name] = changes.model_dump(mode="json", include={name})[name]
    return parse_event(raw)


# -- folding -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Horizon:
    """World time up to which the fold applies status changes (None: no limit)."""

    as_of: datetime | None = None

    def reached(self, moment: date | datetime) -> bool:
        return self.as_of is None or instant(moment) <= self.as_of


def project(
    subject: str,
    events: Iterable[Event],
    *,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
) -> SubjectState:
    """Fold all of a subject's events: as of a world time and as known at a recording time."""
    return fold(subject, resolve(events, known_at), as_of=as_of)


def fold(subject: str, resolution: Resolution, *, as_of: datetime | None = None) -> SubjectState:
    """Fold resolved facts in world order, up to `as_of` when given."""
    state = SubjectState(subject=subject, meta_targets=resolution.meta_targets)
    horizon = Horizon(as_of)
    keys = resolution.fact_keys or [e.sort_key for e in resolution.facts]
    for event, key in zip(resolution.facts, keys, strict=True):
        if as_of is not None and key[0] > as_of:
            break
        _fold_one(event, key, state, horizon)
    return state


def fold_sorted(state: SubjectState, keyed: Sequence[tuple[SortKey, Event]]) -> SubjectState:
    """Fold facts onto a state in place: (key, event) pairs in world order, all after its last event.

    No checks: the caller knows the pairs are sorted, come after the state and hold no
    retraction or correction (`advance` is the checked way).
    """
    horizon = Horizon()
    for key, event in keyed:
        _fold_one(event, key, state, horizon)
    return state


def advance(state: SubjectState, events: Sequence[Event], *, in_place: bool = False) -> SubjectState | None:
    """Fold events that all come after the state's last one; None if a full project is needed.

    The state is copied first unless `in_place` (for a caller that owns a throwaway state,
    such as one just read from a snapshot).
    """
    keyed = sorted(((e.sort_key, e) for e in events), key=_first)
    if not keyed:
        return state
    if any(isinstance(e, META_TYPES) or e.event_id in state.meta_targets for _, e in keyed):
        return None
    last_key = state.last_key
    if last_key is not None and any(k <= last_key and not isinstance(e, ORDER_FREE_TYPES) for k, e in keyed):
        return None
    new = state if in_place else state.model_copy(deep=True)
    horizon = Horizon()
    for key, event in keyed:
        if last_key is not None and key <= last_key:
            # A late figure changes nothing in the state but its count: no re-fold needed.
            new.event_count += 1
            continue
        _fold_one(event, key, new, horizon)
    return new


# Types whose fold is independent of order: a late one needs no re-fold of its subject.
ORDER_FREE_TYPES = (StatisticReported,)


def is_meta(event: Event) -> bool:
    """Whether an event retracts or corrects another rather than stating a fact."""
    return isinstance(event, META_TYPES)


def _fold_one(event: Event, key: SortKey, state: SubjectState, horizon: Horizon) -> None:
    _apply(event, state, horizon)
    state.event_count += 1
    state.last_event_at = event.occurred_at
    state.last_event_id = event.event_id
    state.last_event_type = event.type
    state.last_key = key


def _provenance(event: Event) -> Provenance:
    # Built from an event that was validated already (sources included): no second validation.
    return Provenance.model_construct(
        event_id=event.event_id,
        type=event.type,
        occurred_at=event.occurred_at,
        confidence=event.confidence,
        sources=tuple(event.sources),
    )


@singledispatch
def _apply(event: Event, state: SubjectState, horizon: Horizon) -> None:
    """Fold one fact into the state (one registration per event type)."""
    raise TypeError(f"no fold rule for {type(event).__name__}")


# -- agreements ----------------------------------------------------------------------------


def _agreement(state: SubjectState) -> AgreementPart:
    if state.agreement is None:
        state.agreement = AgreementPart()
    return state.agreement


def _set_status(
    a: AgreementPart, status: AgreementStatus, on: date | datetime, event: Event
) -> None:
    if a.status == status:
        return
    a.status = status
    a.status_since = on
    a.confidence = event.confidence
    a.provenance["status"] = _provenance(event)
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
        a.provenance["parties"] = _provenance(event)


@_apply.register
def _(event: AgreementProposed, state: SubjectState, horizon: Horizon) -> None:
    a = _agreement(state)
    _parties(a, event.data.parties, event)
    a.title = a.title or event.data.title
    a.kind = a.kind or event.data.kind
    if a.proposed_on is None:
        a.proposed_on = event.occurred_at
    _progress(a, "proposed", event.occurred_at, event)


@_apply.register
def _(event: NegotiationReported, state: SubjectState, horizon: Horizon) -> None:
    a = _agreement(state)
    _parties(a, event.data.parties, event)
    _progress(a, "negotiating", event.occurred_at, event)


@_apply.register
def _(event: AgreementSigned, state: SubjectState, horizon: Horizon) -> None:
    a = _agreement(state)
    d = event.data
    _parties(a, d.parties, event)
    if a.signed_on is None:
        a.signed_on = event.occurred_at
        a.signatories = [s.model_dump() for s in d.signatories]
        a.place = d.place
        a.excluded_nationalities = list(d.excluded_nationalities)
        a.conditions = list(d.conditions)
        a.provenance["signed_on"] = _provenance(event)
    _progress(a, "signed", event.occurred_at, event)


@_apply.register
def _(event: LegalActionCompleted, state: SubjectState, horizon: Horizon) -> None:
    a = _agreement(state)
    a.legal_actions.append(
        LegalAction(country=event.data.country, action=event.data.action,
                    on=event.occurred_at, event_id=event.event_id)
    )
    if _progress(a, "implementing", event.occurred_at, event):
        a.implementing_since = event.occurred_at


@_apply.register
def _(event: ImplementationPlanAdopted, state: SubjectState, horizon: Horizon) -> None:
    a = _agreement(state)
    if event.data.eligible_nationalities is not None:
        a.eligible_nationalities = list(event.data.eligible_nationalities)
    a.provenance["implementation_plan"] = _provenance(event)
    if _progress(a, "implementing", event.occurred_at, event):
        a.implementing_since = event.occurred_at


@_apply.register
def _(event: AgreementInForce, state: SubjectState, horizon: Horizon) -> None:
    a = _agreement(state)
    on = event.data.effective_on or event.occurred_at
    if not horizon.reached(on) or a.override == "terminated":
        return
    if a.override == "suspended":
        a.override = None
        a.progress = "in_force"
        a.resumed_on = on
        _set_status(a, "in_force", on, event)
    elif _progress(a, "in_force", on, event):
        a.in_force_on = on
        a.provenance["in_force_on"] = _provenance(event)


@_apply.register
def _(event: AgreementSuspended, state: SubjectState, horizon: Horizon) -> None:
    a = _agreement(state)
    if a.override == "terminated":
        return
    a.override = "suspended"
    a.suspended_on = event.occurred_at
    a.provenance["suspended_on"] = _provenance(event)
    _set_status(a, "suspended", event.occurred_at, event)


@_apply.register
def _(event: AgreementTerminated, state: SubjectState, horizon: Horizon) -> None:
    a = _agreement(state)
    on = event.data.effective_on or event.occurred_at
    if not horizon.reached(on) or a.override == "terminated":
        return
    a.override = "terminated"
    a.terminated_on = on
    a.provenance["terminated_on"] = _provenance(event)
    _set_status(a, "terminated", on, event)


def month_of(moment: date | datetime) -> str:
    """The YYYY-MM a moment falls in (UTC for times)."""
    at = instant(moment)
    return f"{at.year:04d}-{at.month:02d}"


def bounded_figure(figure: int) -> int:
    """A sum held within ±MAX_FIGURE (what the read model keeps of a larger one, flagged approximate)."""
    return max(-MAX_FIGURE, min(MAX_FIGURE, figure))


@_apply.register
def _(event: TransferReported, state: SubjectState, horizon: Horizon) -> None:
    a = _agreement(state)
    d = event.data
    breakdown = dict(d.nationalities or {})
    deltas: dict[str, int] = {}
    if d.cumulative:
        total_delta = d.count - a.transfers_total
        for nationality, count in breakdown.items():
            deltas[nationality] = count - a.running_by_nationality.get(nationality, 0)
        deltas[UNSPECIFIED] = total_delta - sum(deltas.values())
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
    a.provenance["transfers_total"] = _provenance(event)
    buckets = a.months.setdefault(month_of(d.period_end or event.occurred_at), {})
    for nationality, delta in deltas.items():
        if delta == 0:
            continue
        a.running_by_nationality[nationality] = bounded_figure(a.running_by_nationality.get(nationality, 0) + delta)
        bucket = buckets.setdefault(nationality, MonthBucket())
        count = bucket.count + delta
        bucket.count = bounded_figure(count)
        bucket.approximate = bucket.approximate or d.approximate or count != bucket.count


@_apply.register
def _(event: TransferTargetAnnounced, state: SubjectState, horizon: Horizon) -> None:
    a = _agreement(state)
    a.transfer_target = event.data.target
    a.transfer_target_by = event.data.by
    a.provenance["transfer_target"] = _provenance(event)


@_apply.register
def _(event: StatisticReported, state: SubjectState, horizon: Horizon) -> None:
    """Statistics are rows of their own (see the projector); the subject only counts them."""


@_apply.register
def _(event: DeadlineSet, state: SubjectState, horizon: Horizon) -> None:
    state.deadlines.append(
        Deadline(
            id=str(event.event_id), subject=state.subject, due_at=event.data.due_at,
            description=event.data.description, kind=event.data.kind, origin="DeadlineSet",
            event_id=event.event_id, confidence=event.confidence,
        )
    )


# -- cases ---------------------------------------------------------------------------------


def _case(state: SubjectState) -> CasePart:
    if state.case is None:
        state.case = CasePart()
    return state.case


def _affects(c: CasePart, affects: Iterable[str]) -> None:
    c.affects = sorted(set(c.affects) | set(affects))


def _case_status(c: CasePart) -> CaseStatus:
    if c.pending_stays:
        return "stay_requested"
    last_ruling = c.rulings[-1] if c.rulings else None
    last_decision = c.stay_decisions[-1] if c.stay_decisions else None
    if last_decision is not None and last_decision.decision != "denied" and (
        last_ruling is None or instant(last_decision.occurred_at) >= instant(last_ruling.occurred_at)
    ):
        return "stayed"
    return "ruled" if c.rulings else "filed"


def _restatus(c: CasePart, event: Event) -> None:
    status = _case_status(c)
    if status != c.status or c.status_since is None:
        c.status = status
        c.status_since = event.occurred_at
        c.provenance["status"] = _provenance(event)


@_apply.register
def _(event: LawsuitFiled, state: SubjectState, horizon: Horizon) -> None:
    c = _case(state)
    d = event.data
    c.title = c.title or d.title
    c.court = c.court or d.court
    c.filed_on = c.filed_on or event.occurred_at
    c.plaintiffs = c.plaintiffs or list(d.plaintiffs)
    c.defendants = c.defendants or list(d.defendants)
    _affects(c, d.affects)
    c.provenance.setdefault("filed_on", _provenance(event))
    _restatus(c, event)


@_apply.register
def _(event: CourtRulingIssued, state: SubjectState, horizon: Horizon) -> None:
    c = _case(state)
    d = event.data
    c.rulings.append(
        Ruling(event_id=event.event_id, court=d.court, outcome=d.outcome,
               occurred_at=event.occurred_at, effective_at=d.effective_at,
               affects=list(d.affects), confidence=event.confidence)
    )
    _affects(c, d.affects)
    c.court = c.court or d.court
    if d.effective_at is not None:
        state.deadlines.append(
            Deadline(
                id=str(event.event_id), subject=state.subject, due_at=d.effective_at,
                description=f"{d.court} ruling ({d.outcome}) takes effect",
                kind="ruling_effective", origin="CourtRulingIssued", event_id=event.event_id,
                affects=list(d.affects), confidence=event.confidence,
            )
        )
    _restatus(c, event)


@_apply.register
def _(event: StayRequested, state: SubjectState, horizon: Horizon) -> None:
    c = _case(state)
    d = event.data
    c.stay_requests.append(
        StayRequest(event_id=event.event_id, requested_by=d.requested_by, court=d.court,
                    occurred_at=event.occurred_at, respond_by=d.respond_by,
                    affects=list(d.affects), confidence=event.confidence)
    )
    _affects(c, d.affects)
    _restatus(c, event)


@_apply.register
def _(event: StayDecided, state: SubjectState, horizon: Horizon) -> None:
    c = _case(state)
    d = event.data
    pending = c.pending_stays
    same_court = [r for r in pending if r.court.casefold() == d.court.casefold()]
    candidates = same_court or pending
    request = candidates[-1] if candidates else None
    if request is not None:
        request.status = d.decision
        request.decided_by = event.event_id
        request.decided_on = event.occurred_at
    c.stay_decisions.append(
        StayDecision(event_id=event.event_id, court=d.court, decision=d.decision,
                     occurred_at=event.occurred_at, affects=list(d.affects),
                     request_id=request.event_id if request else None,
                     confidence=event.confidence)
    )
    _affects(c, d.affects)
    if d.decision != "denied":
        for deadline in state.deadlines:
            if deadline.kind == "ruling_effective" and deadline.status == "open":
                deadline.status = "closed"
                deadline.closed_by = event.event_id
                deadline.closed_reason = f"stay {d.decision} by {d.court}"
    _restatus(c, event)
