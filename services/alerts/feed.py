"""GET /v1/alerts.atom: alerts firing and resolved as an Atom feed, newest first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from feedgen.feed import FeedGenerator
from pydantic import StringConstraints
from sqlalchemy import Engine, select

from schemas.envelope import SLUG, SLUG_MAX
from services.alerts.rules import Severity
from services.alerts.settings import AlertsSettings
from services.alerts.store import AlertRow
from services.alerts.tables import Alert
from services.platform.auth import Principal, require_unless_public
from services.platform.problems import problem_responses

ATOM_TYPE = "application/atom+xml; charset=utf-8"
ENTRY_NAMESPACE = uuid.UUID("9a4f3c1e-2b7d-4e0a-8c55-6f1d2e3b4a90")
Viewer = Annotated[Principal | None, Depends(require_unless_public("read"))]
SubjectId = Annotated[str, StringConstraints(max_length=SLUG_MAX, pattern=SLUG)]

router = APIRouter(tags=["feeds"])


def entry_id(fingerprint: str, episode: int = 1) -> str:
    """The entry id of an alert's episode: the same while it fires and once it resolves; new when its cause
    returns and it fires again (a new notification, as feed readers show a new entry)."""
    return f"urn:uuid:{uuid.uuid5(ENTRY_NAMESPACE, fingerprint if episode <= 1 else f'{fingerprint}#{episode}')}"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(row: AlertRow, json_url: str) -> str:
    lines = [row.summary, "",
             f"{row.severity}, {row.state}; rule {row.rule}; subject {row.subject}",
             f"happened {_utc(row.occurred_at).isoformat()}; fired {_utc(row.fired_at).isoformat()}"
             + (f" (time {row.episode}: its cause returned)" if row.episode > 1 else "")]
    if row.resolved_at is not None:
        lines.append(f"resolved {_utc(row.resolved_at).isoformat()}: {row.resolution or ''}".rstrip(": "))
    if row.historical:
        lines.append("recorded as history (the fact was old when it was first seen)")
    lines.append(f"details: {json_url}")
    return "\n".join(lines)


def atom(rows: list[AlertRow], *, self_url: str, api_url: str, status_page_url: str | None, now: datetime) -> bytes:
    """The Atom document: one entry per alert (its latest episode), updated when it changed (fired, re-worded,
    resolved)."""
    feed = FeedGenerator()
    feed.id(self_url)
    feed.title("accordwatch alerts")
    feed.subtitle("Stay requests, court deadlines, rulings and agreement changes, firing and resolved")
    feed.author({"name": "accordwatch"})
    feed.link(href=self_url, rel="self", type="application/atom+xml")
    if status_page_url:
        feed.link(href=status_page_url, rel="alternate", type="text/html")
    feed.generator("accordwatch")
    feed.updated(max((_utc(r.updated_at) for r in rows), default=now))
    for row in rows:
        entry = feed.add_entry(order="append")
        entry.id(entry_id(row.fingerprint, row.episode))
        prefix = "Resolved: " if row.state == "resolved" else ""
        entry.title(f"[{row.severity}] {prefix}{row.summary}")
        entry.published(_utc(row.fired_at))
        entry.updated(_utc(row.updated_at))
        # One link, the default rel (alternate): feedgen 1.0 writes no rel or type on entry links.
        json_url = f"{api_url}/v1/alerts/{row.fingerprint}"
        entry.link(href=f"{status_page_url}/subjects/{row.subject}" if status_page_url else json_url)
        for term in (row.severity, row.state, row.rule):
            entry.category(term=term)
        entry.content(_text(row, json_url), type="text")
    return bytes(feed.atom_str(pretty=True))


@router.get(
    "/v1/alerts.atom",
    summary="Alerts as an Atom feed, newest first",
    response_class=Response,
    responses={
        **problem_responses(401, 403, 422),
        200: {"description": "An Atom (RFC 4287) feed.",
              "content": {"application/atom+xml": {"schema": {"type": "string"}}}},
    },
)
def alerts_feed(
    request: Request,
    _: Viewer,
    severity: Annotated[list[Severity] | None, Query(description="Only these severities (repeatable).")] = None,
    subject: Annotated[list[SubjectId] | None, Query(max_length=100, description="Only alerts about these subjects "
                                                     "(repeatable, at most 100).")] = None,
    state: Annotated[Literal["firing", "resolved"] | None, Query(description="firing or resolved")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="How many entries.")] = 100,
) -> Response:
    """The alerts that fired or resolved most recently, each one entry with a stable id."""
    conditions = [c for c in (
        Alert.severity.in_(severity) if severity else None,
        Alert.subject.in_(subject) if subject else None,
        Alert.state == state if state else None,
    ) if c is not None]
    engine: Engine = request.app.state.engine
    with engine.connect() as conn:
        rows = [AlertRow(**r._mapping) for r in conn.execute(
            select(Alert.__table__).where(*conditions)
            .order_by(Alert.updated_at.desc(), Alert.fingerprint).limit(limit))]
    settings: AlertsSettings = request.app.state.settings
    base = str(request.base_url).rstrip("/")
    body = atom(rows, self_url=str(request.url), api_url=base, status_page_url=settings.status_page_url,
                now=request.app.state.clock())
    return Response(body, media_type=ATOM_TYPE, headers={"Cache-Control": "no-cache"})
