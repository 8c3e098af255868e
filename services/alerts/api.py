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
from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import Connection, Engine, insert, select, text, update

from schemas.envelope import SLUG, SLUG_MAX
from services.alerts import metrics, outbox
from services.alerts.delivery import Sender, message_id
from services.alerts.egress import EgressPolicy, EgressRefused
from services.alerts.feed import router as feed_router
from services.alerts.migrate import upgrade
from services.alerts.rules import SEVERITIES, RuleSet, RulesFileError, Severity, format_duration, load_rules
from services.alerts.sealing import Sealer, SealingKeyMissing
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
from services.alerts.views import (
    AlertDetailOut,
    AlertOut,
    AlertPageOut,
    AttemptOut,
    DeliveryOut,
    DeliveryPageOut,
    NotificationOut,
    PingOut,
    RuleOut,
    RulesOut,
    SecretRotatedOut,
    SecretRotationIn,
    SubscriptionCreatedOut,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPageOut,
    delivery_out,
    subscription_out,
)
from services.platform.auth import Keyring, Principal, require
from services.platform.db import make_engine
from services.platform.http import add_metrics_endpoint, install_edges
from services.platform.openapi import install_contract
from services.platform.pages import PageTokens, position_offset
from services.platform.problems import Problem, invalid_parameter, problem_responses

Clock = Callable[[], datetime]
Reader = Annotated[Principal, Depends(require("read"))]
Admin = Annotated[Principal, Depends(require("subscriptions:admin"))]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
PageToken = Annotated[
    str | None, Query(max_length=1024, description="The `next` token of the previous page, as it was given.")
]
Fingerprint = Annotated[str, Path(min_length=1, max_length=400, pattern=r"^[^\x00-\x1f\x7f]+$",
                                  description="An alert id: rule/subject/cause.")]

LISTING = problem_responses(401, 403, 422)
ONE = problem_responses(401, 403, 404, 422)

router = APIRouter()


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


def _tokens(request: Request) -> PageTokens:
    tokens: PageTokens = request.app.state.page_tokens
    return tokens


def _not_found(what: str, key: object) -> Problem:
    return Problem(404, "Not found", f"no {what} {key}", kind="not-found")


def _offset(request: Request, token: str | None, listing: str, filters: dict[str, Any]) -> int:
    return position_offset(_tokens(request).read(token, listing, filters, parameter="next"), "next")


def _next(request: Request, listing: str, filters: dict[str, Any], offset: int, limit: int, got: int) -> str | None:
    if got <= limit:
        return None
    return _tokens(request).issue(listing, filters, {"offset": offset + limit})


def _sealer(request: Request) -> Sealer:
    sealer: Sealer = request.app.state.sealer
    return sealer


def new_secret() -> str:
    """A fresh Standard Webhooks signing secret."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _subscription(conn: Connection, subscription_id: UUID) -> SubscriptionRow:
    found = load_subscriptions(conn, Subscription.id == subscription_id, Subscription.status != "deleted")
    if not found:
        raise _not_found("subscription", subscription_id)
    return found[0]


# -- rules and alerts -----------------------------------------------------------------------


@router.get("/v1/rules", summary="The rules in force", response_model=RulesOut,
            responses=problem_responses(401, 403))
def list_rules(request: Request, _: Reader) -> RulesOut:
    """Every rule with its severity, lead times and expiry."""
    rules: RuleSet = request.app.state.rules
    return RulesOut(
        tracked_policies=sorted(rules.tracked_policies),
        items=[
            RuleOut(id=r.id, kind=r.kind, severity=r.severity, description=r.description, enabled=r.enabled,
                    lead_times=[format_duration(x) for x in sorted(r.lead_times, reverse=True)],
                    resolve_after=format_duration(r.resolve_after) if r.resolve_after else None)
            for r in rules.rules
        ],
    )


@router.get("/v1/alerts", summary="Alerts, newest first", response_model=AlertPageOut, responses=LISTING)
def list_alerts(
    request: Request,
    _: Reader,
    state: Annotated[Literal["firing", "resolved"] | None, Query(description="firing or resolved")] = None,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    severity: Annotated[Severity | None, Query()] = None,
    subject: Annotated[str | None, Query(max_length=SLUG_MAX, pattern=SLUG)] = None,
    limit: Limit = 100,
    next: PageToken = None,
) -> AlertPageOut:
    """Alerts matching every filter given, newest first."""
    filters = {"state": state, "rule": rule, "severity": severity, "subject": subject}
    offset = _offset(request, next, "alerts", filters)
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
    items = [AlertOut.model_validate(alert_document(AlertRow(**row._mapping))) for row in rows[:limit]]
    return AlertPageOut(items=items, next=_next(request, "alerts", filters, offset, limit, len(rows)))


@router.get("/v1/alerts/{fingerprint:path}", summary="One alert and its notifications",
            response_model=AlertDetailOut, responses=ONE)
def get_alert(request: Request, fingerprint: Fingerprint, _: Reader) -> AlertDetailOut:
    """An alert with every notification it made (sent, or suppressed and why)."""
    with _engine(request).connect() as conn:
        found = load_alerts(conn, Alert.fingerprint == fingerprint)
        if not found:
            raise _not_found("alert", fingerprint)
        notes = conn.execute(
            text("SELECT transition, type, created_at, late, suppressed FROM alert_notifications "
                 "WHERE fingerprint = :fp ORDER BY created_at"), {"fp": fingerprint}
        ).all()
    return AlertDetailOut.model_validate({
        **alert_document(found[0]),
        "notifications": [
            NotificationOut(transition=n.transition, type=n.type, at=n.created_at, late=bool(n.late),
                            sent=n.suppressed is None, suppressed=n.suppressed)
            for n in notes
        ],
    })


# -- subscriptions --------------------------------------------------------------------------


@router.post("/v1/subscriptions", status_code=201, summary="Subscribe a webhook; the secret is shown once",
             response_model=SubscriptionCreatedOut, responses=problem_responses(400, 401, 403, 413, 422))
async def create_subscription(request: Request, body: SubscriptionIn, _: Admin) -> SubscriptionCreatedOut:
    """Check the filters and that the URL is a public address, then store the subscription."""
    rules: RuleSet = request.app.state.rules
    for i, rule_id in enumerate(body.rules):
        if rules.by_id(rule_id) is None:
            known = ", ".join(r.id for r in rules.rules)
            raise invalid_parameter(f"body.rules.{i}", f"unknown rule {rule_id!r}; the rules are: {known}")
    policy: EgressPolicy = request.app.state.egress
    try:
        await policy.check(body.url)
    except EgressRefused as exc:
        raise invalid_parameter("body.url", str(exc)) from None
    now = _now(request)
    secret = new_secret()
    row: dict[str, Any] = {
        "id": uuid.uuid4(), "url": body.url, "secret": _sealer(request).seal(secret), "previous_secret": None,
        "previous_secret_until": None, "description": body.description,
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
    return SubscriptionCreatedOut(**out.model_dump(), secret=secret)


@router.get("/v1/subscriptions", summary="Subscriptions", response_model=SubscriptionPageOut, responses=LISTING)
def list_subscriptions(request: Request, _: Admin, limit: Limit = 100, next: PageToken = None) -> SubscriptionPageOut:
    """Every subscription not deleted, oldest first."""
    offset = _offset(request, next, "subscriptions", {})
    with _engine(request).connect() as conn:
        rows = conn.execute(
            select(Subscription.__table__).where(Subscription.status != "deleted")
            .order_by(Subscription.created_at, Subscription.id).offset(offset).limit(limit + 1)
        ).all()
    items = [subscription_out(SubscriptionRow(**row._mapping)) for row in rows[:limit]]
    return SubscriptionPageOut(items=items, next=_next(request, "subscriptions", {}, offset, limit, len(rows)))


@router.get("/v1/subscriptions/{subscription_id}", summary="One subscription", response_model=SubscriptionOut,
            responses=ONE)
def get_subscription(request: Request, subscription_id: UUID, _: Admin) -> SubscriptionOut:
    """A subscription, its filters and status."""
    with _engine(request).connect() as conn:
        return subscription_out(_subscription(conn, subscription_id))


@router.delete("/v1/subscriptions/{subscription_id}", status_code=204, summary="Unsubscribe",
               response_class=Response, responses=ONE)
def delete_subscription(request: Request, subscription_id: UUID, _: Admin) -> Response:
    """Delete a subscription and cancel what is queued for it."""
    now = _now(request)
    with _writer(request).begin() as conn:
        _subscription(conn, subscription_id)
        conn.execute(update(Subscription).where(Subscription.id == subscription_id).values(status="deleted"))
        conn.execute(
            update(Delivery).where(Delivery.subscription_id == subscription_id, Delivery.status == "pending")
            .values(status="cancelled", completed_at=now, lease_until=None, last_error="subscription deleted")
        )
    return Response(status_code=204)


@router.post("/v1/subscriptions/{subscription_id}/test", summary="Send a signed ping now", response_model=PingOut,
             responses=problem_responses(401, 403, 404, 409, 422, s409="The subscription is disabled"))
async def send_test_ping(request: Request, subscription_id: UUID, _: Admin) -> PingOut:
    """Sign and send a ping at once; the answer says what the receiver did."""
    engine = _writer(request)
    now = _now(request)
    with engine.connect() as conn:
        sub = _subscription(conn, subscription_id)
    if sub.status != "active":
        raise Problem(409, "Subscription disabled", f"the subscription is {sub.status}: {sub.disabled_reason}",
                      kind="subscription-disabled")
    delivery_id = uuid.uuid4()
    payload = webhook_body("ping", now, {"subscription_id": str(sub.id), "message": "accordwatch test ping"})
    claimed = outbox.Claimed(delivery_id, sub.id, sub.url, sub.secret, payload, 0, now,
                             previous_secret=sub.previous_secret, previous_secret_until=sub.previous_secret_until)

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
    return PingOut(delivery_id=delivery_id, webhook_id=message_id(delivery_id), outcome=booked[0].outcome,
                   status_code=result.status_code, error=result.error, duration_ms=round(result.duration_ms, 1))


@router.post("/v1/subscriptions/{subscription_id}/secret",
             summary="Rotate the signing secret; the new one is shown once",
             response_model=SecretRotatedOut, responses=problem_responses(400, 401, 403, 404, 413, 422))
def rotate_secret(request: Request, subscription_id: UUID, _: Admin,
                  body: Annotated[SecretRotationIn | None, Body()] = None) -> SecretRotatedOut:
    """A new secret signs from now on; the one it replaces signs too until the grace period ends."""
    settings: AlertsSettings = request.app.state.settings
    grace = timedelta(seconds=body.grace_period_s if body and body.grace_period_s is not None
                      else settings.secret_grace_s)
    now = _now(request)
    secret = new_secret()
    sealer = _sealer(request)
    with _writer(request).begin() as conn:
        sub = _subscription(conn, subscription_id)
        conn.execute(update(Subscription).where(Subscription.id == subscription_id).values(
            secret=sealer.seal(secret), previous_secret=sealer.reseal(sub.secret) if grace else None,
            previous_secret_until=now + grace if grace else None))
    return SecretRotatedOut(id=subscription_id, secret=secret, previous_valid_until=now + grace if grace else None)


@router.get("/v1/subscriptions/{subscription_id}/deliveries", summary="The delivery log, newest first",
            response_model=DeliveryPageOut, responses=ONE)
def list_deliveries(
    request: Request, subscription_id: UUID, _: Admin,
    status: Annotated[Literal["pending", "succeeded", "failed", "cancelled"] | None, Query()] = None,
    limit: Limit = 100, next: PageToken = None,
) -> DeliveryPageOut:
    """A subscription's deliveries with every attempt."""
    filters = {"subscription": str(subscription_id), "status": status}
    offset = _offset(request, next, "deliveries", filters)
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
        attempts: dict[UUID, list[AttemptOut]] = {}
        if ids:
            for a in conn.execute(select(DeliveryAttempt.__table__).where(DeliveryAttempt.delivery_id.in_(ids))
                                  .order_by(DeliveryAttempt.attempt)):
                attempts.setdefault(a.delivery_id, []).append(AttemptOut(
                    attempt=a.attempt, at=a.at, status_code=a.status_code, error=a.error, duration_ms=a.duration_ms))
    items = [delivery_out(row, attempts.get(row.id, [])) for row in rows[:limit]]
    return DeliveryPageOut(items=items, next=_next(request, "deliveries", filters, offset, limit, len(rows)))


@router.post("/v1/deliveries/{delivery_id}/retry", status_code=202, summary="Send a delivery again now",
             response_model=DeliveryOut,
             responses=problem_responses(401, 403, 404, 409, 422, s409="The subscription is disabled"))
def retry_delivery(request: Request, delivery_id: UUID, _: Admin) -> DeliveryOut:
    """Queue a delivery for another attempt now, with the same webhook-id."""
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
    return delivery_out(row, [])


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
    writer: Engine | None = None, egress: EgressPolicy | None = None,
) -> FastAPI:
    """Build the alerts API over `settings.database_url` (`writer` for writes; tests may pass an egress policy)."""
    owned = engine is None
    db = engine or make_engine(settings.database_url)
    writes = writer or (db if not owned else make_engine(settings.database_url, writer=True))
    now = clock or (lambda: datetime.now(UTC))
    policy = egress or EgressPolicy(settings.allow_list)
    sealer = Sealer.from_settings(settings)
    sender = Sender(policy, sealer, settings.delivery_timeout_s, now, max_response_bytes=settings.max_response_bytes)

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
    app.state.sealer = sealer
    app.state.keyring = Keyring.from_settings(settings)
    app.state.page_tokens = PageTokens(
        settings.page_token_key.get_secret_value().encode() if settings.page_token_key else None
    )
    app.include_router(router)
    app.include_router(feed_router)
    add_metrics_endpoint(app)
    install_edges(app, counter=metrics.API_REQUESTS, max_body_bytes=settings.max_body_bytes)
    install_contract(app)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn: settings and rules from the environment; migrates the store first."""
    settings = AlertsSettings()
    rules = load_rules(settings.rules_file)
    engine = make_engine(settings.database_url)
    upgrade(engine, Sealer.from_settings(settings))
    return create_app(settings, rules, engine=engine, writer=make_engine(settings.database_url, writer=True))


def main() -> None:
    """Serve the alerts API: `python -m services.alerts.api`."""
    import uvicorn

    from services.platform.http import uvicorn_options

    settings = AlertsSettings()
    try:
        load_rules(settings.rules_file)  # fail fast, naming the line
        Sealer.from_settings(settings)
    except (RulesFileError, SealingKeyMissing) as exc:
        raise SystemExit(f"accordwatch alerts: {exc}") from None
    uvicorn.run("services.alerts.api:create_app_from_env", factory=True, host=settings.api_host,
                port=settings.api_port, **uvicorn_options(settings.log_level, kafka_clients=False))


if __name__ == "__main__":
    main()

