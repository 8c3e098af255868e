"""The pure fold: a subject's events to its state as of a time. No I/O, no clock: time is passed in.

- `resolve` applies retractions and corrections and orders the facts by effect:
  (effective time, occurred_at, recorded_at, id), never by arrival.
- `project(as_of=T)` folds them as of T (and as known at `known_at`, by `recorded_at`).
  The state as of T holds every fact in effect by T, however late it was decided (an
  entry into force announced after its date counts from that date), and, as scheduled,
  every fact decided by T whose effect is still ahead (a ruling taking effect on
  Thursday). Facts neither decided nor in effect by T are left out. Histories are in
  effect order. `next_effect_at` is when the state as of T would next change by itself.
  Without `as_of` the fold runs to the end of time.
- `advance` is the fast path for events that come after everything folded so far; it
  returns None when a full `project` is needed (a late event, a retraction, a correction,
  or a scheduled effect that has come due).

The same set of events yields the same state whatever order they arrived in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from operator import itemgetter

from schemas.envelope import Event, instant
from schemas.events import StatisticReported
from services.domain import agreements, cases
from services.domain.agreements import Rule, bounded_figure
from services.domain.case_view import settle_case, settle_deadlines
from services.domain.litigation import END_OF_TIME
from services.domain.resolve import (
    META_TYPES,
    Annotation,
    Resolution,
    decided_at,
    effect_key,
    is_meta,
    resolve,
)
from services.domain.state import SortKey, SubjectState

__all__ = [
    "Annotation", "Resolution", "advance", "bounded_figure", "effect_key", "fold", "fold_pairs", "fold_sorted",
    "is_meta", "project", "resolve", "settle",
]

RULES: dict[type[Event], Rule] = {**agreements.RULES, **cases.RULES}
"""One fold rule per event type (retractions and corrections are resolved before the fold)."""

ORDER_FREE_TYPES: tuple[type[Event], ...] = (StatisticReported, *cases.ORDER_FREE)
"""Types whose fold does not depend on order: one that comes late needs no re-fold of its subject."""


def project(
    subject: str,
    events: Iterable[Event],
    *,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
) -> SubjectState:
    """Fold all of a subject's events as of an effect time and as known at a recording time."""
    return fold(subject, resolve(events, known_at), as_of=as_of)


def fold(subject: str, resolution: Resolution, *, as_of: datetime | None = None) -> SubjectState:
    """Fold resolved facts in effect order, as of `as_of` when given."""
    state = SubjectState(subject=subject, meta_targets=resolution.meta_targets)
    return fold_sorted(state, zip(resolution.fact_keys, resolution.facts, strict=True), as_of=as_of)


def fold_sorted(
    state: SubjectState, keyed: Iterable[tuple[SortKey, Event]], *, as_of: datetime | None = None
) -> SubjectState:
    """Fold (key, event) pairs in effect order onto a state in place, all after its last fact; then settle it.

    No checks: the caller knows the pairs are sorted, come after the state and hold no
    retraction or correction (`advance` is the checked way).
    """
    fold_pairs(state, keyed, as_of=as_of)
    return settle(state, as_of)


def fold_pairs(state: SubjectState, keyed: Iterable[tuple[SortKey, Event]], *, as_of: datetime | None) -> None:
    """`fold_sorted` without settling (for a caller that folds in slices and settles once)."""
    for key, event in keyed:
        if as_of is None or key[0] <= as_of:
            RULES[type(event)](event, state, True)
            state.event_count += 1
            state.last_event_at = event.occurred_at
            state.last_event_id = event.event_id
            state.last_event_type = event.type
            state.last_key = key
            continue
        decided = decided_at(key)
        if decided <= as_of:  # decided by then, in effect later: scheduled
            RULES[type(event)](event, state, False)
            state.event_count += 1
            _upcoming(state, key[0])
        else:  # neither decided nor in effect by then: it joins the state when it is decided
            _upcoming(state, decided)


def _upcoming(state: SubjectState, at: datetime) -> None:
    if state.upcoming is None or at < state.upcoming:
        state.upcoming = at


def settle(state: SubjectState, as_of: datetime | None) -> SubjectState:
    """Derive what the facts mean as of `as_of` (cases, deadlines) and when that next changes by itself."""
    at = END_OF_TIME if as_of is None else as_of
    if state.agreement is not None:
        state.agreement.scheduled.sort(key=lambda t: (instant(t.on), str(t.event_id)))
    if state.case is not None:
        settle_case(state, at)
    elif state.deadlines:
        settle_deadlines(state, at)
    due = [d.due_instant for d in state.deadlines if d.origin == "DeadlineSet" and d.due_instant > at]
    state.next_effect_at = min([*due, *([state.upcoming] if state.upcoming is not None else [])], default=None)
    return state


def advance(
    state: SubjectState, events: Sequence[Event], *, as_of: datetime | None = None, in_place: bool = False
) -> SubjectState | None:
    """Fold events that all come after the state's last fact, as of `as_of`; None if a full project is needed.

    `as_of` must not be before the time the state was folded to. The state is copied first
    unless `in_place` (for a caller that owns a throwaway state, such as one just read from
    a snapshot).
    """
    if state.next_effect_at is not None and (as_of is None or state.next_effect_at <= as_of):
        return None  # something scheduled has come due: its effect may sort before the state's last fact
    keyed = sorted(((effect_key(e), e) for e in events), key=itemgetter(0))
    if not keyed:
        return state
    if any(isinstance(e, META_TYPES) or e.event_id in state.meta_targets for _, e in keyed):
        return None
    last_key = state.last_key
    late = [] if last_key is None else [(k, e) for k, e in keyed if k <= last_key]
    if any(not isinstance(e, ORDER_FREE_TYPES) for _, e in late):
        return None
    new = state if in_place else state.model_copy(deep=True)
    for _, event in late:
        # A late figure or court fact changes nothing that depends on order: it is only added.
        RULES[type(event)](event, new, True)
        new.event_count += 1
    fold_pairs(new, keyed[len(late):] if late else keyed, as_of=as_of)
    return settle(new, as_of)

