"""Alert rules, pure: the rules file, each default rule, transitions and the clock, without Kafka or time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.envelope import Event
from schemas.registry import parse_event
from services.alerts.engine import Context, Current, Desired, evaluate, on_time, transitions
from services.alerts.rules import RuleSet, RulesFileError, load_rules, parse_rules
from services.alerts.settings import DEFAULT_RULES
from services.domain.fold import project
from tests.samples import event

NOW = datetime(2020, 3, 9, 12, tzinfo=UTC)
LATER = datetime(2020, 3, 11, 12, tzinfo=UTC)
"""After the Supreme Court's decision of 2020-03-11 (facts count from when they are decided)."""
RULES = load_rules(DEFAULT_RULES)


def ev(event_type: str, **overrides: Any) -> Event:
    doc = {"id": str(uuid.uuid4()), **event(event_type, **overrides), "recorded_at": "2020-03-09T12:00:00Z"}
    return parse_event(doc)


def desired(events: list[Event], *, now: datetime = NOW, rules: RuleSet = RULES, new: list[Event] | None = None,
            firing: dict[str, frozenset[str]] | None = None, known: frozenset[str] = frozenset()) -> list[Desired]:
    state = project(events[0].subject, events, as_of=now)
    ctx = Context(now=now, known_agreements=known, firing=firing or {})
    return evaluate(rules, state, events if new is None else new, ctx)


def by_rule(found: list[Desired], rule: str) -> list[Desired]:
    return [d for d in found if d.rule.id == rule]


# -- the rules file ---------------------------------------------------------------------------------


def test_the_default_rules_file_has_every_default_rule() -> None:
    assert {r.id for r in RULES.rules} == {
        "stay-requested", "court-deadline", "ruling-issued", "agreement-status-changed",
        "transfers-without-force", "transfer-target-reached", "policy-status-changed",
    }
    deadline = RULES.by_id("court-deadline")
    assert deadline is not None
    assert deadline.stages() == ("72h", "24h", "1h", "due")
    assert RULES.by_id("stay-requested").severity == "critical"  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "line", "words"), [
    ("rules:\n  - id: a\n    kind: nope\n    severity: info\n", 3, "rules.0.kind"),
    ("rules:\n  - id: a\n    kind: court-deadline\n    severity: warning\n    lead_times: [1h, 72x]\n", 5,
     "'72x' is not a duration"),
    ("rules:\n  - id: a\n    kind: stay-requested\n    severity: info\n  - id: a\n    kind: stay-requested\n"
     "    severity: info\n", 1, "appears twice"),
    ("rules:\n  - id: a\n    kind: stay-requested\n    severity: loud\n", 4, "severity"),
    ("rules: [\n", 2, "not valid YAML"),
    ("rules:\n  - id: a\n    kind: ruling-issued\n    severity: info\n    lead_times: [1h]\n", 2,
     "lead_times only applies"),
    ("", 1, "empty"),
])
def test_a_bad_rules_file_names_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(RulesFileError) as caught:
        parse_rules(text, "rules.yaml")
    message = str(caught.value)
    assert message.startswith(f"rules.yaml:{line}:"), message
    assert words in message


# -- each rule ----------------------------------------------------------------------------------------


def test_stay_requested_fires_critical_then_resolves_when_decided() -> None:
    request = ev("StayRequested", occurred_at="2020-03-08")
    [fired] = by_rule(desired([request]), "stay-requested")
    assert (fired.state, fired.rule.severity, fired.cause) == ("firing", "critical", str(request.event_id))
    decision = ev("StayDecided", occurred_at="2020-03-11")
    [after] = by_rule(desired([request, decision], now=LATER), "stay-requested")
    assert (after.fingerprint, after.state, after.resolution) == (fired.fingerprint, "resolved", "stay granted")


def test_court_deadline_has_reminders_at_each_lead_time_and_at_the_deadline() -> None:
    ruling = ev("CourtRulingIssued", occurred_at="2020-03-08")
    [alert] = by_rule(desired([ruling]), "court-deadline")
    due = datetime(2020, 3, 12, tzinfo=UTC)
    assert alert.state == "firing"
    assert dict(alert.timers) == {
        "72h": due - timedelta(hours=72), "24h": due - timedelta(hours=24), "1h": due - timedelta(hours=1), "due": due,
    }


def test_a_granted_stay_resolves_the_ruling_deadline_but_a_denied_one_does_not() -> None:
    ruling = ev("CourtRulingIssued", occurred_at="2020-03-08")
    request = ev("StayRequested", occurred_at="2020-03-08")
    granted = ev("StayDecided", occurred_at="2020-03-11")
    [resolved] = by_rule(desired([ruling, request, granted], now=LATER), "court-deadline")
    assert resolved.state == "resolved"
    assert "stay granted" in (resolved.resolution or "")
    denied = ev("StayDecided", occurred_at="2020-03-11", data={"court": "Supreme Court of the United States",
                                                              "decision": "denied", "affects": ["mpp"]})
    [still] = by_rule(desired([ruling, request, denied], now=LATER), "court-deadline")
    assert still.state == "firing"


def test_a_deadline_already_past_when_first_seen_is_history() -> None:
    ruling = ev("CourtRulingIssued", occurred_at="2020-03-08")
    [alert] = by_rule(desired([ruling], now=datetime(2026, 11, 22, tzinfo=UTC)), "court-deadline")
    assert (alert.state, alert.historical, alert.resolution) == ("resolved", True, "deadline reached")
    assert transitions(None, alert, datetime(2026, 11, 22, tzinfo=UTC))[0].suppressed == "historical"


def test_ruling_issued_only_for_tracked_agreements_or_policies() -> None:
    tracked = ev("CourtRulingIssued", occurred_at="2020-03-08")
    assert by_rule(desired([tracked]), "ruling-issued")[0].rule.severity == "warning"
    other = ev("CourtRulingIssued", occurred_at="2020-03-08", data={"court": "D.D.C.", "outcome": "denied",
                                                                    "affects": ["some-other-policy"]})
    assert by_rule(desired([other]), "ruling-issued") == []
    agreement = ev("CourtRulingIssued", occurred_at="2020-03-08", data={"court": "D.D.C.", "outcome": "vacated",
                                                                        "affects": ["us-gt-aca-2019"]})
    assert by_rule(desired([agreement], known=frozenset({"us-gt-aca-2019"})), "ruling-issued")


def test_agreement_status_changed_fires_for_the_new_status_and_supersedes_the_old() -> None:
    signed = ev("AgreementSigned", subject="us-gt-aca-2019", occurred_at="2019-07-26",
                data={"parties": ["US", "GT"]})
    [first] = by_rule(desired([signed]), "agreement-status-changed")
    assert (first.cause, first.rule.severity) == ("signed@2019-07-26", "info")
    in_force = ev("AgreementInForce", occurred_at="2019-11-21")
    found = by_rule(desired([signed, in_force], firing={"agreement-status-changed": frozenset({first.cause})}),
                    "agreement-status-changed")
    assert {(d.cause, d.state, d.resolution) for d in found} == {
        ("in_force@2019-11-21", "firing", None), ("signed@2019-07-26", "resolved", "superseded"),
    }


def test_transfers_reported_under_an_agreement_not_in_force_on_that_date_warn() -> None:
    signed = ev("AgreementSigned", subject="us-gt-aca-2019", occurred_at="2019-07-26", data={"parties": ["US", "GT"]})
    early = ev("TransferReported", occurred_at="2019-09-01", data={"count": 5, "cumulative": False})
    in_force = ev("AgreementInForce", occurred_at="2019-11-21")
    later = ev("TransferReported", occurred_at="2020-01-10", data={"count": 50, "cumulative": False})
    history = [signed, early, in_force, later]
    [warning] = by_rule(desired(history, new=[early, later]), "transfers-without-force")
    assert warning.cause == str(early.event_id)
    assert warning.details["status_on_date"] == "signed"


def test_transfer_target_reached_fires_once_the_total_reaches_it() -> None:
    target = ev("TransferTargetAnnounced", subject="us-gt-aca-2019", occurred_at="2020-01-01",
                data={"target": 100})
    some = ev("TransferReported", occurred_at="2020-02-01", data={"count": 80, "cumulative": True})
    assert by_rule(desired([target, some]), "transfer-target-reached") == []
    more = ev("TransferReported", occurred_at="2020-03-01", data={"count": 25, "cumulative": False})
    [reached] = by_rule(desired([target, some, more]), "transfer-target-reached")
    assert (reached.cause, reached.details["transfers_total"]) == ("target-100", 105)


# -- transitions and the clock ------------------------------------------------------------------------


def test_an_alert_fires_once_and_resolves_once() -> None:
    request = ev("StayRequested", occurred_at="2020-03-08")
    [fired] = by_rule(desired([request]), "stay-requested")
    assert [t.name for t in transitions(None, fired, NOW)] == ["firing"]
    firing = Current(fired.fingerprint, "stay-requested", "firing", NOW, False)
    assert transitions(firing, fired, NOW) == []
    [resolved] = by_rule(desired([request, ev("StayDecided", occurred_at="2020-03-11")], now=LATER),
                         "stay-requested")
    assert [t.name for t in transitions(firing, resolved, NOW)] == ["resolved"]
    done = Current(fired.fingerprint, "stay-requested", "resolved", NOW, False)
    assert transitions(done, resolved, NOW) == []


def test_an_alert_whose_cause_returns_fires_again() -> None:
    """Defect 5: the decision that resolved it is retracted: same fingerprint, a new episode, a new notification."""
    request = ev("StayRequested", occurred_at="2020-03-08")
    decision = ev("StayDecided", occurred_at="2020-03-11")
    retraction = ev("EventRetracted", subject=request.subject, occurred_at="2020-03-11",
                    data={"event_id": str(decision.event_id), "reason": "misreported"})
    [resolved] = by_rule(desired([request, decision], now=LATER), "stay-requested")
    [again] = by_rule(desired([request, decision, retraction], now=LATER), "stay-requested")
    assert (again.fingerprint, again.state) == (resolved.fingerprint, "firing")
    done = Current(resolved.fingerprint, "stay-requested", "resolved", NOW, True)
    [step] = transitions(done, again, LATER)
    assert (step.name, step.state, step.webhook_type) == ("firing#2", "firing", "alert.firing")
    second = Current(resolved.fingerprint, "stay-requested", "firing", LATER, False, episode=2)
    assert [t.name for t in transitions(second, resolved, LATER)] == ["resolved#2"]
    steps, _ = on_time(second, [("24h", LATER)], LATER, timedelta(seconds=60))
    assert [t.name for t in steps] == ["reminder:24h#2"]


def test_reminders_at_each_lead_time_with_a_fake_clock() -> None:
    due = datetime(2020, 3, 12, tzinfo=UTC)
    timers = {"72h": due - timedelta(hours=72), "24h": due - timedelta(hours=24), "1h": due - timedelta(hours=1),
              "due": due}
    alert = Current("court-deadline/x/1", "court-deadline", "firing", NOW, False)
    sent: list[tuple[str, bool]] = []
    for stage, when in timers.items():
        steps, skipped = on_time(alert, [(stage, when)], when + timedelta(seconds=1), timedelta(seconds=60))
        assert skipped == []
        sent.extend((s.name, s.late) for s in steps)
    assert sent == [("reminder:72h", False), ("reminder:24h", False), ("reminder:1h", False),
                    ("reminder:due", False), ("resolved", False)]


def test_after_downtime_only_the_latest_due_reminder_is_sent_marked_late() -> None:
    due = datetime(2020, 3, 12, tzinfo=UTC)
    alert = Current("court-deadline/x/1", "court-deadline", "firing", NOW, False)
    missed = [("72h", due - timedelta(hours=72)), ("24h", due - timedelta(hours=24))]
    steps, skipped = on_time(alert, missed, due - timedelta(hours=20), timedelta(seconds=60))
    assert [(s.name, s.late) for s in steps] == [("reminder:24h", True)]
    assert skipped == ["72h"]


def test_a_resolved_alert_sends_no_reminders() -> None:
    alert = Current("court-deadline/x/1", "court-deadline", "resolved", NOW, False)
    steps, skipped = on_time(alert, [("24h", NOW)], NOW, timedelta(seconds=60))
    assert steps == []
    assert skipped == ["24h"]
