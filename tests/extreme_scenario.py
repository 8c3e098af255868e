"""The accepted extremes as one stream: corrections aimed at events they fit (and at ones they do not), and shapes.

Built from `tests.extremes.cases()`; used by the unit tests (the fold) and the pipeline test
(ingest, Kafka, both databases), so both judge the very same events.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import uuid_utils

from schemas.envelope import MAX_COUNT
from schemas.events import FACT_CLASSES
from schemas.registry import EVENT_TYPES, InvalidEvent, parse_event
from tests.extremes import COUNTRIES, Path, cases, companions, maximal, minimal

CORRECTED = "extremes-corrected"
"""The subject of every correction case and of the events they correct."""
CHANGED_DATA: Path = ("data", "changes", "data")


@dataclass
class Scenario:
    """The accepted extremes as events to post (each with its id), and what the fold must make of them."""

    docs: list[dict[str, Any]] = field(default_factory=list)
    applied: dict[str, str] = field(default_factory=dict)
    """correction id -> the id of the event it corrects (valid for that event: must be applied)."""
    not_applied: dict[str, str] = field(default_factory=dict)
    """correction id -> an event without that field (must be recorded as not applied, not raise)."""
    chain: list[str] = field(default_factory=list)
    """A fact and thousands of retractions, each retracting the one before (ids in order)."""
    sums: str = "extremes-sums"
    """The agreement whose transfer sums go past 32 bits."""

    def add(self, doc: dict[str, Any]) -> str:
        doc = {**doc, "id": doc.get("id") or str(uuid_utils.uuid7())}
        self.docs.append(doc)
        return str(doc["id"])


def _fact_types_with(name: str) -> list[str]:
    return [cls.__name__ for cls in FACT_CLASSES
            if name in cls.model_fields["data"].annotation.model_fields]  # type: ignore[union-attr]


def _target(event_type: str, name: str | None, value: Any) -> dict[str, Any] | None:
    """A minimal event of the type, on the corrected subject, that `value` as its `name` keeps valid."""
    doc = minimal(event_type)
    doc["subject"] = CORRECTED
    if name is not None:
        doc["data"].update(companions(event_type, ("data", name), {name: value}))
    if name is None:
        return doc
    try:
        parse_event({**doc, "data": {**doc["data"], name: value}})
    except InvalidEvent:
        return None
    return doc


def scenario(chain: int = 1500) -> Scenario:
    """Every accepted extreme, corrections aimed at events they fit (and copies at ones they do not), and shapes."""
    out = Scenario()
    for case in cases():
        if not case.valid:
            continue
        doc = deepcopy(case.doc)
        if case.event_type != "EventCorrected" or case.path[:2] == ("data", "event_id") or doc["data"] is None:
            out.add(doc)
            continue
        changes = doc["data"]["changes"] or {}
        changed = changes.get("data") or {}
        name = str(case.path[3]) if case.path[:3] == CHANGED_DATA and len(case.path) > 3 else None
        value = changed.get(name) if name else None
        fits = [t for t in (_fact_types_with(name) if name else ["AgreementSigned"]) if _target(t, name, value)]
        assert fits, f"{case.name}: no event type takes {value!r}"
        doc["subject"] = CORRECTED
        target = out.add(_target(fits[0], name, value))  # type: ignore[arg-type]
        doc["data"]["event_id"] = target
        out.applied[out.add(doc)] = target
        if name is not None:
            other = next(t for t in ("DeadlineSet", "AgreementSuspended") if t not in _fact_types_with(name))
            stranger = out.add(_target(other, None, None))  # type: ignore[arg-type]
            copy = {**deepcopy(doc), "id": None}
            copy["data"]["event_id"] = stranger
            out.not_applied[out.add(copy)] = stranger
    # Retractions of retractions, thousands deep (a recursive resolver ran out of stack).
    previous = out.add({**minimal("AgreementSigned"), "subject": "extremes-chain"})
    out.chain.append(previous)
    for _ in range(chain):
        retraction = minimal("EventRetracted")
        retraction["subject"] = "extremes-chain"
        retraction["data"]["event_id"] = previous
        previous = out.add(retraction)
        out.chain.append(previous)
    # Two retractions retracting each other, and the fact one of them retracts.
    fact, first, second = (str(uuid_utils.uuid7()) for _ in range(3))
    out.add({**minimal("AgreementSigned"), "subject": "extremes-cycle", "id": fact})
    for mine, theirs in ((first, second), (second, first)):
        out.add({**minimal("EventRetracted"), "subject": "extremes-cycle", "id": mine, "data": {"event_id": theirs}})
    out.add({**minimal("EventRetracted"), "subject": "extremes-cycle", "data": {"event_id": fact}})
    # Transfer sums past 32 bits: five reports of the largest count, with every nationality at it.
    for day in range(5):
        report = minimal("TransferReported")
        report.update(subject=out.sums, occurred_at=f"2020-01-{day + 1:02d}")
        report["data"] = {"count": MAX_COUNT, "cumulative": False, "approximate": True,
                          "nationalities": dict.fromkeys(COUNTRIES, MAX_COUNT)}
        out.add(report)
    # Every type with every field at its largest at once.
    for event_type in sorted(EVENT_TYPES):
        out.add(maximal(event_type, limit=1_000_000))
    return out
