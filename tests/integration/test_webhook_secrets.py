"""Webhook secrets: sealed at rest, rotated through the API with a grace period when both sign."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select
from standardwebhooks import Webhook, WebhookVerificationError

from services.alerts import outbox
from services.alerts.migrate import downgrade, upgrade
from services.alerts.sealing import Sealer
from services.alerts.tables import Delivery, Subscription
from services.platform.db import make_engine
from tests.apps import AUTH, SEALING_KEY, alerts_app, alerts_engine
from tests.receiver import Receiver, ReceiverServer


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = ReceiverServer()
    try:
        yield server.start()
    finally:
        server.stop()


class Clock:
    """The wall clock, moved forward on demand (within the receivers' 5-minute tolerance)."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


def verifies(secret: str, raw: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(raw, headers)
    except WebhookVerificationError:
        return False
    return True


def _stored_text(db: Path) -> str:
    """Every value of every table of a SQLite file, as one text."""
    out: list[str] = []
    with sqlite3.connect(db) as conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                out.extend(str(v) for v in row)
    return "\n".join(out)


def test_rotation_signs_with_both_secrets_during_the_grace_and_only_the_new_one_after(
    tmp_path: Path, receiver: Receiver
) -> None:
    clock = Clock()
    engine = alerts_engine(tmp_path)
    with TestClient(alerts_app(engine, clock=clock), headers=AUTH) as client:
        url = receiver.endpoint("/rotating")
        created = client.post("/v1/subscriptions", json={"url": url})
        assert created.status_code == 201, created.text
        sub, old = created.json()["id"], created.json()["secret"]

        def ping() -> tuple[bytes, dict[str, str]]:
            assert client.post(f"/v1/subscriptions/{sub}/test").json()["status_code"] == 401  # unverified there
            got = receiver.all("/rotating")[-1]
            return got.raw, got.headers

        raw, headers = ping()
        assert verifies(old, raw, headers)

        rotated = client.post(f"/v1/subscriptions/{sub}/secret", json={"grace_period_s": 120})
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new != old
        assert rotated.json()["previous_valid_until"] is not None
        raw, headers = ping()
        assert len(headers["webhook-signature"].split(" ")) == 2
        assert verifies(old, raw, headers), "during the grace period the old secret still verifies"
        assert verifies(new, raw, headers), "and so does the new one"

        clock.ahead = timedelta(seconds=121)  # the grace period is over
        raw, headers = ping()
        assert len(headers["webhook-signature"].split(" ")) == 1
        assert verifies(new, raw, headers)
        assert not verifies(old, raw, headers), "after the grace period only the new secret signs"

        assert client.post(f"/v1/subscriptions/{uuid.uuid4()}/secret").status_code == 404
        stored = _stored_text(tmp_path / "alerts.db")
    engine.dispose()
    for secret in (old, new):
        assert secret not in stored
        assert secret.removeprefix("whsec_") not in stored
    assert "whsec_" not in stored, "the database holds no secret in clear"


def test_the_outbox_carries_the_previous_secret_to_the_worker(tmp_path: Path) -> None:
    engine = alerts_engine(tmp_path)
    sealer = Sealer([SEALING_KEY])
    now = datetime.now(UTC)
    sub, delivery = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(insert(Subscription), {
            "id": sub, "url": "http://127.0.0.1:9/hook", "secret": sealer.seal("whsec_new"),
            "previous_secret": sealer.seal("whsec_old"), "previous_secret_until": now + timedelta(hours=1),
            "description": None, "rules": [], "severities": [], "subjects": [], "status": "active",
            "disabled_reason": None, "disabled_at": None, "consecutive_failures": 0, "created_at": now})
        conn.execute(insert(Delivery), {
            "id": delivery, "subscription_id": sub, "notification_id": None, "type": "ping", "payload": "{}",
            "status": "pending", "attempts": 0, "next_attempt_at": now, "lease_until": None, "created_at": now})
    policy = outbox.Policy(schedule=(0.0,), disable_after=3, max_retry_after_s=0, lease=timedelta(seconds=30))
    (claimed,) = outbox.claim(engine, now, {sub: 10}, policy, uuid.uuid4())
    assert claimed.previous_secret is not None
    assert sealer.open(claimed.secret) == "whsec_new"
    assert sealer.open(claimed.previous_secret) == "whsec_old"
    engine.dispose()


def _before_sealing(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}", writer=True)
    upgrade(engine, revision="0003")
    return engine


def _plain_subscription(engine: Engine, secret: str) -> uuid.UUID:
    from sqlalchemy import column, table

    sub = uuid.uuid4()
    subscriptions = table("subscriptions", *(column(c) for c in (
        "id", "url", "secret", "description", "rules", "severities", "subjects", "status", "disabled_reason",
        "disabled_at", "consecutive_failures", "created_at")))
    row: dict[str, Any] = {"id": sub.hex, "url": "https://hooks.example.org/", "secret": secret,
                           "description": None, "rules": "[]", "severities": "[]", "subjects": "[]",
                           "status": "active", "disabled_reason": None, "disabled_at": None,
                           "consecutive_failures": 0, "created_at": "2026-01-01 00:00:00.000000"}
    with engine.begin() as conn:
        conn.execute(insert(subscriptions), row)
    return sub


def test_the_migration_seals_secrets_kept_in_clear_and_the_downgrade_opens_them(tmp_path: Path) -> None:
    engine = _before_sealing(tmp_path)
    secret = "whsec_" + "Q" * 43
    sub = _plain_subscription(engine, secret)
    with pytest.raises(RuntimeError, match="ACCORDWATCH_WEBHOOK_SECRET_KEYS"):
        upgrade(engine)  # no key: refuse rather than leave it in clear
    sealer = Sealer([SEALING_KEY])
    upgrade(engine, sealer)
    with engine.connect() as conn:
        stored = conn.execute(select(Subscription.secret).where(Subscription.id == sub)).scalar_one()
    assert secret not in _stored_text(tmp_path / "old.db")
    assert sealer.open(stored) == secret
    downgrade(engine, "0003", sealer)
    assert secret in _stored_text(tmp_path / "old.db")
    engine.dispose()


def test_a_new_sealing_key_opens_nothing_old_until_both_are_configured(tmp_path: Path) -> None:
    from services.alerts.migrate import reseal
    from services.alerts.sealing import new_sealing_key

    engine = alerts_engine(tmp_path)
    old = Sealer([SEALING_KEY])
    sub = uuid.uuid4()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(insert(Subscription), {
            "id": sub, "url": "http://127.0.0.1:9/hook", "secret": old.seal("whsec_x"), "previous_secret": None,
            "previous_secret_until": None, "description": None, "rules": [], "severities": [], "subjects": [],
            "status": "active", "disabled_reason": None, "disabled_at": None, "consecutive_failures": 0,
            "created_at": now})
    fresh = new_sealing_key()
    both = Sealer([fresh, SEALING_KEY])
    assert reseal(engine, both) == 1
    with engine.connect() as conn:
        token = conn.execute(select(Subscription.secret)).scalar_one()
    assert Sealer([fresh]).open(token) == "whsec_x", "after migrate, the new key alone opens every secret"
    with pytest.raises(ValueError, match="no configured key"):
        old.open(token)
    engine.dispose()
