"""Alerts end to end on the real broker: ingest -> Kafka -> alerts worker -> signed webhooks on loopback.

Every webhook lands on a real aiohttp receiver that verifies its signature with the
`standardwebhooks` package. Retries run on a schedule of seconds so the suite stays fast.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker, RunningStack, make_stack, wait_for
from tests.receiver import Receiver, ReceiverServer
from tests.samples import event

pytestmark = [pytest.mark.kafka, pytest.mark.stack]

ROOT = Path(__file__).resolve().parents[2]
RULES = """
tracked_policies: [mpp]
rules:
  - {id: stay-requested, kind: stay-requested, severity: critical}
  - {id: court-deadline, kind: court-deadline, severity: warning, lead_times: [20s]}
  - {id: ruling-issued, kind: ruling-issued, severity: warning}
  - {id: agreement-status-changed, kind: agreement-status-changed, severity: info}
  - {id: transfers-without-force, kind: transfers-without-force, severity: warning}
  - {id: transfer-target-reached, kind: transfer-target-reached, severity: info}
"""


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = ReceiverServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def alerts_stack(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    home = tmp_path_factory.mktemp("alerts")
    rules = home / "rules.yaml"
    rules.write_text(RULES)
    running = make_stack(kafka, home, services=("ingest", "alerts-worker", "alerts-api"), env={
        "ACCORDWATCH_ALERTS_RULES": str(rules),
        "ACCORDWATCH_WEBHOOK_RETRY_SCHEDULE": "0,0.5,1,1,1,1,1,1,1,1",
        "ACCORDWATCH_WEBHOOK_TIMEOUT_S": "3",
        "ACCORDWATCH_WEBHOOK_DISABLE_AFTER": "2",
        "ACCORDWATCH_ALERTS_TICK_S": "0.2",
        "ACCORDWATCH_ALERTS_LATE_AFTER_S": "1",
    })
    try:
        yield running
    finally:
        running.close()


def today(offset: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + offset).isoformat(timespec="seconds")


def subscribe(stack: RunningStack, receiver: Receiver, path: str, **filters: Any) -> dict[str, Any]:
    """A subscription whose secret the receiver then verifies with."""
    url = receiver.endpoint(path)
    response = stack.alerts.post("/v1/subscriptions", json={"url": url, **filters})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["secret"].startswith("whsec_")
    receiver.endpoint(path, secret=body["secret"])
    return body


def stay_request(case: str, **overrides: Any) -> dict[str, Any]:
    return event("StayRequested", subject=case, occurred_at=today(), **overrides)


def delivered(receiver: Receiver, path: str, kind: str = "alert.firing", n: int = 1) -> list[Any]:
    got: list[Any] = wait_for(lambda: (r := receiver.verified(path, kind)) and len(r) >= n and r,
                              timeout=60, what=f"{n} verified {kind} on {path}")
    return got


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "field", "words"), [
    ("http://10.0.0.1/", "body.url", "not a public address"),
    ("http://169.254.169.254/", "body.url", "not a public address"),
    ("http://localhost/", "body.url", "not a public address"),
    ("http://[64:ff9b::a9fe:a9fe]/", "body.url", "not a public address"),
    ("not a url", "body.url", "http"),
])
def test_subscriptions_to_forbidden_urls_are_refused(alerts_stack: RunningStack, url: str, field: str,
                                                     words: str) -> None:
    response = alerts_stack.alerts.post("/v1/subscriptions", json={"url": url})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["errors"][0]["field"] == field
    assert words in problem["errors"][0]["reason"]
    listed = alerts_stack.alerts.get("/v1/subscriptions").json()["items"]
    assert url not in {s["url"] for s in listed}


def test_unknown_rule_is_refused_by_name(alerts_stack: RunningStack, receiver: Receiver) -> None:
    response = alerts_stack.alerts.post(
        "/v1/subscriptions", json={"url": receiver.url("/never"), "rules": ["stay-requested", "no-such-rule"]}
    )
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["field"] == "body.rules.1"
    assert "no-such-rule" in error["reason"]
    assert receiver.all("/never") == []


def test_subscriptions_need_the_admin_scope(alerts_stack: RunningStack) -> None:
    response = alerts_stack.alerts.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/"},
                                        headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


# -- delivery -----------------------------------------------------------------------------------


def test_stay_request_fires_critical_and_its_decision_resolves_it(alerts_stack: RunningStack,
                                                                  receiver: Receiver) -> None:
    case = f"case-{uuid.uuid4().hex[:8]}"
    subscribe(alerts_stack, receiver, "/stay", subjects=[case])
    alerts_stack.post(stay_request(case))
    [firing] = delivered(receiver, "/stay")
    alert = firing.body["data"]
    assert (alert["rule"], alert["severity"], alert["subject"], alert["state"]) == (
        "stay-requested", "critical", case, "firing")
    alerts_stack.post(event("StayDecided", subject=case, occurred_at=today(timedelta(seconds=1))))
    [resolved] = delivered(receiver, "/stay", "alert.resolved")
    assert resolved.body["data"]["id"] == alert["id"]
    assert resolved.body["data"]["resolution"] == "stay granted"
    state = alerts_stack.alerts.get("/v1/alerts", params={"subject": case, "rule": "stay-requested"}).json()
    assert [a["state"] for a in state["items"]] == ["resolved"]
    # Exactly one notification per state change.
    assert len(receiver.verified("/stay")) == 2


def test_receiver_down_then_up_gets_every_alert_once_per_webhook_id(alerts_stack: RunningStack) -> None:
    down = ReceiverServer()
    rx = down.receiver
    case_prefix = f"down-{uuid.uuid4().hex[:6]}"
    # Reserve a port, then stop: the subscription points at a closed port.
    down.start()
    port = rx.port
    down.stop()
    url = f"http://127.0.0.1:{port}/hook"
    created = alerts_stack.alerts.post("/v1/subscriptions", json={"url": url, "rules": ["stay-requested"]})
    assert created.status_code == 201
    rx.endpoint("/hook", secret=created.json()["secret"])
    cases = [f"{case_prefix}-{i}" for i in range(5)]
    alerts_stack.post(*(stay_request(case) for case in cases))
    sub_id = created.json()["id"]
    wait_for(lambda: _attempted(alerts_stack, sub_id) >= 5, timeout=60, what="first attempts against the closed port")
    restarted = ReceiverServer(port=port)
    restarted.receiver = rx
    restarted.start()
    try:
        got = wait_for(lambda: len({r.webhook_id for r in rx.verified("/hook")}) >= 5 and rx.verified("/hook"),
                       timeout=60, what="every alert after the receiver came up")
        subjects = {r.body["data"]["subject"] for r in got}
        assert subjects == set(cases)
        by_id: dict[str, set[str]] = {}
        for r in got:
            by_id.setdefault(r.webhook_id, set()).add(r.body["data"]["id"])
        assert all(len(alerts) == 1 for alerts in by_id.values()), "a webhook-id carried two alerts"
        assert len(by_id) == len(cases), "an alert was delivered under two webhook-ids"
        assert all(r.verified for r in rx.all("/hook"))
    finally:
        restarted.stop()


def _attempted(stack: RunningStack, sub_id: str) -> int:
    items = stack.alerts.get(f"/v1/subscriptions/{sub_id}/deliveries").json()["items"]
    return sum(1 for d in items if d["attempts"] >= 1)


def test_500s_then_success_is_retried_and_logged(alerts_stack: RunningStack, receiver: Receiver) -> None:
    case = f"flaky-{uuid.uuid4().hex[:8]}"
    sub = subscribe(alerts_stack, receiver, "/flaky", subjects=[case])
    receiver.endpoint("/flaky", fail_first=2, fail_status=500)
    alerts_stack.post(stay_request(case))
    [ok] = delivered(receiver, "/flaky")
    attempts = [r for r in receiver.all("/flaky") if r.webhook_id == ok.webhook_id]
    assert [r.status for r in attempts] == [500, 500, 204]

    def booked() -> dict[str, Any] | None:  # the worker books results in batches, just after the 204
        log = alerts_stack.alerts.get(f"/v1/subscriptions/{sub['id']}/deliveries").json()["items"]
        [entry] = [d for d in log if d["webhook_id"] == ok.webhook_id]
        return entry if entry["status"] == "succeeded" else None

    entry = wait_for(booked, timeout=30, what="the success booked")
    assert [a["status_code"] for a in entry["log"]] == [500, 500, 204]


def test_retry_after_is_honoured(alerts_stack: RunningStack, receiver: Receiver) -> None:
    case = f"later-{uuid.uuid4().hex[:8]}"
    subscribe(alerts_stack, receiver, "/later", subjects=[case])
    receiver.endpoint("/later", fail_first=1, fail_status=503, retry_after="3")
    alerts_stack.post(stay_request(case))
    [ok] = delivered(receiver, "/later")
    first, second = [r for r in receiver.all("/later") if r.webhook_id == ok.webhook_id]
    assert second.at - first.at >= 2.9  # the schedule alone would retry after 0.5 s


def test_410_disables_the_subscription(alerts_stack: RunningStack, receiver: Receiver) -> None:
    case = f"gone-{uuid.uuid4().hex[:8]}"
    sub = subscribe(alerts_stack, receiver, "/gone", subjects=[case])
    receiver.endpoint("/gone", status=410)
    alerts_stack.post(stay_request(case))
    found = wait_for(lambda: (s := alerts_stack.alerts.get(f"/v1/subscriptions/{sub['id']}").json())
                     ["status"] == "disabled" and s, what="the subscription disabled")
    assert "410" in found["disabled_reason"]
    alerts_stack.post(event("StayDecided", subject=case, occurred_at=today(timedelta(seconds=1))))
    wait_for(lambda: alerts_stack.alerts.get("/v1/alerts", params={"subject": case}).json()["items"][0]["state"]
             == "resolved", what="the alert resolved")
    assert len(receiver.all("/gone")) == 1, "nothing is sent to a disabled subscription"


def test_exhausted_retries_fail_the_delivery_and_then_disable(kafka: Broker, tmp_path: Path) -> None:
    server = ReceiverServer()
    rx = server.start()
    stack = make_stack(kafka, tmp_path, services=("ingest", "alerts-worker", "alerts-api"), env={
        "ACCORDWATCH_WEBHOOK_RETRY_SCHEDULE": "0,0.3,0.3", "ACCORDWATCH_WEBHOOK_DISABLE_AFTER": "2",
        "ACCORDWATCH_WEBHOOK_TIMEOUT_S": "2",
    })
    try:
        sub = subscribe(stack, rx, "/broken")
        rx.endpoint("/broken", status=500)
        stack.post(stay_request(f"broken-{uuid.uuid4().hex[:6]}"))
        log = wait_for(lambda: (items := stack.alerts.get(f"/v1/subscriptions/{sub['id']}/deliveries").json()
                                ["items"]) and items[0]["status"] == "failed" and items,
                       what="the delivery failed after its retries")
        assert log[0]["attempts"] == 3
        assert stack.alerts.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "active"
        stack.post(stay_request(f"broken-{uuid.uuid4().hex[:6]}"))
        found = wait_for(lambda: (s := stack.alerts.get(f"/v1/subscriptions/{sub['id']}").json())
                         ["status"] == "disabled" and s, what="the subscription disabled after two failures")
        assert "2 deliveries in a row failed" in found["disabled_reason"]
        # Manual redelivery of a failed delivery is refused while the subscription is disabled.
        retried = stack.alerts.post(f"/v1/deliveries/{log[0]['id']}/retry")
        assert retried.status_code == 409
    finally:
        stack.close()
        server.stop()


def test_a_hanging_receiver_does_not_delay_another(alerts_stack: RunningStack, receiver: Receiver) -> None:
    case = f"hang-{uuid.uuid4().hex[:8]}"
    subscribe(alerts_stack, receiver, "/hangs", subjects=[case])
    receiver.endpoint("/hangs", hang_s=30)
    subscribe(alerts_stack, receiver, "/prompt", subjects=[case])
    posted = time.time()
    for i in range(6):  # more than the hanging endpoint's lanes
        alerts_stack.post(stay_request(f"{case}", data={"requested_by": f"party {i}", "court": "SCOTUS",
                                                        "affects": ["mpp"]}))
    got = delivered(receiver, "/prompt", n=6)
    assert max(r.at for r in got) - posted < 5, "the prompt receiver waited behind the hanging one"
    assert receiver.verified("/hangs") == []


def test_test_ping_and_manual_retry(alerts_stack: RunningStack, receiver: Receiver) -> None:
    sub = subscribe(alerts_stack, receiver, "/ping")
    response = alerts_stack.alerts.post(f"/v1/subscriptions/{sub['id']}/test")
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "succeeded"
    [ping] = receiver.verified("/ping", "ping")
    assert ping.webhook_id == response.json()["webhook_id"]
    retried = alerts_stack.alerts.post(f"/v1/deliveries/{response.json()['delivery_id']}/retry")
    assert retried.status_code == 202
    again = delivered(receiver, "/ping", "ping", n=2)
    assert {r.webhook_id for r in again} == {ping.webhook_id}, "a redelivery keeps its webhook-id"
    assert alerts_stack.alerts.delete(f"/v1/subscriptions/{sub['id']}").status_code == 204
    assert alerts_stack.alerts.get(f"/v1/subscriptions/{sub['id']}").status_code == 404


# -- crash, restart, replay ---------------------------------------------------------------------


def test_sigkill_during_delivery_loses_nothing(alerts_stack: RunningStack, receiver: Receiver) -> None:
    prefix = f"kill-{uuid.uuid4().hex[:6]}"
    cases = [f"{prefix}-{i}" for i in range(40)]
    subscribe(alerts_stack, receiver, "/kill", subjects=cases)
    receiver.endpoint("/kill", hang_s=0.25)
    alerts_stack.post(*(stay_request(case) for case in cases))
    wait_for(lambda: len(receiver.all("/kill")) >= 5, what="deliveries under way")
    worker = alerts_stack.stack.services["alerts-worker"]
    assert worker.pid is not None
    worker.kill()  # SIGKILL
    alerts_stack.stack.restart("alerts-worker")
    got = wait_for(lambda: len({r.webhook_id for r in receiver.verified("/kill")}) >= len(cases)
                   and receiver.verified("/kill"), timeout=120, what="every alert after the crash")
    alerts: dict[str, set[str]] = {}
    for r in got:
        alerts.setdefault(r.webhook_id, set()).add(r.body["data"]["id"])
    assert len(alerts) == len(cases)
    assert all(len(ids) == 1 for ids in alerts.values()), "duplicates only ever share a webhook-id"
    assert {r.body["data"]["subject"] for r in got} == set(cases)


def test_replay_from_offset_zero_notifies_nothing_again(alerts_stack: RunningStack, receiver: Receiver) -> None:
    case = f"replay-{uuid.uuid4().hex[:8]}"
    subscribe(alerts_stack, receiver, "/replay")
    alerts_stack.post(stay_request(case))
    delivered(receiver, "/replay")
    before = {r.webhook_id for r in receiver.all("/replay")}
    # A new consumer group reads the whole topic from offset 0 again.
    alerts_stack.stack.extra_env["ACCORDWATCH_ALERTS_GROUP"] = f"alerts-replay-{uuid.uuid4().hex[:6]}"
    alerts_stack.stack.restart("alerts-worker")
    # Sentinels on every partition: once each is delivered, the replay has passed everything before it.
    sentinels: list[str] = []
    partitions: set[int] = set()
    while len(partitions) < 6:
        sentinel = f"sentinel-{uuid.uuid4().hex[:8]}"
        [ack] = alerts_stack.post(stay_request(sentinel))
        partitions.add(ack["partition"])
        sentinels.append(sentinel)
    wait_for(lambda: {r.body["data"]["subject"] for r in receiver.verified("/replay")} >= set(sentinels),
             timeout=120, what="every sentinel after the replay")
    after = [r for r in receiver.all("/replay") if r.body["data"]["subject"] not in sentinels]
    assert {r.webhook_id for r in after} == before, "the replay notified an old alert again"


def test_a_reminder_due_while_the_worker_was_down_is_sent_late_once(alerts_stack: RunningStack,
                                                                    receiver: Receiver) -> None:
    case = f"remind-{uuid.uuid4().hex[:8]}"
    subscribe(alerts_stack, receiver, "/remind", rules=["court-deadline"], subjects=[case])
    due = datetime.now(UTC) + timedelta(seconds=45)
    alerts_stack.post(event("DeadlineSet", subject=case, occurred_at=today(),
                            data={"due_at": due.isoformat(), "description": "response due", "kind": "response_due"}))
    delivered(receiver, "/remind")
    alerts_stack.stack.services["alerts-worker"].stop()
    reminder_at = due - timedelta(seconds=20)
    wait_for(lambda: datetime.now(UTC) > reminder_at + timedelta(seconds=2), timeout=60,
             what="the reminder's time to pass while the worker is down")
    alerts_stack.stack.restart("alerts-worker")
    [late] = delivered(receiver, "/remind", n=2)[1:]
    assert late.body["data"]["transition"] == "reminder:20s"
    assert late.body["data"]["late"] is True
    resolved = delivered(receiver, "/remind", "alert.resolved")
    assert resolved[0].body["data"]["resolution"] == "deadline reached"
    transitions = [r.body["data"]["transition"] for r in receiver.verified("/remind")]
    assert transitions == ["firing", "reminder:20s", "reminder:due", "resolved"]


# -- the seed scenario --------------------------------------------------------------------------


def test_the_seed_timeline_records_its_alerts_as_history(alerts_stack: RunningStack, receiver: Receiver) -> None:
    """The Ninth Circuit order and the stay request of March 2020 are alerts, recorded, not sent in 2026."""
    subscribe(alerts_stack, receiver, "/seed", subjects=["innovation-law-lab-v-wolf"])
    lines = (ROOT / "examples" / "seed-timeline.ndjson").read_text().splitlines()
    alerts_stack.post(*(json.loads(line) for line in lines if line.strip()))
    case = "innovation-law-lab-v-wolf"

    def seed_alerts() -> dict[str, dict[str, Any]]:
        items = alerts_stack.alerts.get("/v1/alerts", params={"subject": case}).json()["items"]
        return {a["rule"]: a for a in items}

    found = wait_for(lambda: (a := seed_alerts()) and {"stay-requested", "court-deadline", "ruling-issued"} <= set(a)
                     and a, what="the seed case's alerts")
    assert found["stay-requested"]["severity"] == "critical"
    assert found["stay-requested"]["state"] == "firing"
    assert found["stay-requested"]["historical"] is True
    deadline = found["court-deadline"]
    assert deadline["details"]["due_at"].startswith("2020-03-12")
    assert (deadline["state"], deadline["resolution"]) == ("resolved", "deadline reached")
    # The Supreme Court's decision (11 March 2020) resolves the stay request.
    alerts_stack.post(event("StayDecided", subject=case, occurred_at="2020-03-11",
                            data={"court": "Supreme Court of the United States", "decision": "granted",
                                  "affects": ["mpp"]}))
    wait_for(lambda: seed_alerts()["stay-requested"]["state"] == "resolved", what="the stay request resolved")
    detail = alerts_stack.alerts.get(f"/v1/alerts/{found['stay-requested']['id']}").json()
    assert [(n["transition"], n["sent"]) for n in detail["notifications"]] == [("firing", False), ("resolved", False)]
    assert receiver.all("/seed") == [], "history from 2020 is never sent as news"
