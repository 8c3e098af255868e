"""GET /v1/deadlines.ics through the real pipeline, read back by two independent iCalendar parsers."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
import icalendar
import ics
import pytest

from tests.conftest import RunningStack, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.stack]

SOURCE = [{"publisher": "Court docket", "url": "https://example.org/docket"}]
SCOTUS = "Supreme Court of the United States"


def _event(event_type: str, subject: str, occurred: str, **data: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "type": event_type, "subject": subject, "occurred_at": occurred,
            "sources": SOURCE, "confidence": "confirmed", "data": data}


def _fetch(stack: RunningStack, **params: str) -> tuple[icalendar.Calendar, ics.Calendar, str]:
    # No key: the test stack, like `make run`, serves the calendar publicly on loopback.
    response = httpx.get(f"{stack.stack.urls['projector']}/v1/deadlines.ics", params=params, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    return icalendar.Calendar.from_ical(response.content), ics.Calendar(response.text), response.text


def _at(day: date, *, hour: int) -> datetime:
    return datetime.combine(day, time(hour), UTC)


def _by_uid(cal: icalendar.Calendar) -> dict[str, Any]:
    events = list(cal.walk("VEVENT"))
    uids = [str(e["UID"]) for e in events]
    assert len(uids) == len(set(uids)), "a UID appears twice"
    return {str(e["UID"]): e for e in events}


def _open_ids(stack: RunningStack) -> set[str]:
    items = stack.query.get("/v1/deadlines", params={"status": "open", "limit": 500}).json()["items"]
    return {f"deadline-{d['id']}@accordwatch" for d in items}


def test_calendar_follows_deadlines_as_they_open_move_and_close(examples_stack: RunningStack) -> None:
    stack = examples_stack
    case = f"calendar-case-{uuid.uuid4().hex[:8]}"
    today = datetime.now(UTC).date()
    ruling = _event("CourtRulingIssued", case, today.isoformat(), court="U.S. District Court",
                    outcome="blocked", effective_at=(today + timedelta(days=10)).isoformat(), affects=["mpp"])
    deadline = _event("DeadlineSet", case, today.isoformat(), due_at=f"{today + timedelta(days=5)}T17:00:00Z",
                      description="government's brief due", kind="filing_due")
    stay = _event("StayRequested", case, today.isoformat(), requested_by="U.S. Department of Justice",
                  court=SCOTUS, respond_by=(today + timedelta(days=3)).isoformat(), affects=["mpp"])
    stack.post(ruling, deadline, stay)
    wait_for(lambda: len([d for d in stack.query.get("/v1/deadlines", params={"subject": case}).json()["items"]
                          if d["status"] == "open"]) == 2, what="the two deadlines of the new case")

    first, first_ics, _ = _fetch(stack)
    second, _second_ics, _ = _fetch(stack)
    events = _by_uid(first)
    assert set(events) == set(_by_uid(second))  # the same UIDs on every fetch
    assert {e.uid for e in first_ics.events} == set(events)  # the second parser reads the same events
    opened = _open_ids(stack)
    assert f"deadline-{deadline['id']}@accordwatch" in opened
    assert opened <= set(events)
    for uid in opened:
        assert str(events[uid]["STATUS"]) == "CONFIRMED"
    brief = events[f"deadline-{deadline['id']}@accordwatch"]
    assert brief.decoded("DTSTART") == _at(today + timedelta(days=5), hour=17)
    assert case in str(brief["SUMMARY"])
    assert str(brief["URL"]).endswith(f"/status/subjects/{case}")
    effect = events[f"deadline-{ruling['id']}@accordwatch"]
    assert effect.decoded("DTSTART") == today + timedelta(days=10)  # a bare date: an all-day event
    response_due = events[f"stay-response-{stay['id']}@accordwatch"]
    assert response_due.decoded("DTSTART") == today + timedelta(days=3)
    ics_brief = next(e for e in first_ics.events if e.uid == f"deadline-{deadline['id']}@accordwatch")
    assert ics_brief.begin.datetime == brief.decoded("DTSTART")
    # Every deadline of the examples (all in 2020) is there too, once, with the same UID scheme.
    example_ids = {d["id"] for d in stack.query.get("/v1/deadlines", params={"status": "all", "limit": 500})
                   .json()["items"]}
    assert {f"deadline-{i}@accordwatch" for i in example_ids} <= set(events)

    # The brief moves (a correction), the Supreme Court grants the stay: the ruling will not take
    # effect and the response date is over. Same UIDs; the calendar moves one and cancels two.
    moved = f"{today + timedelta(days=7)}T17:00:00Z"
    stack.post(
        _event("EventCorrected", case, today.isoformat(), event_id=deadline["id"], changes={"data": {"due_at": moved}}),
        # Decided today: a decision dated tomorrow is not yet a fact today (it would only count once its day came).
        _event("StayDecided", case, today.isoformat(), court=SCOTUS, decision="granted", affects=["mpp"]),
    )
    wait_for(lambda: stack.query.get(f"/v1/cases/{case}").json()["status"] == "stayed", what="the stay decision")
    after = _by_uid(_fetch(stack)[0])
    assert set(events) <= set(after)
    assert after[f"deadline-{deadline['id']}@accordwatch"].decoded("DTSTART") == _at(today + timedelta(days=7), hour=17)
    assert str(after[f"deadline-{ruling['id']}@accordwatch"]["STATUS"]) == "CANCELLED"
    assert str(after[f"stay-response-{stay['id']}@accordwatch"]["STATUS"]) == "CANCELLED"
    after_ics = ics.Calendar(_fetch(stack)[2])
    cancelled = {e.uid for e in after_ics.events if e.status == "CANCELLED"}
    assert {f"deadline-{ruling['id']}@accordwatch", f"stay-response-{stay['id']}@accordwatch"} <= cancelled

    # The same filters as /v1/deadlines.
    only_open = _by_uid(_fetch(stack, status="open")[0])
    assert set(only_open) == _open_ids(stack)
    mine = _by_uid(_fetch(stack, subject=case)[0])
    assert set(mine) == {f"deadline-{deadline['id']}@accordwatch", f"deadline-{ruling['id']}@accordwatch",
                         f"stay-response-{stay['id']}@accordwatch"}
