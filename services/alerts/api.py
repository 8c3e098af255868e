"""The alerts API: rules, alert state, webhook subscriptions, their deliveries."""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine, insert, select, text, update

from services.alerts import metrics, outbox
from services.alerts.delivery import Sender, message_id
from services.alerts.egress import EgressPolicy, EgressRefused
from services.alerts.feed import router as feed_router
from services.alerts.migrate import upgrade
from services.alerts.rules import SEVERITIES, RuleSet, RulesFileError, Severity, format_duration, load_rules
from services.alerts.settings import AlertsSettings
from services.alerts.store import (
    AlertRow,
    SubscriptionRow,
    alert_document,
    load_alerts,
    load_subscriptions,
    webhook_body,
)
from services.alerts.tables import Alert, Delivery, DeliveryAttempt, Subscription
from services.platform.auth import Keyring, Principal, require
from services.platform.db import make_engine
from services.platform.http import add_metrics_endpoint, install_edges
from services.platform.problems import PROBLEM_RESPONSES, Problem

Clock = Callable[[], datetime]
Reader = Annotated[Principal, Depends(require("read"))]
Admin = Annotated[Principal, Depends(require("subscriptions:admin"))]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
PageToken = Annotated[str | None, Query(description="The `next` token of the previous page.")]

router = APIRouter(responses=PROBLEM_RESPONSES)


class SubscriptionIn(BaseModel):
    """A webhook subscription to create: where to, and which alerts (empty filters pass all)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="http(s) URL of the receiver.")
    description: str | None = Field(default=None, max_length=500)
    rules: list[str] = Field(default_factory=list, max_length=50, description="Rule ids; empty: every rule.")
    severities: list[Severity] = Field(default_factory=list, description="Severities; empty: every severity.")
    subjects: list[str] = Field(
        default_factory=list, max_length=200,
        description="Agreement or case ids (an alert matches by its subject or what it affects); empty: all.",
    )


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content, default=str), status_code=status, media_type="application/json")


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _writer(request: Request) -> Engine:
    """The engine for transactions that write: on SQLite they take the write lock when they begin.

    A reading transaction that later writes fails at once ("database is locked") when the
    worker committed in between, which the worker's frequent bookings make likely.
    """
    engine: Engine = request.app.state.writer
    return engine


def _now(request: Request) -> datetime:
    clock: Clock = request.app.state.clock
    return clock()


def _invalid(field: str, reason: str) -> Problem:
    return Problem(422, "Invalid request", f"{field}: {reason}", kind="invalid-request",
                   errors=[{"field": field, "reason": reason}])


def _not_found(what: str, key: object) -> Problem:
    return Problem(404, "Not found", f"no {what} {key}", kind="not-found")


def _page(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        raise _invalid("query.next", "not a token this API gave") from None


def _next(offset: int, limit: int, got: int) -> str | None:
    return base64.urlsafe_b64encode(str(offset + limit).encode()).decode() if got > limit else None


def subscription_out(sub: SubscriptionRow) -> dict[str, Any]:
    """A subscription as the API shows it (never its secret, except once at creation)."""
    return {
        "id": str(sub.id), "url": sub.url, "description": sub.description, "rules": sub.rules,
        "severities": sub.severities, "subjects": sub.subjects, "status": sub.status,
        "disabled_reason": sub.disabled_reason,
        "disabled_at": sub.disabled_at.isoformat() if sub.disabled_at else None,
        "consecutive_failures": sub.consecutive_failures, "created_at": sub.created_at.isoformat(),
    }


def _subscription(conn: Connection, subscription_id: UUID) -> SubscriptionRow:
    found = load_subscriptions(conn, Subscription.id == subscription_id, Subscription.status != "deleted")
    if not found:
        raise _not_found("subscription", subscription_id)
    return found[0]


# -- rules and alerts -----------------------------------------------------------------------


@router.get("/v1/rules", summary="The rules in force")
def list_rules(request: Request, _: Reader) -> Response:
    rules: RuleSet = request.app.state.rules
    return _json({
        "tracked_policies": sorted(rules.tracked_policies),
        "items": [
            {"id": r.id, "kind": r.kind, "severity": r.severity, "description": r.description,
             "enabled": r.enabled, "lead_times": [format_duration(x) for x in sorted(r.lead_times, reverse=True)],
             "resolve_after": format_duration(r.resolve_after) if r.resolve_after else None}
            for r in rules.rules
        ],
    })


@router.get("/v1/alerts", summary="Alerts, newest first")
def list_alerts(
    request: Request,
    _: Reader,
    state: Annotated[Literal["firing", "resolved"] | None, Query(description="firing or resolved")] = None,
    rule: Annotated[str | None, Query()] = None,
    severity: Annotated[Severity | None, Query()] = None,
    subject: Annotated[str | None, Query()] = None,
    limit: Limit = 100,
    next: PageToken = None,
) -> Response:
    offset = _page(next)
    conditions = [
        c for c in (
            Alert.state == state if state else None, Alert.rule == rule if rule else None,
            Alert.severity == severity if severity else None, Alert.subject == subject if subject else None,
        ) if c is not None
    ]
    with _engine(request).connect() as conn:
        rows = conn.execute(
            select(Alert.__table__).where(*conditions)
            .order_by(Alert.fired_at.desc(), Alert.fingerprint).offset(offset).limit(limit + 1)
        ).all()
    items = [alert_document(AlertRow(**row._mapping)) for row in rows[:limit]]
    return _json({"items": items, "next": _next(offset, limit, len(rows))})


@router.get("/v1/alerts/{fingerprint:path}", summary="One alert and its notifications")
def get_alert(request: Request, fingerprint: str, _: Reader) -> Response:
    with _engine(request).connect() as conn:
        found = load_alerts(conn, Alert.fingerprint == fingerprint)
        if not found:
            raise _not_found("alert", fingerprint)
        notes = conn.execute(
            text("SELECT transition, type, created_at, late, suppressed FROM alert_notifications "
                 "WHERE fingerprint = :fp ORDER BY created_at"), {"fp": fingerprint}
        ).all()
    doc = alert_document(found[0])
    doc["notifications"] = [
        {"transition": n.transition, "type": n.type, "at": _iso(n.created_at), "late": bool(n.late),
         "sent": n.suppressed is None, "suppressed": n.suppressed}
        for n in notes
    ]
    return _json(doc)


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


# -- subscriptions --------------------------------------------------------------------------


@router.post("/v1/subscriptions", status_code=201, summary="Subscribe a webhook; the secret is shown once")
async def create_subscription(request: Request, body: SubscriptionIn, _: Admin) -> Response:
    rules: RuleSet = request.app.state.rules
    for i, rule_id in enumerate(body.rules):
        if rules.by_id(rule_id) is None:
            known = ", ".join(r.id for r in rules.rules)
            raise _invalid(f"body.rules.{i}", f"unknown rule {rule_id!r}; the rules are: {known}")
    policy: EgressPolicy = request.app.state.egress
    try:
        await policy.check(body.url)
    except EgressRefused as exc:
        raise _invalid("body.url", str(exc)) from None
    now = _now(request)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    row: dict[str, Any] = {
        "id": uuid.uuid4(), "url": body.url, "secret": secret, "description": body.description,
        "rules": sorted(set(body.rules)), "severities": sorted(set(body.severities), key=SEVERITIES.index),
        "subjects": sorted(set(body.subjects)), "status": "active", "disabled_reason": None,
        "disabled_at": None, "consecutive_failures": 0, "created_at": now,
    }
    engine = _writer(request)

    def write() -> None:
        with engine.begin() as conn:
            conn.execute(insert(Subscription), row)

    await asyncio.to_thread(write)
    out = subscription_out(SubscriptionRow(**row))
    return _json({**out, "secret": secret}, 201)


@router.get("/v1/subscriptions", summary="Subscriptions")
def list_subscriptions(request: Request, _: Admin, limit: Limit = 100, next: PageToken = None) -> Response:
    offset = _page(next)
    with _engine(request).connect() as conn:
        rows = conn.execute(
            select(Subscription.__table__).where(Subscription.status != "deleted")
            .order_by(Subscription.created_at, Subscription.id).offset(offset).limit(limit + 1)
        ).all()
    items = [subscription_out(SubscriptionRow(**row._mapping)) for row in rows[:limit]]
    return _json({"items": items, "next": _next(offset, limit, len(rows))})


@router.get("/v1/subscriptions/{subscription_id}", summary="One subscription")
def get_subscription(request: Request, subscription_id: UUID, _: Admin) -> Response:
    with _engine(request).connect() as conn:
        return _json(subscription_out(_subscription(conn, subscription_id)))


@router.delete("/v1/subscriptions/{subscription_id}", status_code=204, summary="Unsubscribe")
def delete_subscription(request: Request, subscription_id: UUID, _: Admin) -> Response:
    now = _now(request)
    with _writer(request).begin() as conn:
        _subscription(conn, subscription_id)
        conn.execute(update(Subscription).where(Subscription.id == subscription_id).values(status="deleted"))
        conn.execute(
            update(Delivery).where(Delivery.subscription_id == subscription_id, Delivery.status == "pending")
            .values(status="cancelled", completed_at=now, lease_until=None, last_error="subscription deleted")
        )
    return Response(status_code=204)


@router.post("/v1/subscriptions/{subscription_id}/test", summary="Send a signed ping now")
async def send_test_ping(request: Request, subscription_id: UUID, _: Admin) -> Response:
    engine = _writer(request)
    now = _now(request)
    with engine.connect() as conn:
        sub = _subscription(conn, subscription_id)
    if sub.status != "active":
        raise Problem(409, "Subscription disabled", f"the subscription is {sub.status}: {sub.disabled_reason}",
                      kind="subscription-disabled")
    delivery_id = uuid.uuid4()
    payload = webhook_body("ping", now, {"subscription_id": str(sub.id), "message": "accordwatch test ping"})
    claimed = outbox.Claimed(delivery_id, sub.id, sub.url, sub.secret, payload, 0, now)

    def write() -> None:
        with engine.begin() as conn:
            conn.execute(insert(Delivery), {
                "id": delivery_id, "subscription_id": sub.id, "notification_id": None, "type": "ping",
                "payload": payload, "status": "pending", "attempts": 0, "next_attempt_at": now + timedelta(days=3650),
                "lease_until": None, "created_at": now,
            })

    await asyncio.to_thread(write)
    sender: Sender = request.app.state.sender
    result = await sender.send(claimed)
    once = outbox.Policy(schedule=(0.0,), disable_after=10**9, max_retry_after_s=0, lease=timedelta(0))
    booked = await asyncio.to_thread(outbox.record, engine, [result], once)
    return _json({
        "delivery_id": str(delivery_id), "webhook_id": message_id(delivery_id), "outcome": booked[0].outcome,
        "status_code": result.status_code, "error": result.error, "duration_ms": round(result.duration_ms, 1),
    })


@router.get("/v1/subscriptions/{subscription_id}/deliveries", summary="The delivery log, newest first")
def list_deliveries(
    request: Request, subscription_id: UUID, _: Admin,
    status: Annotated[Literal["pending", "succeeded", "failed", "cancelled"] | None, Query()] = None,
    limit: Limit = 100, next: PageToken = None,
) -> Response:
    offset = _page(next)
    with _engine(request).connect() as conn:
        _subscription(conn, subscription_id)
        where = [Delivery.subscription_id == subscription_id]
        if status:
            where.append(Delivery.status == status)
        rows = conn.execute(
            select(Delivery.__table__).where(*where)
            .order_by(Delivery.created_at.desc(), Delivery.id).offset(offset).limit(limit + 1)
        ).all()
        ids = [row.id for row in rows[:limit]]
        attempts: dict[UUID, list[dict[str, Any]]] = {}
        if ids:
            for a in conn.execute(select(DeliveryAttempt.__table__).where(DeliveryAttempt.delivery_id.in_(ids))
                                  .order_by(DeliveryAttempt.attempt)):
                attempts.setdefault(a.delivery_id, []).append({
                    "attempt": a.attempt, "at": _iso(a.at), "status_code": a.status_code, "error": a.error,
                    "duration_ms": a.duration_ms,
                })
    items = [delivery_out(row, attempts.get(row.id, [])) for row in rows[:limit]]
    return _json({"items": items, "next": _next(offset, limit, len(rows))})


def delivery_out(row: Any, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """A delivery with its attempts."""
    return {
        "id": str(row.id), "webhook_id": message_id(row.id), "subscription_id": str(row.subscription_id),
        "type": row.type, "status": row.status, "attempts": row.attempts,
        "next_attempt_at": _iso(row.next_attempt_at) if row.status == "pending" else None,
        "last_status_code": row.last_status_code, "last_error": row.last_error,
        "created_at": _iso(row.created_at),
        "completed_at": _iso(row.completed_at) if row.completed_at else None,
        "payload": orjson.loads(row.payload), "log": attempts,
    }


@router.post("/v1/deliveries/{delivery_id}/retry", status_code=202, summary="Send a delivery again now")
def retry_delivery(request: Request, delivery_id: UUID, _: Admin) -> Response:
    now = _now(request)
    with _writer(request).begin() as conn:
        row = conn.execute(select(Delivery.__table__).where(Delivery.id == delivery_id)).first()
        if row is None:
            raise _not_found("delivery", delivery_id)
        sub = _subscription(conn, row.subscription_id)
        if sub.status != "active":
            raise Problem(409, "Subscription disabled",
                          f"the subscription is {sub.status} ({sub.disabled_reason}); create a new one",
                          kind="subscription-disabled")
        conn.execute(update(Delivery).where(Delivery.id == delivery_id).values(
            status="pending", next_attempt_at=now, lease_until=None, lease_token=None, completed_at=None))
        row = conn.execute(select(Delivery.__table__).where(Delivery.id == delivery_id)).one()
    return _json(delivery_out(row, []), 202)


# -- operations -----------------------------------------------------------------------------


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    """Alive."""
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
def readyz(request: Request) -> Response:
    """Ready when the alert store answers."""
    try:
        with _engine(request).connect() as conn:
            conn.execute(text("SELECT 1 FROM alerts LIMIT 1"))
        ok = True
    except Exception:
        ok = False
    return _json({"status": "ready" if ok else "unavailable", "checks": {"database": ok}}, 200 if ok else 503)


def create_app(
    settings: AlertsSettings, rules: RuleSet, *, engine: Engine | None = None, clock: Clock | None = None,
    writer: Engine | None = None,
) -> FastAPI:
    """Build the alerts API over the store behind `settings.database_url` (`writer` for writes, if given)."""
    owned = engine is None
    db = engine or make_engine(settings.database_url)
    writes = writer or (db if not owned else make_engine(settings.database_url, writer=True))
    now = clock or (lambda: datetime.now(UTC))
    policy = EgressPolicy(settings.allow_list)
    sender = Sender(policy, settings.delivery_timeout_s, now)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await sender.start()
        try:
            yield
        finally:
            await sender.close()
            if owned:
                db.dispose()
                writes.dispose()

    app = FastAPI(title="accordwatch alerts", version="1", lifespan=lifespan,
                  summary="Alert rules and state, webhook subscriptions and their deliveries.")
    app.state.settings = settings
    app.state.rules = rules
    app.state.engine = db
    app.state.writer = writes
    app.state.clock = now
    app.state.egress = policy
    app.state.sender = sender
    app.state.keyring = Keyring.from_settings(settings)
    app.include_router(router)
    app.include_router(feed_router)
    add_metrics_endpoint(app)
    install_edges(app, counter=metrics.API_REQUESTS, max_body_bytes=settings.max_body_bytes)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn: settings and rules from the environment; migrates the store first."""
    settings = AlertsSettings()
    rules = load_rules(settings.rules_file)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return create_app(settings, rules, engine=engine, writer=make_engine(settings.database_url, writer=True))


def main() -> None:
    """Serve the alerts API: `python -m services.alerts.api`."""
    import uvicorn

    from services.platform.http import uvicorn_options

    settings = AlertsSettings()
    try:
        load_rules(settings.rules_file)  # fail fast, naming the line
    except RulesFileError as exc:
        raise SystemExit(f"accordwatch alerts: {exc}") from None
    uvicorn.run("services.alerts.api:create_app_from_env", factory=True, host=settings.api_host,
                port=settings.api_port, **uvicorn_options(settings.log_level))


if __name__ == "__main__":
    main()

