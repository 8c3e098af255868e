"""The projector's query API: agreements, cases, deadlines, transfers, timelines, as of any date."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from sqlalchemy import Connection, Engine, text

from schemas.envelope import Event
from services.domain.fold import Annotation
from services.domain.state import AgreementPart, CasePart, Deadline, SubjectState
from services.platform.auth import Keyring, Principal, require
from services.platform.db import make_engine
from services.platform.http import add_metrics_endpoint, install_edges
from services.platform.problems import PROBLEM_RESPONSES, Problem
from services.projector import gauges, metrics
from services.projector.params import parse_bound
from services.projector.readmodel import queries
from services.projector.readmodel.store import active_generation
from services.projector.settings import ProjectorSettings
from services.projector.status.calendar import router as calendar_router
from services.projector.status.routes import router as status_router

Clock = Callable[[], datetime]
Reader = Annotated[Principal, Depends(require("read"))]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
PageToken = Annotated[str | None, Query(description="The `next` token of the previous page.")]
AsOf = Annotated[
    str | None,
    Query(
        description="World date or time: the status from events that occurred up to then "
        "(a date means the end of that day, UTC)."
    ),
]
KnownAt = Annotated[
    str | None,
    Query(description="Recording time: only events recorded by then (a date means its end, UTC)."),
]

router = APIRouter()


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content, default=_default), status_code=status, media_type="application/json")


def _default(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    raise TypeError


def _conn(request: Request) -> Connection:
    engine: Engine = request.app.state.engine
    return engine.connect()


def _now(request: Request) -> datetime:
    clock: Clock = request.app.state.clock
    return clock()


def _token(after: str | None) -> str | None:
    return base64.urlsafe_b64encode(after.encode()).decode() if after is not None else None


def _after(token: str | None) -> str | None:
    if not token:
        return None
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise Problem(
            422,
            "Invalid query parameter",
            "page_token: not a token this API gave",
            kind="invalid-request",
            errors=[{"field": "query.page_token", "reason": "not a token this API gave"}],
        ) from None


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _sources(part: AgreementPart | CasePart) -> dict[str, Any]:
    return {name: p.model_dump(mode="json") for name, p in part.provenance.items()}


def agreement_out(
    state: SubjectState | None, subject: str, *, as_of: datetime | None, known_at: datetime | None
) -> dict[str, Any]:
    """The agreement object of the HTTP contract."""
    a = state.agreement if state is not None else None
    base: dict[str, Any] = {
        "id": subject,
        "as_of": as_of.isoformat() if as_of else None,
        "known_at": known_at.isoformat() if known_at else None,
    }
    if a is None or state is None:
        return {
            **base,
            "status": None,
            "status_since": None,
            "parties": [],
            "signed_on": None,
            "in_force_on": None,
            "transfers_total": 0,
            "transfers_approximate": False,
            "transfer_target": None,
            "last_event_at": None,
            "event_count": 0,
        }
    return {
        **base,
        "status": a.status,
        "status_since": _dump(a.status_since),
        "confidence": a.confidence,
        "title": a.title,
        "kind": a.kind,
        "parties": a.parties,
        "partner": a.partner,
        "proposed_on": _dump(a.proposed_on),
        "signed_on": _dump(a.signed_on),
        "implementing_since": _dump(a.implementing_since),
        "in_force_on": _dump(a.in_force_on),
        "suspended_on": _dump(a.suspended_on),
        "resumed_on": _dump(a.resumed_on),
        "terminated_on": _dump(a.terminated_on),
        "signatories": a.signatories,
        "place": a.place,
        "excluded_nationalities": a.excluded_nationalities,
        "eligible_nationalities": a.eligible_nationalities,
        "conditions": a.conditions,
        "legal_actions": [_dump(x) for x in a.legal_actions],
        "transfers_total": a.transfers_total,
        "transfers_approximate": a.transfers_approximate,
        "transfer_reports": a.transfer_reports,
        "transfer_target": a.transfer_target,
        "transfer_target_by": _dump(a.transfer_target_by),
        "history": [_dump(t) for t in a.history],
        "last_event_at": _dump(state.last_event_at),
        "last_event_type": state.last_event_type,
        "event_count": state.event_count,
        "sources": _sources(a),
    }


def deadline_out(d: Deadline, now: datetime) -> dict[str, Any]:
    """A deadline with the time left (negative once past)."""
    left = (d.due_instant - now).total_seconds()
    return {**d.model_dump(mode="json"), "status": d.state_at(now), "time_left_seconds": round(left)}


def case_out(
    state: SubjectState | None, subject: str, *, as_of: datetime | None, known_at: datetime | None, now: datetime
) -> dict[str, Any]:
    """A case: rulings, stay requests (pending and decided), deadlines."""
    c = state.case if state is not None else None
    base: dict[str, Any] = {
        "id": subject,
        "as_of": as_of.isoformat() if as_of else None,
        "known_at": known_at.isoformat() if known_at else None,
    }
    if c is None or state is None:
        return {**base, "status": None, "rulings": [], "stay_requests": [], "deadlines": []}
    return {
        **base,
        "status": c.status,
        "status_since": _dump(c.status_since),
        "title": c.title,
        "court": c.court,
        "filed_on": _dump(c.filed_on),
        "plaintiffs": c.plaintiffs,
        "defendants": c.defendants,
        "affects": c.affects,
        "rulings": [_dump(r) for r in c.rulings],
        "stay_requests": [_dump(r) for r in c.stay_requests],
        "pending_stay_requests": len(c.pending_stays),
        "stay_decisions": [_dump(d) for d in c.stay_decisions],
        "deadlines": [deadline_out(d, as_of or now) for d in state.deadlines],
        "last_event_at": _dump(state.last_event_at),
        "event_count": state.event_count,
        "sources": _sources(c),
    }


def event_out(event: Event, note: Annotation | None = None) -> dict[str, Any]:
    """An event as stored, with how it stands after retractions and corrections."""
    out: dict[str, Any] = event.model_dump(mode="json", exclude_none=True)
    if note is not None:
        out["status"] = note.status
        out["retracted_by"] = note.retracted_by
        out["corrected_by"] = note.corrected_by
        if note.original is not None:
            out["original"] = note.original.model_dump(mode="json", exclude_none=True)
        if note.correction_errors:
            out["correction_errors"] = note.correction_errors
    return out


def _not_found(kind: str, subject: str) -> Problem:
    return Problem(404, f"Unknown {kind}", f"no {kind} {subject!r} is known", kind="not-found")


@router.get("/v1/agreements", summary="Agreement statuses", responses=PROBLEM_RESPONSES)
def list_agreements(
    request: Request, _: Reader, status: str | None = None, limit: Limit = 50, page_token: PageToken = None
) -> Response:
    """Every agreement's current status, ordered by id, a page at a time."""
    with _conn(request) as conn:
        page = queries.list_agreements(conn, status=status, after=_after(page_token), limit=limit)
        states = queries.subjects_states(conn, [r.id for r in page.rows])
    items = [agreement_out(states.get(r.id), r.id, as_of=None, known_at=None) for r in page.rows]
    return _json({"items": items, "next": _token(page.next_after)})


@router.get(
    "/v1/agreements/{agreement_id}",
    summary="One agreement, as of any date",
    responses={**PROBLEM_RESPONSES, 404: {"description": "Unknown agreement"}},
)
def get_agreement(
    request: Request, agreement_id: str, _: Reader, as_of: AsOf = None, known_at: KnownAt = None
) -> Response:
    """The agreement's status now, or as of a date and as known at a time."""
    as_of_at, known = parse_bound("as_of", as_of), parse_bound("known_at", known_at)
    with _conn(request) as conn:
        current = queries.snapshot(conn, agreement_id)
        if current is None or current.agreement is None:
            raise _not_found("agreement", agreement_id)
        state = queries.state_as_of(conn, agreement_id, as_of=as_of_at, known_at=known)
    return _json(agreement_out(state, agreement_id, as_of=as_of_at, known_at=known))


def _timeline(request: Request, subject: str, known_at: str | None, limit: int, page_token: str | None) -> Response:
    known = parse_bound("known_at", known_at)
    start = int(_after(page_token) or 0)
    with _conn(request) as conn:
        if not queries.subject_exists(conn, subject):
            raise _not_found("subject", subject)
        entries = queries.timeline(conn, subject, known_at=known)
    chunk = entries[start : start + limit]
    more = start + limit < len(entries)
    return _json(
        {
            "subject": subject,
            "total": len(entries),
            "items": [
                {**event_out(e.event, e.annotation), "partition": e.partition, "offset": e.offset} for e in chunk
            ],
            "next": _token(str(start + limit)) if more else None,
        }
    )


@router.get(
    "/v1/agreements/{agreement_id}/timeline",
    summary="Every event of an agreement",
    responses={**PROBLEM_RESPONSES, 404: {"description": "Unknown agreement"}},
)
def agreement_timeline(
    request: Request,
    agreement_id: str,
    _: Reader,
    known_at: KnownAt = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> Response:
    """The agreement's events in world order, with retractions and corrections applied and shown."""
    return _timeline(request, agreement_id, known_at, limit, page_token)


@router.get(
    "/v1/cases/{case_id}/timeline",
    summary="Every event of a case",
    responses={**PROBLEM_RESPONSES, 404: {"description": "Unknown case"}},
)
def case_timeline(
    request: Request,
    case_id: str,
    _: Reader,
    known_at: KnownAt = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> Response:
    """The case's events in world order, with retractions and corrections applied and shown."""
    return _timeline(request, case_id, known_at, limit, page_token)


@router.get(
    "/v1/events/{event_id}", summary="One event", responses={**PROBLEM_RESPONSES, 404: {"description": "Unknown event"}}
)
def get_event(request: Request, event_id: UUID, _: Reader) -> Response:
    """An event as recorded, with how it stands now (active, corrected or retracted)."""
    with _conn(request) as conn:
        found = queries.event_by_id(conn, event_id)
        if found is None:
            raise Problem(404, "Unknown event", f"no event {event_id} is known", kind="not-found")
        event, subject = found
        if not queries.has_amendments(conn, subject):
            return _json(event_out(event, Annotation()))  # the common case: nothing to resolve
        entries = queries.timeline(conn, subject, known_at=None)
    note = next((e.annotation for e in entries if e.event.event_id == event_id), None)
    return _json(event_out(event, note))


@router.get("/v1/cases", summary="Court cases", responses=PROBLEM_RESPONSES)
def list_cases(
    request: Request,
    _: Reader,
    status: str | None = None,
    affects: str | None = None,
    limit: Limit = 50,
    page_token: PageToken = None,
) -> Response:
    """Every case with its status, ordered by id, a page at a time."""
    now = _now(request)
    with _conn(request) as conn:
        page = queries.list_cases(conn, status=status, affects=affects, after=_after(page_token), limit=limit)
        states = queries.subjects_states(conn, [r.id for r in page.rows])
    items = [case_out(states.get(r.id), r.id, as_of=None, known_at=None, now=now) for r in page.rows]
    return _json({"items": items, "next": _token(page.next_after)})


@router.get(
    "/v1/cases/{case_id}",
    summary="One case, as of any date",
    responses={**PROBLEM_RESPONSES, 404: {"description": "Unknown case"}},
)
def get_case(request: Request, case_id: str, _: Reader, as_of: AsOf = None, known_at: KnownAt = None) -> Response:
    """The case now, or as of a date and as known at a time."""
    as_of_at, known = parse_bound("as_of", as_of), parse_bound("known_at", known_at)
    with _conn(request) as conn:
        current = queries.snapshot(conn, case_id)
        if current is None or current.case is None:
            raise _not_found("case", case_id)
        state = queries.state_as_of(conn, case_id, as_of=as_of_at, known_at=known)
    return _json(case_out(state, case_id, as_of=as_of_at, known_at=known, now=_now(request)))


@router.get("/v1/deadlines", summary="Deadlines", responses=PROBLEM_RESPONSES)
def list_deadlines(
    request: Request,
    _: Reader,
    status: Literal["open", "past", "closed", "all"] = "open",
    subject: str | None = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> Response:
    """Deadlines with the time left: open (still ahead), past, or closed by a stay decision."""
    now = _now(request)
    with _conn(request) as conn:
        page = queries.deadlines(conn, status=status, subject=subject, now=now, after=_after(page_token), limit=limit)
    items = [
        deadline_out(
            Deadline.model_validate(
                {
                    "id": r.id,
                    "subject": r.subject,
                    "due_at": r.due_at,
                    "description": r.description,
                    "kind": r.kind,
                    "origin": r.origin,
                    "event_id": r.event_id,
                    "affects": r.affects,
                    "confidence": r.confidence,
                    "status": r.status,
                    "closed_by": r.closed_by,
                    "closed_reason": r.closed_reason,
                }
            ),
            now,
        )
        for r in page.rows
    ]
    items.sort(key=lambda d: d["time_left_seconds"])
    return _json({"items": items, "next": _token(page.next_after), "now": now.isoformat()})


@router.get("/v1/transfers", summary="Transfers per agreement, month and nationality", responses=PROBLEM_RESPONSES)
def list_transfers(
    request: Request,
    _: Reader,
    agreement: str | None = None,
    group_by: Annotated[str, Query(pattern=r"^(month|nationality|month,nationality|none)$")] = "month",
) -> Response:
    """Transfer counts; `approximate` marks sums that include approximate reports."""
    columns = [] if group_by == "none" else group_by.split(",")
    with _conn(request) as conn:
        if agreement and not queries.subject_exists(conn, agreement):
            raise _not_found("agreement", agreement)
        rows = queries.transfers(conn, agreement=agreement, group_by=columns)
    return _json({"group_by": columns, "items": rows})


@router.get("/v1/statistics", summary="Reported figures", responses=PROBLEM_RESPONSES)
def list_statistics(
    request: Request,
    _: Reader,
    metric: str | None = None,
    subject: str | None = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> Response:
    """Statistics series points (official or reported figures)."""
    with _conn(request) as conn:
        page = queries.statistics(conn, metric=metric, subject=subject, after=_after(page_token), limit=limit)
    items = [
        {
            "event_id": r.event_id,
            "subject": r.subject,
            "metric": r.metric,
            "value": r.value,
            "unit": r.unit,
            "approximate": r.approximate,
            "region": r.region,
            "period_start": r.period_start.isoformat() if r.period_start else None,
            "period_end": r.period_end.isoformat() if r.period_end else None,
            "occurred_at": r.occurred_at.isoformat(),
            "confidence": r.confidence,
        }
        for r in page.rows
    ]
    return _json({"items": items, "next": _token(page.next_after)})


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    """Alive."""
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
def readyz(request: Request) -> Response:
    """Ready when the read model answers."""
    try:
        with _conn(request) as conn:
            conn.execute(text("SELECT 1"))
            active_generation(conn)
        ok = True
    except Exception:
        ok = False
    return _json({"status": "ready" if ok else "unavailable", "checks": {"database": ok}}, 200 if ok else 503)


def create_app(settings: ProjectorSettings, *, engine: Engine | None = None, clock: Clock | None = None) -> FastAPI:
    """Build the query API over the read model behind `settings.database_url`."""
    owned = engine is None
    db = engine or make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        uninstall_gauges = gauges.install(gauges.ReadModelGauges(db, app.state.clock))
        try:
            yield
        finally:
            uninstall_gauges()
            if owned:
                db.dispose()

    app = FastAPI(
        title="accordwatch projector",
        version="1",
        lifespan=lifespan,
        summary="Agreement status, cases, deadlines and transfers, as of any date.",
    )
    app.state.settings = settings
    app.state.engine = db
    app.state.clock = clock or (lambda: datetime.now(UTC))
    app.state.keyring = Keyring.from_settings(settings)
    app.include_router(router)
    app.include_router(status_router)
    app.include_router(calendar_router)
    add_metrics_endpoint(app)
    install_edges(app, counter=metrics.API_REQUESTS, max_body_bytes=settings.max_body_bytes)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn: settings from the environment."""
    return create_app(ProjectorSettings())


def main() -> None:
    """Serve the query API: `python -m services.projector.api`."""
    import uvicorn

    from services.platform.http import uvicorn_options

    settings = ProjectorSettings()
    uvicorn.run(
        "services.projector.api:create_app_from_env",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        **uvicorn_options(settings.log_level),
    )


if __name__ == "__main__":
    main()
