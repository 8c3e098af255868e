"""GET /v1/alerts.atom through the real pipeline, validated by parsing it with feedparser."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import feedparser
import httpx
import pytest

from services.alerts.feed import entry_id
from tests.conftest import RunningStack, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.stack]

SCOTUS = "Supreme Court of the United States"


def _feed(stack: RunningStack, **params: Any) -> Any:
    # No key: the test stack, like `make run`, serves the feed publicly on loopback.
    response = httpx.get(f"{stack.stack.urls['alerts']}/v1/alerts.atom", params=params, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    return parsed


def _alerts(stack: RunningStack, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = stack.alerts.get("/v1/alerts", params={"limit": 500, **params}).json()["items"]
    return items


def _updated(entry: Any) -> datetime:
    return datetime.fromisoformat(entry.updated)


def test_feed_lists_every_alert_newest_first_with_stable_ids(examples_stack: RunningStack) -> None:
    stack = examples_stack
    wait_for(lambda: _alerts(stack, subject="innovation-law-lab-v-wolf"), what="the examples' alerts")
    feed = _feed(stack, limit=500)
    alerts = _alerts(stack)
    assert [e.id for e in feed.entries] == [e.id for e in _feed(stack, limit=500).entries]  # stable
    assert {e.id for e in feed.entries} == {entry_id(a["id"]) for a in alerts}
    assert len({e.id for e in feed.entries}) == len(feed.entries)
    times = [_updated(e) for e in feed.entries]
    assert times == sorted(times, reverse=True)
    for entry in feed.entries:
        assert datetime.fromisoformat(entry.published) <= _updated(entry)
        assert entry.link.startswith(f"{stack.stack.urls['projector']}/status/subjects/")
    assert feed.feed.title == "accordwatch alerts"

    critical = _feed(stack, severity="critical", limit=500)
    assert {e.id for e in critical.entries} == {entry_id(a["id"]) for a in _alerts(stack, severity="critical")}
    assert critical.entries
    assert all("critical" in {t.term for t in e.tags} for e in critical.entries)
    mpp = _feed(stack, subject="innovation-law-lab-v-wolf")
    expected = {entry_id(a["id"]) for a in _alerts(stack, subject="innovation-law-lab-v-wolf")}
    assert {e.id for e in mpp.entries} == expected


def test_an_alert_that_resolves_keeps_its_entry_id_and_moves_to_the_top(examples_stack: RunningStack) -> None:
    stack = examples_stack
    case = f"feed-case-{uuid.uuid4().hex[:8]}"
    today = datetime.now(UTC).date().isoformat()
    source = [{"publisher": "Court docket"}]
    stack.post({"type": "StayRequested", "subject": case, "occurred_at": today, "sources": source,
                "confidence": "confirmed",
                "data": {"requested_by": "U.S. Department of Justice", "court": SCOTUS, "affects": ["mpp"]}})
    fired = wait_for(lambda: _alerts(stack, subject=case, rule="stay-requested"), what="the stay-requested alert")
    fingerprint = fired[0]["id"]
    firing = _feed(stack, subject=case)
    assert [e.id for e in firing.entries] == [entry_id(fingerprint)]
    assert firing.entries[0].title.startswith("[critical] ")
    assert "Resolved" not in firing.entries[0].title

    stack.post({"type": "StayDecided", "subject": case, "occurred_at": today, "sources": source,
                "confidence": "confirmed", "data": {"court": SCOTUS, "decision": "denied", "affects": ["mpp"]}})
    wait_for(lambda: _alerts(stack, subject=case, rule="stay-requested", state="resolved"), what="the resolution")
    resolved = _feed(stack, subject=case, state="resolved")
    entry = next(e for e in resolved.entries if e.id == entry_id(fingerprint))
    assert entry.title.startswith("[critical] Resolved: ")
    assert _updated(entry) > _updated(firing.entries[0])
    assert entry.published == firing.entries[0].published
    newest = _feed(stack).entries[0]
    assert _updated(newest) >= _updated(entry)
    assert entry_id(fingerprint) not in {e.id for e in _feed(stack, subject=case, state="firing").entries}


def test_an_alert_whose_cause_returns_is_a_new_entry(examples_stack: RunningStack) -> None:
    stack = examples_stack
    case = f"feed-again-{uuid.uuid4().hex[:8]}"
    today = datetime.now(UTC).date().isoformat()
    source = [{"publisher": "Court docket"}]
    stack.post({"type": "StayRequested", "subject": case, "occurred_at": today, "sources": source,
                "confidence": "confirmed",
                "data": {"requested_by": "U.S. Department of Justice", "court": SCOTUS, "affects": ["mpp"]}})
    fingerprint = wait_for(lambda: _alerts(stack, subject=case, rule="stay-requested"),
                           what="the stay-requested alert")[0]["id"]
    denial = {"id": str(uuid.uuid4()), "type": "StayDecided", "subject": case, "occurred_at": today,
              "sources": source, "confidence": "confirmed",
              "data": {"court": SCOTUS, "decision": "denied", "affects": ["mpp"]}}
    stack.post(denial)
    wait_for(lambda: _alerts(stack, subject=case, rule="stay-requested", state="resolved"), what="the resolution")
    first = next(e for e in _feed(stack, subject=case).entries if e.id == entry_id(fingerprint))

    # The denial is retracted: the request is pending again, the alert fires again (episode 2).
    stack.post({"type": "EventRetracted", "subject": case, "occurred_at": today, "sources": source,
                "confidence": "confirmed", "data": {"event_id": denial["id"], "reason": "entered in error"}})
    again = wait_for(lambda: [a for a in _alerts(stack, subject=case, rule="stay-requested", state="firing")
                              if a["episode"] == 2], what="the alert firing again")
    assert again[0]["id"] == fingerprint
    entries = _feed(stack, subject=case).entries
    assert [e.id for e in entries] == [entry_id(fingerprint, 2)]
    assert "Resolved" not in entries[0].title
    assert datetime.fromisoformat(entries[0].published) > datetime.fromisoformat(first.published)
