"""The projector's query API: agreements, cases, deadlines, transfers, timelines, as of any date."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from sqlalchemy import Connection, Engine, text

from services.domain.fold import Annotation
from services.domain.state import AgreementStatus, CaseStatus, Deadline
from services.platform.auth import Keyring, Principal, require
from services.platform.clock import make_clock
from services.platform.db import make_engine
from services.platform.http import add_metrics_endpoint, install_edges
from services.platform.openapi import install_contract
from services.platform.pages import PageTokens, position_offset, position_text
from services.platform.problems import Problem, invalid_parameter, problem_responses
from services.projector import gauges, metrics
from services.projector.params import (
    AgreementId,
    AsOf,
    CaseId,
    EventId,
    KnownAt,
    Limit,
    MetricFilter,
    PageToken,
    SubjectFilter,
    parse_bound,
)
from services.projector.policy_routes import router as policies_router
from services.projector.readmodel import queries
from services.projector.readmodel.store import active_generation
from services.projector.settings import ProjectorSettings
from services.projector.status.calendar import router as calendar_router
from services.projector.status.routes import router as status_router
from services.projector.views import (
    AgreementOut,
    AgreementPageOut,
    CaseOut,
    CasePageOut,
    DeadlinePageOut,
    EventOut,
    StatisticOut,
    StatisticPageOut,
    TimelineEntryOut,
    TimelineOut,
    TransferOut,
    TransfersOut,
    agreement_out,
    case_out,
    deadline_out,
    event_fields,
    event_out,
)

Clock = Callable[[], datetime]
Reader = Annotated[Principal, Depends(require("read"))]

LISTING = problem_responses(401, 403, 422)
ONE = problem_responses(401, 403, 404, 422)

router = APIRouter()


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _conn(request: Request) -> Connection:
    engine: Engine = request.app.state.engine
    return engine.connect()


def _now(request: Request) -> datetime:
    clock: Clock = request.app.state.clock
    return clock()


def _tokens(request: Request) -> PageTokens:
    tokens: PageTokens = request.app.state.page_tokens
    return tokens


def _not_found(kind: str, subject: str) -> Problem:
    return Problem(404, f"Unknown {kind}", f"no {kind} {subject!r} is known", kind="not-found")


@router.get("/v1/agreements", summary="Agreement statuses", response_model=AgreementPageOut, responses=LISTING)
def list_agreements(
    request: Request, _: Reader, status: Annotated[AgreementStatus | None, Query()] = None, limit: Limit = 50,
    page_token: PageToken = None,
) -> AgreementPageOut:
    """Every agreement's current status, ordered by id, a page at a time."""
    filters = {"status": status}
    after = position_text(_tokens(request).read(page_token, "agreements", filters), "after", "page_token")
    with _conn(request) as conn:
        page = queries.list_agreements(conn, status=status, after=after, limit=limit)
        states = queries.subjects_states(conn, [r.id for r in page.rows], _now(request))
    items = [agreement_out(states.get(r.id), r.id, as_of=None, known_at=None) for r in page.rows]
    return AgreementPageOut(items=items, next=_next(request, "agreements", filters, page.next_after))


def _next(request: Request, listing: str, filters: dict[str, Any], after: str | None) -> str | None:
    return _tokens(request).issue(listing, filters, {"after": after}) if after is not None else None


@router.get("/v1/agreements/{agreement_id}", summary="One agreement, as of any date", response_model=AgreementOut,
            responses=problem_responses(401, 403, 404, 422, s404="Unknown agreement"))
def get_agreement(
    request: Request, agreement_id: AgreementId, _: Reader, as_of: AsOf = None, known_at: KnownAt = None
) -> AgreementOut:
    """The agreement's status now, or as of a date and as known at a time."""
    as_of_at, known = parse_bound("as_of", as_of), parse_bound("known_at", known_at)
    now = _now(request)
    with _conn(request) as conn:
        current = queries.snapshot(conn, agreement_id, now)
        if current is None or current.agreement is None:
            raise _not_found("agreement", agreement_id)
        state = current if as_of_at is None and known is None else queries.state_as_of(
            conn, agreement_id, as_of=as_of_at, known_at=known, now=now)
    return agreement_out(state, agreement_id, as_of=as_of_at, known_at=known)


def _timeline(request: Request, subject: str, known_at: str | None, limit: int, page_token: str | None) -> TimelineOut:
    known = parse_bound("known_at", known_at)
    filters = {"subject": subject, "known_at": known_at or None}
    start = position_offset(_tokens(request).read(page_token, "timeline", filters), "page_token")
    with _conn(request) as conn:
        if not queries.subject_exists(conn, subject):
            raise _not_found("subject", subject)
        entries = queries.timeline(conn, subject, known_at=known)
    chunk = entries[start : start + limit]
    more = start + limit < len(entries)
    return TimelineOut(
        subject=subject,
        total=len(entries),
        items=[TimelineEntryOut.model_validate({**event_fields(e.event, e.annotation), "partition": e.partition,
                                                "offset": e.offset}) for e in chunk],
        next=_tokens(request).issue("timeline", filters, {"offset": start + limit}) if more else None,
    )


@router.get("/v1/agreements/{agreement_id}/timeline", summary="Every event of an agreement",
            response_model=TimelineOut, responses=problem_responses(401, 403, 404, 422, s404="Unknown agreement"))
def agreement_timeline(
    request: Request, agreement_id: AgreementId, _: Reader, known_at: KnownAt = None, limit: Limit = 100,
    page_token: PageToken = None,
) -> TimelineOut:
    """The agreement's events in world order, with retractions and corrections applied and shown."""
    return _timeline(request, agreement_id, known_at, limit, page_token)


@router.get("/v1/cases/{case_id}/timeline", summary="Every event of a case", response_model=TimelineOut,
            responses=problem_responses(401, 403, 404, 422, s404="Unknown case"))
def case_timeline(
    request: Request, case_id: CaseId, _: Reader, known_at: KnownAt = None, limit: Limit = 100,
    page_token: PageToken = None,
) -> TimelineOut:
    """The case's events in world order, with retractions and corrections applied and shown."""
    return _timeline(request, case_id, known_at, limit, page_token)


@router.get("/v1/events/{event_id}", summary="One event", response_model=EventOut,
            responses=problem_responses(401, 403, 404, 422, s404="Unknown event"))
def get_event(request: Request, event_id: EventId, _: Reader) -> EventOut:
    """An event as recorded, with how it stands now (active, corrected or retracted)."""
    with _conn(request) as conn:
        found = queries.event_by_id(conn, event_id)
        if found is None:
            raise Problem(404, "Unknown event", f"no event {event_id} is known", kind="not-found")
        event, subject = found
        if not queries.has_amendments(conn, subject):
            return event_out(event, Annotation())  # the common case: nothing to resolve
        entries = queries.timeline(conn, subject, known_at=None)
    note = next((e.annotation for e in entries if e.event.event_id == event_id), Annotation())
    return event_out(event, note)


@router.get("/v1/cases", summary="Court cases", response_model=CasePageOut, responses=LISTING)
def list_cases(
    request: Request, _: Reader, status: Annotated[CaseStatus | None, Query()] = None,
    affects: SubjectFilter = None, limit: Limit = 50, page_token: PageToken = None,
) -> CasePageOut:
    """Every case with its status, ordered by id, a page at a time."""
    now = _now(request)
    filters = {"status": status, "affects": affects}
    after = position_text(_tokens(request).read(page_token, "cases", filters), "after", "page_token")
    with _conn(request) as conn:
        page = queries.list_cases(conn, status=status, affects=affects, after=after, limit=limit)
        states = queries.subjects_states(conn, [r.id for r in page.rows], now)
    items = [case_out(states.get(r.id), r.id, as_of=None, known_at=None, now=now) for r in page.rows]
    return CasePageOut(items=items, next=_next(request, "cases", filters, page.next_after))


@router.get("/v1/cases/{case_id}", summary="One case, as of any date", response_model=CaseOut,
            responses=problem_responses(401, 403, 404, 422, s404="Unknown case"))
def get_case(request: Request, case_id: CaseId, _: Reader, as_of: AsOf = None, known_at: KnownAt = None) -> CaseOut:
    """The case now, or as of a date and as known at a time."""
    as_of_at, known = parse_bound("as_of", as_of), parse_bound("known_at", known_at)
    now = _now(request)
    with _conn(request) as conn:
        current = queries.snapshot(conn, case_id, now)
        if current is None or current.case is None:
            raise _not_found("case", case_id)
        state = current if as_of_at is None and known is None else queries.state_as_of(
            conn, case_id, as_of=as_of_at, known_at=known, now=now)
    return case_out(state, case_id, as_of=as_of_at, known_at=known, now=now)


@router.get("/v1/deadlines", summary="Deadlines", response_model=DeadlinePageOut, responses=LISTING)
def list_deadlines(
    request: Request,
    _: Reader,
    status: Literal["open", "met", "stayed", "passed", "all"] = "open",
    subject: SubjectFilter = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> DeadlinePageOut:
    """Deadlines with the time left, by status as of now: open (ahead), stayed, met (took effect), passed."""
    now = _now(request)
    filters = {"status": status, "subject": subject}
    after = position_text(_tokens(request).read(page_token, "deadlines", filters), "after", "page_token")
    with _conn(request) as conn:
        page = queries.deadlines(conn, status=status, subject=subject, now=now, after=after, limit=limit)
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
                    "regions": r.regions,
                    "confidence": r.confidence,
                    "status": r.status,
                    "status_by": r.status_by,
                    "status_reason": r.status_reason,
                }
            ),
            now,
        )
        for r in page.rows
    ]
    items.sort(key=lambda d: d.time_left_seconds)
    return DeadlinePageOut(items=items, next=_next(request, "deadlines", filters, page.next_after), now=now)


@router.get("/v1/transfers", summary="Transfers per agreement, month and nationality", response_model=TransfersOut,
            responses=problem_responses(401, 403, 404, 422, s404="Unknown agreement"))
def list_transfers(
    request: Request,
    _: Reader,
    agreement: SubjectFilter = None,
    group_by: Annotated[str, Query(pattern=r"^(month|nationality|month,nationality|none)$")] = "month",
) -> TransfersOut:
    """Transfer counts; `approximate` marks sums that include approximate reports."""
    columns = [] if group_by == "none" else group_by.split(",")
    with _conn(request) as conn:
        if agreement and not queries.subject_exists(conn, agreement):
            raise _not_found("agreement", agreement)
        rows = queries.transfers(conn, agreement=agreement, group_by=columns)
    return TransfersOut.model_validate({"group_by": columns, "items": [TransferOut.model_validate(r) for r in rows]})


@router.get("/v1/statistics", summary="Reported figures", response_model=StatisticPageOut, responses=LISTING)
def list_statistics(
    request: Request,
    _: Reader,
    metric: MetricFilter = None,
    subject: SubjectFilter = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> StatisticPageOut:
    """Statistics series points (official or reported figures)."""
    filters = {"metric": metric, "subject": subject}
    after = position_text(_tokens(request).read(page_token, "statistics", filters), "after", "page_token")
    if after is not None:
        try:
            after = str(UUID(after))
        except ValueError:
            raise invalid_parameter("query.page_token", "the page token does not hold an event id") from None
    with _conn(request) as conn:
        page = queries.statistics(conn, metric=metric, subject=subject, after=after, limit=limit)
    items = [
        StatisticOut(
            event_id=r.event_id,
            subject=r.subject,
            metric=r.metric,
            value=r.value,
            unit=r.unit,
            approximate=r.approximate,
            region=r.region,
            period_start=r.period_start.isoformat() if r.period_start else None,
            period_end=r.period_end.isoformat() if r.period_end else None,
            occurred_at=r.occurred_at.isoformat(),
            confidence=r.confidence,
        )
        for r in page.rows
    ]
    return StatisticPageOut(items=items, next=_next(request, "statistics", filters, page.next_after))


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
        uninstall_gauges = gauges.install(gauges.ReadModelGauges(db, app.state.clock, ttl_s=settings.gauges_ttl_s))
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
    app.state.clock = clock or make_clock(settings.clock_file)
    app.state.keyring = Keyring.from_settings(settings)
    app.state.page_tokens = PageTokens(
        settings.page_token_key.get_secret_value().encode() if settings.page_token_key else None
    )
    app.include_router(router)
    app.include_router(policies_router)
    app.include_router(status_router)
    app.include_router(calendar_router)
    add_metrics_endpoint(app)
    install_edges(app, counter=metrics.API_REQUESTS, max_body_bytes=settings.max_body_bytes)
    install_contract(app)
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
        **uvicorn_options(settings.log_level, kafka_clients=False),
    )


if __name__ == "__main__":
    main()
