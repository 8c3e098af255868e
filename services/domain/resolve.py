"""Resolving a subject's events: retractions and corrections applied, facts put in effect order.

Every fact has three times (DESIGN 3.1): when it happened (`occurred_at`), when it takes
effect (`effective_on` / `effective_at`, default `occurred_at`) and when we learned it
(`recorded_at`). Facts are ordered by their effect key, (effective time, occurred_at,
recorded_at, id), computed once here; `known_at` leaves out what was recorded later.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any
from uuid import UUID

from schemas.envelope import Event, instant
from schemas.events import (
    AgreementInForce,
    AgreementTerminated,
    CourtRulingIssued,
    EventCorrected,
    EventRetracted,
    StayDecided,
)
from schemas.registry import parse_event
from services.domain.state import SortKey

META_TYPES = (EventRetracted, EventCorrected)
NEVER_RECORDED = datetime.min.replace(tzinfo=UTC)

EFFECTIVE: dict[type[Event], Callable[[Any], date | datetime | None]] = {
    AgreementInForce: lambda e: e.data.effective_on,
    AgreementTerminated: lambda e: e.data.effective_on,
    CourtRulingIssued: lambda e: e.data.effective_at,
    StayDecided: lambda e: e.data.effective_at,
}
"""The types whose facts take effect at a time of their own; every other fact takes effect when it occurs."""


def effect_key(event: Event) -> SortKey:
    """Effect order: effective time, then occurred_at, recorded_at and id (never arrival order)."""
    occurred = instant(event.occurred_at)
    get = EFFECTIVE.get(type(event))
    moment = get(event) if get is not None else None
    return (instant(moment) if moment is not None else occurred, occurred,
            event.recorded_at or NEVER_RECORDED, str(event.id))


def decided_at(key: SortKey) -> datetime:
    """When a fact is part of the world: when it occurred, or earlier if it takes effect earlier."""
    return key[1] if key[1] < key[0] else key[0]


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
    """The facts of a subject in effect order (with their keys), and what happened to each event."""

    facts: list[Event]
    fact_keys: list[SortKey]
    events: list[Event]
    """Every event, retractions and corrections included, in effect order."""
    annotations: dict[UUID, Annotation]
    meta_targets: set[UUID]


def is_meta(event: Event) -> bool:
    """Whether an event retracts or corrects another rather than stating a fact."""
    return isinstance(event, META_TYPES)


def resolve(events: Iterable[Event], known_at: datetime | None = None) -> Resolution:
    """Apply retractions and corrections (as known at `known_at`); order what remains by effect."""
    by_id: dict[UUID, Event] = {}
    for event in events:
        if known_at is not None and event.recorded_at is not None and event.recorded_at > known_at:
            continue
        by_id.setdefault(event.event_id, event)
    keyed = sorted(((effect_key(e), e) for e in by_id.values()), key=itemgetter(0))
    ordered = [e for _, e in keyed]
    retractions: dict[UUID, list[UUID]] = {}
    corrections: list[EventCorrected] = []
    meta_targets: set[UUID] = set()
    for event in ordered:
        if isinstance(event, EventRetracted):
            retractions.setdefault(event.data.event_id, []).append(event.event_id)
            meta_targets.add(event.data.event_id)
        elif isinstance(event, EventCorrected):
            corrections.append(event)
            meta_targets.add(event.data.event_id)
    if not meta_targets:
        # Nothing retracted or corrected: the facts are every event, already in effect order.
        return Resolution(ordered, [k for k, _ in keyed], ordered, {eid: Annotation() for eid in by_id},
                          meta_targets)

    in_effect_against = _retracted_by([e.event_id for e in ordered], retractions)
    annotations = {eid: Annotation(retracted_by=in_effect_against[eid]) for eid in by_id}
    effective = dict(by_id)
    for correction in corrections:
        target_id = correction.data.event_id
        if annotations[correction.event_id].retracted_by is not None or target_id not in effective:
            continue
        note = annotations[target_id]
        try:
            effective[target_id] = _corrected(effective[target_id], correction)
        except (ValueError, TypeError, ArithmeticError) as exc:  # InvalidEvent, or anything the re-parse raises
            note.correction_errors.append(f"correction {correction.event_id} not applied: {exc}")
            continue
        note.original = note.original or by_id[target_id]
        note.corrected_by.append(correction.event_id)
    facts = sorted(
        ((effect_key(effective[eid]), effective[eid]) for eid, note in annotations.items()
         if note.retracted_by is None and not isinstance(by_id[eid], META_TYPES)),
        key=itemgetter(0),
    )
    return Resolution([e for _, e in facts], [k for k, _ in facts], ordered, annotations, meta_targets)


def _retracted_by(order: list[UUID], retractions: dict[UUID, list[UUID]]) -> dict[UUID, UUID | None]:
    """For each event, the retraction in effect against it: the first of its retractions not itself retracted.

    A depth-first walk on a stack of generators rather than Python's own (a chain of thousands
    of retractions of retractions must not exhaust the recursion limit), started from each
    event in effect order. A retraction met again on the path being walked (a cycle) counts as
    not in effect there; as the walk follows effect order, a cycle resolves the same way
    whatever order the events arrived in.
    """
    memo: dict[UUID, UUID | None] = {}
    on_path: Counter[UUID] = Counter()

    def walk(node: UUID) -> Generator[UUID, UUID | None, UUID | None]:
        for rid in retractions.get(node, ()):
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
