"""F5 lapsed lease: a delivery sent again after its lease lapsed never turns a success into a failure.

Two alerts workers share one outbox on PostgreSQL. The first worker sends every message and
the receiver holds those first requests; the worker is then paused (SIGSTOP) and its leases
are made to lapse, so the second worker claims the messages and sends them again (same
webhook-id), and they succeed. When the first worker resumes, its requests time out: those
late failures must not overwrite the successes, and the duplicates by webhook-id are no more
than the leases that lapsed.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from sqlalchemy import func, select, update

from services.alerts.tables import Delivery, DeliveryAttempt
from services.platform.db import make_engine
from tests.conftest import wait_for
from tests.faults.conftest import SHARED_ENV, FaultStack, Figures
from tests.faults.harness import add_worker, fresh_stays, metric_total, notification_duplicates, pause, resume
from tests.receiver import Receiver

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.stack]

CASES = 12


@pytest.mark.timeout(600)
def test_f5_a_lapsed_lease_never_turns_a_success_into_a_failure(
    fault_stack: FaultStack, fault_receiver: Receiver, figures: Figures
) -> None:
    # The shared stack gives each message one attempt (ACCORDWATCH_WEBHOOK_RETRY_SCHEDULE=0): a
    # late failure would be final (failed, and counted towards disabling the subscription).
    assert SHARED_ENV["ACCORDWATCH_WEBHOOK_RETRY_SCHEDULE"] == "0"
    running, url = fault_stack.running, fault_stack.url
    first, *others = fault_stack.workers("alerts-worker", 1)
    for other in others:  # every message goes through the first worker
        other.stop()
    second = None
    try:
        path = "/f5"
        hook = fault_receiver.endpoint(path, hang_first_s=60)
        created = running.alerts.post("/v1/subscriptions", json={"url": hook, "rules": ["stay-requested"]})
        assert created.status_code == 201, created.text
        fault_receiver.endpoint(path, secret=created.json()["secret"])
        stays = fresh_stays(f"f5-{uuid.uuid4().hex[:6]}", CASES)
        running.post(*stays)

        def first_attempts() -> set[str]:
            return {i for p, i, _ in fault_receiver.arrived if p == path}

        wait_for(lambda: len(first_attempts()) >= CASES, timeout=60, what="every first attempt hanging")
        hanging = [UUID(hex=i.removeprefix("msg_")) for i in first_attempts()]
        engine = make_engine(url)
        try:
            # The first worker stops where it is; the leases of its hanging attempts are made to lapse.
            pause(first)
            with engine.begin() as conn:
                lapsed = conn.execute(
                    update(Delivery).where(Delivery.status == "pending", Delivery.lease_until.is_not(None),
                                           Delivery.id.in_(hanging))
                    .values(lease_until=datetime.now(UTC) - timedelta(seconds=1))).rowcount
            lapsed_wall = time.time()
            instance = max(int(n.rsplit("-", 1)[1]) for n in [*running.stack.services, "alerts-worker-1"]
                           if n.startswith("alerts-worker-")) + 1
            second = add_worker(running.stack, "alerts-worker", instance)
            wait_for(lambda: len(fault_receiver.verified(path)) >= CASES, timeout=150,
                     what="every message delivered by the second worker's claims")
            resume(first)  # its requests time out now, under leases the second worker holds

            def booked() -> bool:
                with engine.connect() as conn:  # both attempts of every message recorded
                    return conn.execute(select(func.count()).select_from(DeliveryAttempt)
                                        .where(DeliveryAttempt.delivery_id.in_(hanging))).scalar_one() >= 2 * lapsed

            wait_for(booked, timeout=150, what="the late results of the first attempts booked")
            with engine.connect() as conn:
                mine = Delivery.id.in_(hanging)
                statuses = dict(conn.execute(select(Delivery.status, func.count()).where(mine)
                                             .group_by(Delivery.status)).all())
                attempts = conn.execute(select(DeliveryAttempt.status_code, func.count())
                                        .where(DeliveryAttempt.delivery_id.in_(hanging))
                                        .group_by(DeliveryAttempt.status_code)).all()
        finally:
            engine.dispose()
        delivered_ids = {r.webhook_id for r in fault_receiver.verified(path)}
        duplicates = notification_duplicates(fault_receiver, path)
        stale = sum(metric_total(f"{proc.health_url}", 'accordwatch_alerts_deliveries_total{outcome="stale"}')
                    for proc in (first, second))
        turned = CASES - statuses.get("succeeded", 0)
        second_sends = sorted(at for p, _, at in fault_receiver.arrived if p == path)[CASES:]
        assert second is not None
        figures.update(
            messages=CASES, leases_lapsed=lapsed,
            seconds_from_lapse_to_last_resend=round(max(second_sends, default=0) - lapsed_wall, 1),
            delivered=len(delivered_ids), delivery_statuses=statuses,
            attempts_by_status_code={str(code): n for code, n in attempts},
            late_results_not_booked_stale=stale,
            succeeded_deliveries_turned_into_failures=turned,
            duplicates_by_webhook_id=duplicates["same_webhook_id_requests_beyond_the_first"],
            sent_twice_with_different_webhook_ids=duplicates["sent_twice_with_different_webhook_ids"],
        )
        assert lapsed > 0
        assert len(delivered_ids) == CASES
        assert turned == 0
        assert statuses == {"succeeded": CASES}
        subscription = running.alerts.get(f"/v1/subscriptions/{created.json()['id']}").json()
        assert subscription["status"] == "active", "stale failures count against nobody"
        assert duplicates["same_webhook_id_requests_beyond_the_first"] <= lapsed
        assert duplicates["sent_twice_with_different_webhook_ids"] == 0
    finally:
        if first.running():
            resume(first)  # never leave a stopped process behind
        fault_receiver.endpoint("/f5", hang_first_s=0)
