"""What the status pages show, read through the query layer the JSON API uses, as of any date."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any
from uuid import UUID

import pycountry
from sqlalchemy import Connection

from schemas.envelope import instant
from schemas.events import EventCorrected, EventRetracted
from services.domain.policy import PolicyStatus
from services.domain.resolve import decided_at, effect_key
from services.domain.state import AgreementPart, CasePart, Deadline, SubjectState
from services.projector.readmodel import queries
from services.projector.readmodel.queries import TimelineEntry
from services.projector.status.chart import Chart, transfers_chart

LIST_LIMIT = 500
"""How many agreements, cases and deadline rows a page reads (the overview is not paged)."""

STATUS_LABELS = {
    "proposed": "proposed", "negotiating": "negotiating", "signed": "signed", "implementing": "implementing",
    "in_force": "in force", "suspended": "suspended", "terminated": "terminated",
    "filed": "filed", "ruled": "ruled", "stay_requested": "stay requested", "stayed": "stayed",
    "pending": "pending", "granted": "granted", "granted_in_part": "granted in part", "denied": "denied",
    "administrative": "administrative stay", "lifted": "lifted",
    "open": "open", "met": "took effect", "passed": "passed",
    "scheduled": "scheduled", "ended": "ended",
    "in_effect": "in effect", "blocked": "blocked", "partly_blocked": "partly blocked",
}


def status_label(status: str | None) -> str:
    """A status as readers say it ("in force"); None is not yet known."""
    return STATUS_LABELS.get(status or "", status or "not yet known")


def country_name(code: str | None) -> str:
    """The English short name of an ISO 3166-1 alpha-2 code (the code itself when unknown)."""
    if not code:
        return ""
    country = pycountry.countries.get(alpha_2=code)
    return str(country.name) if country is not None else code


@cache
def _region_names() -> dict[str, str]:
    return {str(s.code): str(s.name) for s in pycountry.subdivisions}


def region_name(code: str) -> str:
    """An ISO 3166-2 subdivision as readers say it, with its code ("Arizona (US-AZ)")."""
    name = _region_names().get(code)
    return f"{name} ({code})" if name is not None else code


def regions_text(codes: Iterable[str]) -> str:
    """Subdivisions as readers say them, comma separated."""
    return ", ".join(region_name(code) for code in codes)


def day(moment: date | datetime | None) -> str:
    """A moment as its date (UTC for times), or an empty string."""
    if moment is None:
        return ""
    return instant(moment).date().isoformat() if isinstance(moment, datetime) else moment.isoformat()


def time_left(due: datetime, at: datetime) -> str:
    """How far a moment is from `at`, in words ("in 3 days", "2 hours ago")."""
    seconds = (due - at).total_seconds()
    span = abs(seconds)
    unit, count = next(
        ((name, int(span // size)) for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)) if span >= size),
        ("minute", 0),
    )
    words = f"{count} {unit}{'' if count == 1 else 's'}"
    return f"in {words}" if seconds >= 0 else f"{words} ago"


# -- page models ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadlineLine:
    deadline: Deadline
    state: str
    due: datetime
    left: str


@dataclass(frozen=True, slots=True)
class AgreementLine:
    id: str
    title: str | None
    partner: str
    part: AgreementPart | None


@dataclass(frozen=True, slots=True)
class CaseLine:
    id: str
    part: CasePart | None


@dataclass(frozen=True, slots=True)
class Overview:
    agreements: list[AgreementLine]
    cases: list[CaseLine]
    deadlines: list[DeadlineLine]
    policies: list[PolicyStatus] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TimelineItem:
    """One event of a subject's timeline as it stands (active, corrected, retracted)."""

    id: UUID
    type: str
    occurred_at: str
    summary: str | None
    confidence: str
    sources: list[dict[str, Any]]
    data: list[tuple[str, str]]
    status: str
    retracted_by: UUID | None
    corrected_by: list[UUID]
    original: list[tuple[str, str]]
    amends: UUID | None
    amendment: str | None


@dataclass(frozen=True, slots=True)
class SubjectPage:
    id: str
    state: SubjectState | None
    timeline: list[TimelineItem]
    later_events: int
    deadlines: list[DeadlineLine] = field(default_factory=list)
    chart: Chart | None = None

    @property
    def agreement(self) -> AgreementPart | None:
        return self.state.agreement if self.state is not None else None

    @property
    def case(self) -> CasePart | None:
        return self.state.case if self.state is not None else None


# -- reading ----------------------------------------------------------------------------


def _states(conn: Connection, subjects: Sequence[str], as_of: datetime | None, now: datetime
            ) -> dict[str, SubjectState]:
    if as_of is None:
        return queries.subjects_states(conn, subjects, now)
    out: dict[str, SubjectState] = {}
    for subject in subjects:
        state = queries.state_as_of(conn, subject, as_of=as_of, known_at=None, now=now)
        if state is not None:
            out[subject] = state
    return out


def deadline_lines(states: Iterable[SubjectState], at: datetime, *, only_open: bool) -> list[DeadlineLine]:
    """The subjects' deadlines (each once), soonest first, with their state (as of the states' time) and time left
    at `at`."""
    seen: set[str] = set()
    lines = []
    for state in states:
        for d in state.deadlines:
            if d.id in seen:
                continue
            seen.add(d.id)
            line = DeadlineLine(d, d.status, d.due_instant, time_left(d.due_instant, at))
            if line.state == "open" or not only_open:
                lines.append(line)
    return sorted(lines, key=lambda line: (line.due, line.deadline.id))


def policies(conn: Connection, *, as_of: datetime | None, now: datetime) -> list[PolicyStatus]:
    """Every policy a case names, as of the date (from the cases' events) or now (from the policies read model)."""
    slugs = [r.id for r in queries.list_policies(conn, status=None, after=None, limit=LIST_LIMIT).rows]
    if as_of is None:
        found = queries.policies_now(conn, slugs, now)
        return [found[s] for s in slugs if s in found]
    return [queries.policy_as_of(conn, s, as_of=as_of, known_at=None) for s in slugs]


def overview(conn: Connection, *, as_of: datetime | None, now: datetime) -> Overview:
    """Every agreement, policy and case as of the date, and the deadlines still open then."""
    agreement_ids = [r.id for r in queries.list_agreements(conn, status=None, after=None, limit=LIST_LIMIT).rows]
    case_ids = [r.id for r in queries.list_cases(conn, status=None, affects=None, after=None, limit=LIST_LIMIT).rows]
    deadline_rows = queries.deadlines(conn, status="all", subject=None, now=now, after=None, limit=LIST_LIMIT).rows
    subjects = list(dict.fromkeys([*agreement_ids, *case_ids, *(r.subject for r in deadline_rows)]))
    states = _states(conn, subjects, as_of, now)
    agreements = []
    for subject in agreement_ids:
        part = states[subject].agreement if subject in states else None
        agreements.append(AgreementLine(subject, part.title if part else None,
                                        country_name(part.partner) if part else "", part))
    cases = [CaseLine(s, states[s].case if s in states else None) for s in case_ids]
    deadlines = deadline_lines(states.values(), as_of or now, only_open=True)
    return Overview(agreements, cases, deadlines, policies(conn, as_of=as_of, now=now))


def _format(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_format(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_format(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,}"
    return str(value)


def _fields(data: Any) -> list[tuple[str, str]]:
    raw = data.model_dump(mode="json", exclude_none=True) if hasattr(data, "model_dump") else dict(data or {})
    return [(name.replace("_", " "), _format(value)) for name, value in raw.items() if value not in ([], {}, "")]


def timeline_items(entries: Iterable[TimelineEntry], as_of: datetime | None) -> tuple[list[TimelineItem], int]:
    """Timeline entries decided or in effect by the date (as `as_of` folds them), and how many come after it."""
    items, later = [], 0
    for entry in entries:
        event, note = entry.event, entry.annotation
        if as_of is not None and decided_at(effect_key(event)) > as_of:
            later += 1
            continue
        amends: UUID | None = None
        amendment: str | None = None
        data = _fields(event.data)
        if isinstance(event, EventRetracted):
            amends, amendment = event.data.event_id, "retraction"
            data = _fields({"reason": event.data.reason})
        elif isinstance(event, EventCorrected):
            amends, amendment = event.data.event_id, "correction"
            data = _fields(event.data.changes.model_dump(mode="json", exclude_unset=True))
        items.append(TimelineItem(
            id=event.event_id, type=event.type, occurred_at=day(event.occurred_at), summary=event.summary,
            confidence=event.confidence, sources=[s.model_dump(mode="json") for s in event.sources], data=data,
            status=note.status, retracted_by=note.retracted_by, corrected_by=list(note.corrected_by),
            original=_fields(note.original.data) if note.original is not None else [],
            amends=amends, amendment=amendment,
        ))
    return items, later


def subject_page(conn: Connection, subject: str, *, kind: str, as_of: datetime | None, now: datetime
                 ) -> SubjectPage | None:
    """An agreement's or a case's page as of the date; None when no such subject is known."""
    current = queries.snapshot(conn, subject, now)
    if current is None or getattr(current, kind) is None:
        return None
    state = current if as_of is None else queries.state_as_of(conn, subject, as_of=as_of, known_at=None, now=now)
    items, later = timeline_items(queries.timeline(conn, subject, known_at=None), as_of)
    agreement = state.agreement if state is not None else None
    return SubjectPage(
        id=subject, state=state, timeline=items, later_events=later,
        deadlines=deadline_lines([state], as_of or now, only_open=False) if state is not None else [],
        chart=transfers_chart(agreement) if agreement is not None else None,
    )
