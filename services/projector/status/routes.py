"""The status pages under /status: server-rendered HTML, readable without JavaScript, as of any date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from services.platform.auth import Principal, require_unless_public
from services.platform.problems import Problem, problem_responses
from services.projector.params import AsOfDate, is_subject_id, parse_bound
from services.projector.readmodel import queries
from services.projector.status import views

HERE = Path(__file__).resolve().parent
STATIC = {
    "style.css": (HERE / "static" / "style.css", "text/css; charset=utf-8"),
    "favicon.svg": (HERE / "static" / "favicon.svg", "image/svg+xml"),
}
HTML = {"text/html": {"schema": {"type": "string"}}}
HTML_RESPONSES: dict[int | str, dict[str, Any]] = {
    **problem_responses(401, 403, s401="No API key (unless ACCORDWATCH_PUBLIC_STATUS is set)."),
    200: {"description": "An HTML page.", "content": HTML},
    404: {"description": "No such agreement or case (an HTML page).", "content": HTML},
    422: {"description": "An invalid as_of (an HTML page naming the field).", "content": HTML},
}

Viewer = Annotated[Principal | None, Depends(require_unless_public("read"))]

router = APIRouter(prefix="/status", tags=["status pages"])
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(status_label=views.status_label, country_name=views.country_name, day=views.day,
                             regions_text=views.regions_text)


@dataclass(frozen=True, slots=True)
class Picked:
    """The date a page shows: what the reader asked for, and the moment it stands for."""

    raw: str | None
    as_of: datetime | None
    now: datetime

    @property
    def at(self) -> datetime:
        return self.as_of or self.now

    @property
    def date(self) -> str:
        """The value of the date input (empty for today)."""
        return self.as_of.date().isoformat() if self.as_of else ""

    def link(self, path: str) -> str:
        """A link inside the status pages that keeps the chosen date."""
        return f"{path}?{urlencode({'as_of': self.raw})}" if self.raw else path


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.clock()
    return now.astimezone(UTC)


def _render(request: Request, name: str, picked: Picked, status: int = 200, **context: Any) -> Response:
    return templates.TemplateResponse(
        request, name, {"picked": picked, "link": picked.link, **context}, status_code=status,
        headers={"Cache-Control": "no-cache"},
    )


def _picked(request: Request, as_of: str | None) -> Picked | Response:
    now = _now(request)
    try:
        return Picked(as_of or None, parse_bound("as_of", as_of), now)
    except Problem as problem:
        reason = problem.extensions["errors"][0]["reason"]
        return _render(request, "error.html", Picked(None, None, now), 422, title="Not a date",
                       message=f"as_of: {reason}. Pick a date such as 2020-03-05.")


def _not_found(request: Request, picked: Picked, kind: str, subject: str) -> Response:
    return _render(request, "error.html", picked, 404, title=f"No such {kind}",
                   message=f"No {kind} {subject!r} is known.")


@router.get("", response_class=HTMLResponse, responses=HTML_RESPONSES, summary="Status overview")
def overview(request: Request, _: Viewer, as_of: AsOfDate = None) -> Response:
    """Every agreement, policy and case with its status, and the next deadlines, now or on a date."""
    picked = _picked(request, as_of)
    if isinstance(picked, Response):
        return picked
    with _engine(request).connect() as conn:
        page = views.overview(conn, as_of=picked.as_of, now=picked.now)
    return _render(request, "overview.html", picked, page=page)


@router.get("/agreements/{agreement_id}", response_class=HTMLResponse, responses=HTML_RESPONSES,
            summary="One agreement's status page")
def agreement(request: Request, agreement_id: str, _: Viewer, as_of: AsOfDate = None) -> Response:
    """An agreement: status, key dates, transfers against the target, and its sourced timeline."""
    picked = _picked(request, as_of)
    if isinstance(picked, Response):
        return picked
    with _engine(request).connect() as conn:
        page = (views.subject_page(conn, agreement_id, kind="agreement", as_of=picked.as_of, now=picked.now)
                if is_subject_id(agreement_id) else None)
    if page is None:
        return _not_found(request, picked, "agreement", agreement_id)
    return _render(request, "agreement.html", picked, page=page)


@router.get("/cases/{case_id}", response_class=HTMLResponse, responses=HTML_RESPONSES,
            summary="One court case's status page")
def case(request: Request, case_id: str, _: Viewer, as_of: AsOfDate = None) -> Response:
    """A case: rulings, stay requests and decisions, deadlines, and its sourced timeline."""
    picked = _picked(request, as_of)
    if isinstance(picked, Response):
        return picked
    with _engine(request).connect() as conn:
        page = (views.subject_page(conn, case_id, kind="case", as_of=picked.as_of, now=picked.now)
                if is_subject_id(case_id) else None)
    if page is None:
        return _not_found(request, picked, "case", case_id)
    return _render(request, "case.html", picked, page=page)


@router.get("/subjects/{subject}", include_in_schema=False)
def subject(request: Request, subject: str, _: Viewer, as_of: AsOfDate = None) -> Response:
    """The agreement or case page of a subject (links from deadlines and alerts know only the id)."""
    picked = _picked(request, as_of)
    if isinstance(picked, Response):
        return picked
    if not is_subject_id(subject):
        return _not_found(request, picked, "agreement or case", subject)
    with _engine(request).connect() as conn:
        state = queries.snapshot(conn, subject, picked.now)
    kind = "agreements" if state is not None and state.agreement is not None else "cases"
    if state is None or (state.agreement is None and state.case is None):
        return _not_found(request, picked, "agreement or case", subject)
    return RedirectResponse(picked.link(f"/status/{kind}/{subject}"), status_code=307)


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    """The pages' own style sheet and icon (nothing is loaded from another host)."""
    found = STATIC.get(name)
    if found is None:
        raise Problem(404, "Not found", f"no static file {name!r}", kind="not-found")
    path, media_type = found
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})
