"""The time model through the real pipeline (ingest -> Kafka -> projector -> query API), SQLite and PostgreSQL.

- The MPP chain of 2019-2020 and the transit-ban chain of 2019 answer, between their steps, the
  status, `blocked_in`, `since`, `next_change` and pending stay requests a court watcher expects
  (tests/chains.py gives the dates and the reasoning).
- On a stack whose clock is a file the test moves: a termination and a ruling decided for
  later change the list endpoints, the stored rows and the gauges only once their time comes,
  with no event posted in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.platform.clock import set_clock_file
from tests.chains import BAN_EXPECTED, MPP_EXPECTED, ban_chain, mpp_chain
from tests.conftest import Broker, RunningStack, make_stack, wait_for
from tests.samples import event

pytestmark = [pytest.mark.kafka, pytest.mark.stack]


def _get(stack: RunningStack, path: str, **params: str) -> Any:
    response = stack.query.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _answer(p: dict[str, Any]) -> tuple[Any, ...]:
    change = p["next_change"]
    return (p["status"], p["blocked_in"], p["since"],
            (change["at"], change["status"], change["blocked_in"]) if change else None,
            [q["court"] for q in p["pending_stay_requests"]])


def _iso(text: str | None) -> str | None:
    return None if text is None else datetime.fromisoformat(text).isoformat()


def _expected(row: tuple[Any, ...]) -> tuple[Any, ...]:
    _, status, blocked_in, since, change, pending = row
    return (status, blocked_in, _iso(since), (_iso(change[0]), change[1], change[2]) if change else None, pending)


def _normalised(p: dict[str, Any]) -> tuple[Any, ...]:
    status, blocked_in, since, change, pending = _answer(p)
    return (status, blocked_in, _iso(since.replace("Z", "+00:00")) if since else None,
            (_iso(change[0].replace("Z", "+00:00")), change[1], change[2]) if change else None, pending)


def test_remain_in_mexico_and_the_transit_ban_between_their_steps(any_stack: RunningStack) -> None:
    run = uuid.uuid4().hex[:8]
    mpp, ban = f"mpp-{run}", f"transit-ban-{run}"
    mpp_docs = mpp_chain(prefix=f"mpp-{run}", case=f"innovation-law-lab-{run}", policy=mpp)
    ban_docs = ban_chain(prefix=f"ban-{run}", case=f"east-bay-{run}", policy=ban)
    any_stack.post(*mpp_docs[:-1], *ban_docs)
    wait_for(lambda: any_stack.query.get(f"/v1/policies/{ban}").status_code == 200
             and any_stack.query.get(f"/v1/events/{mpp_docs[-2]['id']}").status_code == 200,
             timeout=60, what="the chains projected")
    before_the_supreme_court = datetime.now(UTC)  # ingest stamps recorded_at on this machine's clock
    any_stack.post(mpp_docs[-1])
    wait_for(lambda: any_stack.query.get(f"/v1/events/{mpp_docs[-1]['id']}").status_code == 200, timeout=60,
             what="the Supreme Court's stay projected")
    for row in MPP_EXPECTED:
        assert _normalised(_get(any_stack, f"/v1/policies/{mpp}", as_of=row[0])) == _expected(row), row[0]
    for row in BAN_EXPECTED:
        assert _normalised(_get(any_stack, f"/v1/policies/{ban}", as_of=row[0])) == _expected(row), row[0]
    # As known before the Supreme Court's stay was recorded, Thursday was the next change.
    then = _get(any_stack, f"/v1/policies/{mpp}", as_of="2020-03-11T12:00:00Z",
                known_at=before_the_supreme_court.isoformat())
    assert (then["next_change"]["at"], then["next_change"]["blocked_in"]) == (
        "2020-03-12T00:00:00Z", ["US-AZ", "US-CA"])
    now = {p["id"]: p for p in _get(any_stack, "/v1/policies")["items"]}
    assert (now[mpp]["status"], now[ban]["status"]) == ("in_effect", "in_effect")
    deadlines = {d["id"]: d["status"] for d in _get(any_stack, "/v1/deadlines", status="all",
                                                    subject=f"innovation-law-lab-{run}")["items"]}
    assert sorted(deadlines.values()) == ["met", "stayed"]  # the injunction took effect on 2020-02-28; Thursday did not


# -- an injected clock ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def clocked(request: pytest.FixtureRequest, kafka: Broker,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningStack, Path]]:
    """ingest + projector on a clock the test moves (a file every process reads)."""
    home = tmp_path_factory.mktemp(f"clocked-{request.param}")
    clock = home / "now"
    set_clock_file(clock, datetime(2031, 1, 1, tzinfo=UTC))
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database(f"clock_{uuid.uuid4().hex[:12]}")
    running = make_stack(kafka, home, database_url=url, env={"ACCORDWATCH_CLOCK_FILE": str(clock)})
    try:
        yield running, clock
    finally:
        running.close()


def _gauge(stack: RunningStack, sample: str) -> float | None:
    for line in stack.query.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def test_a_future_termination_and_a_scheduled_ruling_take_effect_when_the_clock_gets_there(
    clocked: tuple[RunningStack, Path],
) -> None:
    stack, clock = clocked
    agreement, case, policy = (f"us-xx-aca-{uuid.uuid4().hex[:6]}", f"case-{uuid.uuid4().hex[:6]}",
                               f"policy-{uuid.uuid4().hex[:6]}")
    stack.post(
        event("AgreementSigned", subject=agreement, occurred_at="2030-06-01", data={"parties": ["US", "GT"]}),
        event("AgreementInForce", subject=agreement, occurred_at="2030-07-01", data={}),
        event("AgreementTerminated", subject=agreement, occurred_at="2030-12-20",
              data={"reason": "notice", "effective_on": "2031-01-10"}),
        event("CourtRulingIssued", subject=case, occurred_at="2030-12-28",
              data={"court": "W.D. Tex.", "outcome": "blocked", "effective_at": "2031-01-05", "regions": ["US-TX"],
                    "affects": [policy]}),
    )

    def listed(status: str) -> bool:
        items = {a["id"]: a for a in _get(stack, "/v1/agreements")["items"]}
        return agreement in items and items[agreement]["status"] == status

    wait_for(lambda: listed("in_force") and stack.query.get(f"/v1/policies/{policy}").status_code == 200,
             timeout=60, what="the agreement and the ruling projected")
    [before] = [p for p in _get(stack, "/v1/policies")["items"] if p["id"] == policy]
    assert (before["status"], before["next_change"]["at"]) == ("in_effect", "2031-01-05T00:00:00Z")
    assert _gauge(stack, 'accordwatch_projector_agreements{status="terminated"}') == 0

    set_clock_file(clock, datetime(2031, 1, 5, 0, 0, 1, tzinfo=UTC))
    wait_for(lambda: _gauge(stack, 'accordwatch_projector_policies{status="partly_blocked"}') == 1, timeout=60,
             what="the worker to fold the ruling in as it takes effect (the policies row, read by the gauge)")
    [after] = [p for p in _get(stack, "/v1/policies")["items"] if p["id"] == policy]
    assert (after["status"], after["blocked_in"], after["next_change"]) == ("partly_blocked", ["US-TX"], None)
    assert listed("in_force"), "the termination takes effect on the 10th, not before"
    deadline = _get(stack, "/v1/deadlines", status="all", subject=case)["items"]
    assert [d["status"] for d in deadline] == ["met"]

    set_clock_file(clock, datetime(2031, 1, 10, 0, 0, 1, tzinfo=UTC))
    wait_for(lambda: _gauge(stack, 'accordwatch_projector_agreements{status="terminated"}') == 1, timeout=60,
             what="the worker to fold the termination in (the agreements row, read by the gauge)")
    assert listed("terminated")
    one = _get(stack, f"/v1/agreements/{agreement}")
    assert (one["status"], one["status_since"]) == ("terminated", "2031-01-10")
    assert _get(stack, f"/v1/agreements/{agreement}", as_of="2031-01-09")["status"] == "in_force"
