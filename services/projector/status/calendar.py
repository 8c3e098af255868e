"""GET /v1/deadlines.ics: every deadline and scheduled effect as an iCalendar feed to subscribe to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from icalendar import Calendar, Event
from sqlalchemy import Connection, Engine

from services.domain.state import Deadline, DeadlineStatus, SubjectState
from services.platform.auth import Principal, require_unless_public
from services.platform.problems import problem_responses
from services.projector.params import SubjectFilter
from services.projector.readmodel import queries
from services.projector.status.views import status_label

DeadlineFilter = Literal["open", "met", "stayed", "passed", "all"]
Viewer = Annotated[Principal | None, Depends(require_unless_public("read"))]
PAGE = 500
CALENDAR_TYPE = "text/calendar; charset=utf-8"

router = APIRouter(tags=["calendar"])


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing due on a date: a deadline, a ruling taking effect, a stay's response date."""

    uid: str
    subject: str
    due: date | datetime
    summary: str
    kind: str
    confidence: str
    state: DeadlineStatus
    cancelled: bool
    note: str | None = None
    revision: int = 0
    """The SEQUENCE: its subject's event count, which grows with every event that may change it (a
    deadline re-opened by a denial must not carry a lower number than its cancellation)."""


def _deadline_entry(d: Deadline, revision: int) -> Entry:
    """A deadline as of now: cancelled while a stay holds it, or when its ruling ended before taking effect."""
    cancelled = d.status == "stayed" or (d.status == "passed" and d.origin != "DeadlineSet")
    note = None if d.status == "open" or not d.status_reason else (
        d.status_reason if d.status == "met" else f"{status_label(d.status)}: {d.status_reason}")
    return Entry(uid=f"deadline-{d.id}@accordwatch", subject=d.subject, due=d.due_at, summary=d.description,
                 kind=d.kind, confidence=d.confidence, state=d.status, cancelled=cancelled, note=note,
                 revision=revision)


def _stay_response_entries(state: SubjectState, now: datetime) -> Iterator[Entry]:
    """The response date of each stay request: open until the request is decided (then cancelled)."""
    case = state.case
    if case is None:
        return
    for r in case.stay_requests:
        if r.respond_by is None:
            continue
        due = r.respond_by
        at = due if isinstance(due, datetime) else datetime.combine(due, datetime.min.time(), tzinfo=UTC)
        state_now: DeadlineStatus = "met" if r.status != "pending" else ("open" if at > now else "passed")
        yield Entry(
            uid=f"stay-response-{r.event_id}@accordwatch", subject=state.subject, due=due,
            summary=f"response due to {r.requested_by}'s stay request ({r.court})", kind="response_due",
            confidence=r.confidence, state=state_now, cancelled=r.status != "pending", revision=state.event_count,
            note=f"stay {status_label(r.status)}" if r.status != "pending" else None,
        )


def _deadline_states(conn: Connection, status: str, subject: str | None, now: datetime
                     ) -> list[tuple[Deadline, int]]:
    rows: list[Any] = []
    after: str | None = None
    while True:
        page = queries.deadlines(conn, status=status, subject=subject, now=now, after=after, limit=PAGE)
        rows.extend(page.rows)
        if page.next_after is None:
            break
        after = page.next_after
    states = queries.subjects_states(conn, sorted({r.subject for r in rows}), now)
    wanted = {r.id for r in rows}
    found: dict[str, tuple[Deadline, int]] = {}
    for state in states.values():
        for d in state.deadlines:
            if d.id in wanted:
                found.setdefault(d.id, (d, state.event_count))
    return [found[r.id] for r in rows if r.id in found]


def _case_states(conn: Connection, subject: str | None, now: datetime) -> list[SubjectState]:
    ids: list[str] = []
    after: str | None = None
    while True:
        page = queries.list_cases(conn, status=None, affects=None, after=after, limit=PAGE)
        ids.extend(r.id for r in page.rows if subject is None or r.id == subject)
        if page.next_after is None:
            break
        after = page.next_after
    return list(queries.subjects_states(conn, ids, now).values())


def entries(conn: Connection, *, status: DeadlineFilter, subject: str | None, now: datetime) -> list[Entry]:
    """Deadlines (as /v1/deadlines filters them) and stay response dates, soonest first, as of now."""
    found = [_deadline_entry(d, n) for d, n in _deadline_states(conn, status, subject, now)]
    found += [e for s in _case_states(conn, subject, now) for e in _stay_response_entries(s, now)
              if status == "all" or e.state == status]
    return sorted(found, key=lambda e: (_instant(e.due), e.uid))


def _instant(due: date | datetime) -> datetime:
    return due.astimezone(UTC) if isinstance(due, datetime) else datetime.combine(due, datetime.min.time(), UTC)


def calendar(items: list[Entry], *, now: datetime, base_url: str) -> bytes:
    """The iCalendar document: one VEVENT per entry, its UID stable, held or answered ones CANCELLED."""
    cal = Calendar()
    cal.add("prodid", "-//accordwatch//deadlines//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", "accordwatch: deadlines")
    cal.add("x-wr-caldesc", "Court deadlines, rulings taking effect and stay response dates around the "
                            "U.S. asylum cooperative agreements")
    cal.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", "PT1H")
    for item in items:
        event = Event()
        event.add("uid", item.uid)
        event.add("dtstamp", now)
        if isinstance(item.due, datetime):
            event.add("dtstart", item.due.astimezone(UTC))
            event.add("dtend", item.due.astimezone(UTC))
        else:
            event.add("dtstart", item.due)
            event.add("dtend", item.due + timedelta(days=1))
        event.add("summary", f"{item.summary} ({item.subject})")
        link = f"{base_url}/status/subjects/{item.subject}"
        lines = [f"{item.kind.replace('_', ' ')}, {item.confidence}", *(x for x in [item.note] if x), link]
        event.add("description", "\n".join(lines))
        event.add("url", link)
        event.add("categories", [item.kind])
        event.add("transp", "TRANSPARENT")
        if item.cancelled:
            event.add("status", "CANCELLED")
        else:
            event.add("status", "CONFIRMED" if item.confidence == "confirmed" else "TENTATIVE")
        event.add("sequence", item.revision)
        cal.add_component(event)
    return bytes(cal.to_ical())


@router.get(
    "/v1/deadlines.ics",
    summary="Deadlines as an iCalendar feed",
    response_class=Response,
    responses={
        **problem_responses(401, 403, 422),
        200: {"description": "An iCalendar (RFC 5545) document.",
              "content": {"text/calendar": {"schema": {"type": "string"}}}},
    },
)
def deadlines_calendar(
    request: Request,
    _: Viewer,
    status: Annotated[DeadlineFilter, Query(description="As on /v1/deadlines; by default all, so that "
                                            "calendars see stayed deadlines cancelled.")] = "all",
    subject: SubjectFilter = None,
) -> Response:
    """Every deadline, ruling effective date and stay response date as of now; held ones as STATUS:CANCELLED."""
    now: datetime = request.app.state.clock().astimezone(UTC)
    engine: Engine = request.app.state.engine
    with engine.connect() as conn:
        items = entries(conn, status=status, subject=subject, now=now)
    body = calendar(items, now=now, base_url=str(request.base_url).rstrip("/"))
    return Response(body, media_type=CALENDAR_TYPE, headers={
        "Content-Disposition": 'inline; filename="accordwatch-deadlines.ics"', "Cache-Control": "no-cache"})
