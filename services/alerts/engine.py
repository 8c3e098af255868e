"""Rule evaluation, pure: (events, folded state, now) -> the alerts that should exist.

Nothing here reads a clock, a database or the network. The worker folds a subject with
`services.domain.fold` (as of now), asks `evaluate` which alerts its state calls for (and
`evaluate_policy` for a policy's status), and asks `transitions` what changed against the
alert it already has; the clock's part (reminders, expiries) is `on_time`. Every decision
that makes notifications exactly-once (fingerprints, which transition happened, what counts
as history) is taken here, so it is tested without Kafka or time passing.

Alerts follow their cause, as Alertmanager's do: an alert whose cause returns after it was
resolved fires again under the same fingerprint, as a new episode with its own notifications.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, Literal

from schemas.envelope import Event, instant
from schemas.events import TransferReported
from services.alerts.rules import Rule, RuleKind, RuleSet
from services.domain.policy import PolicyStatus
from services.domain.state import AgreementPart, SubjectState

AlertState = Literal["firing", "resolved"]
DUE = "due"
EXPIRE = "expire"


def fingerprint(rule_id: str, subject: str, cause: str) -> str:
    """The stable identity of an alert: rule, subject and cause."""
    return f"{rule_id}/{subject}/{cause}"


@dataclass(frozen=True, slots=True)
class Context:
    """What rules may know besides the subject: the time, and what is tracked."""

    now: datetime
    known_agreements: frozenset[str] = frozenset()
    notify_max_age: timedelta = timedelta(days=7)
    firing: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Causes currently firing for this subject, per rule id (for rules that reconcile)."""


@dataclass(frozen=True, slots=True)
class Desired:
    """An alert the facts call for, in the state they call for."""

    rule: Rule
    subject: str
    cause: str
    state: AlertState
    summary: str
    at: datetime
    """When the fact behind it happened (the deadline itself for deadlines)."""
    historical: bool
    """Already old news when first seen: recorded, never sent."""
    resolution: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timers: tuple[tuple[str, datetime], ...] = ()
    """(stage, when) the clock must act on this alert."""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule.id, self.subject, self.cause)


@dataclass(frozen=True, slots=True)
class Current:
    """What the store knows of an alert."""

    fingerprint: str
    rule_id: str
    state: AlertState
    fired_at: datetime
    historical: bool
    details: Mapping[str, Any] = field(default_factory=dict)
    episode: int = 1
    """How many times it has fired (its cause returned after it was resolved)."""


@dataclass(frozen=True, slots=True)
class Transition:
    """A notification-worthy change: `firing`, `resolved`, or a reminder stage."""

    name: str
    """`firing`, `resolved`, or `reminder:<stage>` (`reminder:72h`, `reminder:due`)."""
    state: AlertState
    reason: str | None = None
    late: bool = False
    suppressed: str | None = None
    """Why it is recorded but not sent (`historical`), if so."""

    @property
    def webhook_type(self) -> str:
        return "alert.resolved" if self.state == "resolved" else "alert.firing"


def evaluate(rules: RuleSet, state: SubjectState, new_events: Sequence[Event], ctx: Context) -> list[Desired]:
    """The alerts a subject's folded state (and the events just added to it) call for."""
    desired: list[Desired] = []
    for rule in rules.enabled:
        produced = list(EVALUATORS[rule.kind](rule, rules, state, new_events, ctx))
        desired.extend(produced)
        if rule.kind in RECONCILED:
            wanted = {d.cause for d in produced}
            desired.extend(
                Desired(rule, state.subject, cause, "resolved", f"{rule.id}: no longer holds",
                        ctx.now, historical=False, resolution=RECONCILED[rule.kind])
                for cause in sorted(ctx.firing.get(rule.id, frozenset()) - wanted)
            )
    return desired


def transitions(current: Current | None, desired: Desired, now: datetime) -> list[Transition]:
    """What happens to an alert when the facts call for `desired`: at most fire (again), then resolve.

    A resolved alert whose cause returns fires again: a new episode (`firing#2`, ...), judged
    as history or news afresh from the facts (its first episode may have been old news).
    """
    if current is not None and current.state == "resolved":
        if desired.state != "firing":
            return []
        episode = current.episode + 1
        suppressed = "historical" if desired.historical else None
        return [Transition(episode_name("firing", episode), "firing", suppressed=suppressed)]
    suppressed = "historical" if (desired.historical if current is None else current.historical) else None
    episode = current.episode if current is not None else 1
    out: list[Transition] = []
    if current is None:
        out.append(Transition("firing", "firing", suppressed=suppressed))
    if desired.state == "resolved":
        out.append(Transition(episode_name("resolved", episode), "resolved", reason=desired.resolution,
                              suppressed=suppressed))
    return out


def episode_name(transition: str, episode: int) -> str:
    """A transition's name in an episode: `firing`, `reminder:24h`, ...; `firing#2` from the second on."""
    return transition if episode <= 1 else f"{transition}#{episode}"


def on_time(
    current: Current, due: Sequence[tuple[str, datetime]], now: datetime, late_after: timedelta
) -> tuple[list[Transition], list[str]]:
    """The clock reached some of an alert's timers: the notifications, and the stages skipped.

    When several are due at once (the worker was down), only the latest is sent, marked
    late if its time is well past; the earlier ones are skipped. `due` fires the
    deadline reminder and then resolves; `expire` resolves a notice.
    """
    if current.state != "firing" or not due:
        return [], [stage for stage, _ in due]
    ordered = sorted(due, key=lambda item: item[1])
    stage, when = ordered[-1]
    skipped = [s for s, _ in ordered[:-1]]
    late = now - when > late_after
    suppressed = "historical" if current.historical else None
    name = partial(episode_name, episode=current.episode)
    if stage == EXPIRE:
        return [Transition(name("resolved"), "resolved", reason="expired", late=late, suppressed=suppressed)], skipped
    out = [Transition(name(f"reminder:{stage}"), "firing", late=late, suppressed=suppressed)]
    if stage == DUE:
        out.append(Transition(name("resolved"), "resolved", reason="deadline reached", late=late,
                              suppressed=suppressed))
    return out, skipped


# -- the rules, one evaluator per kind ------------------------------------------------------

Evaluator = Callable[[Rule, RuleSet, SubjectState, Sequence[Event], Context], Iterable[Desired]]


def _old(at: datetime, ctx: Context) -> bool:
    return at < ctx.now - ctx.notify_max_age


def _expiry(rule: Rule, ctx: Context) -> tuple[tuple[str, datetime], ...]:
    return ((EXPIRE, ctx.now + rule.resolve_after),) if rule.resolve_after is not None else ()


def _stay_requested(
    rule: Rule, rules: RuleSet, state: SubjectState, new: Sequence[Event], ctx: Context
) -> Iterable[Desired]:
    if state.case is None:
        return
    for request in state.case.stay_requests:
        at = instant(request.occurred_at)
        decided = request.status != "pending"
        yield Desired(
            rule, state.subject, str(request.event_id), "resolved" if decided else "firing",
            f"{request.requested_by} asked {request.court} to stay a ruling in {state.subject}",
            at, historical=_old(at, ctx),
            resolution=f"stay {request.status.replace('_', ' ')}" if decided else None,
            details={
                "case": state.subject, "requested_by": request.requested_by, "court": request.court,
                "affects": request.affects, "event_id": str(request.event_id),
                "respond_by": _iso(request.respond_by), "confidence": request.confidence,
            },
            timers=_expiry(rule, ctx),
        )


def _court_deadline(
    rule: Rule, rules: RuleSet, state: SubjectState, new: Sequence[Event], ctx: Context
) -> Iterable[Desired]:
    """Firing while a deadline is open; resolved once stayed, met or passed (fires again if it re-opens)."""
    leads = sorted(rule.lead_times, reverse=True)
    for deadline in state.deadlines:
        due = deadline.due_instant
        passed = due <= ctx.now
        settled = deadline.status != "open" or passed
        if deadline.status == "stayed" or (deadline.status == "passed" and deadline.origin != "DeadlineSet"):
            resolution: str | None = deadline.status_reason
        else:
            resolution = "deadline reached" if settled else None
        timers = tuple((stage, due - lead) for stage, lead in zip(rule.stages(), leads, strict=False))
        yield Desired(
            rule, deadline.subject, deadline.id, "resolved" if settled else "firing",
            f"{deadline.description} ({deadline.subject}), due {due.isoformat()}",
            due, historical=passed, resolution=resolution,
            details={
                "due_at": due.isoformat(), "kind": deadline.kind, "origin": deadline.origin,
                "event_id": str(deadline.event_id), "affects": deadline.affects, "regions": deadline.regions,
                "confidence": deadline.confidence, "description": deadline.description,
                "status": deadline.status,
            },
            timers=(*timers, (DUE, due)),
        )


def _ruling_issued(
    rule: Rule, rules: RuleSet, state: SubjectState, new: Sequence[Event], ctx: Context
) -> Iterable[Desired]:
    if state.case is None:
        return
    tracked = rules.tracked_policies | ctx.known_agreements
    for ruling in state.case.rulings:
        hits = sorted(set(ruling.affects) & tracked)
        if not hits:
            continue
        at = instant(ruling.occurred_at)
        yield Desired(
            rule, state.subject, str(ruling.event_id), "firing",
            f"{ruling.court} ruled ({ruling.outcome}) in {state.subject}, affecting {', '.join(hits)}",
            at, historical=_old(at, ctx),
            details={
                "case": state.subject, "court": ruling.court, "outcome": ruling.outcome,
                "affects": ruling.affects, "effective_at": _iso(ruling.effective_at),
                "event_id": str(ruling.event_id), "confidence": ruling.confidence,
            },
            timers=_expiry(rule, ctx),
        )


def _status_changed(
    rule: Rule, rules: RuleSet, state: SubjectState, new: Sequence[Event], ctx: Context
) -> Iterable[Desired]:
    a = state.agreement
    if a is None or a.status is None or a.status_since is None:
        return
    at = instant(a.status_since)
    previous = a.history[-2].status if len(a.history) >= 2 else None
    yield Desired(
        rule, state.subject, f"{a.status}@{at.date().isoformat()}", "firing",
        f"{state.subject} is now {a.status.replace('_', ' ')} (since {at.date().isoformat()})",
        at, historical=_old(at, ctx),
        details={"agreement": state.subject, "status": a.status, "previous": previous,
                 "since": at.isoformat(), "confidence": a.confidence},
        timers=_expiry(rule, ctx),
    )


def status_on(agreement: AgreementPart, moment: datetime) -> str | None:
    """An agreement's status on a date, from its transitions."""
    status = None
    for change in agreement.history:
        if instant(change.on) <= moment:
            status = change.status
    return status


def _transfers_without_force(
    rule: Rule, rules: RuleSet, state: SubjectState, new: Sequence[Event], ctx: Context
) -> Iterable[Desired]:
    for event in new:
        if not isinstance(event, TransferReported) or event.data.count <= 0:
            continue
        at = instant(event.occurred_at)
        status = status_on(state.agreement, at) if state.agreement is not None else None
        if status == "in_force":
            continue
        yield Desired(
            rule, state.subject, str(event.event_id), "firing",
            f"{event.data.count} transfers reported under {state.subject}, which was "
            f"{(status or 'unknown').replace('_', ' ')} on {at.date().isoformat()}",
            at, historical=_old(at, ctx),
            details={"agreement": state.subject, "count": event.data.count, "cumulative": event.data.cumulative,
                     "status_on_date": status, "event_id": str(event.event_id), "confidence": event.confidence},
            timers=_expiry(rule, ctx),
        )


def _target_reached(
    rule: Rule, rules: RuleSet, state: SubjectState, new: Sequence[Event], ctx: Context
) -> Iterable[Desired]:
    a = state.agreement
    if a is None or a.transfer_target is None or a.transfer_target <= 0 or a.transfers_total < a.transfer_target:
        return
    if a.latest_cumulative is not None:
        at = instant(a.latest_cumulative.on)
    else:
        at = instant(state.last_event_at) if state.last_event_at is not None else ctx.now
    yield Desired(
        rule, state.subject, f"target-{a.transfer_target}", "firing",
        f"{state.subject}: {a.transfers_total} transfers reached the target of {a.transfer_target}",
        at, historical=_old(at, ctx),
        details={"agreement": state.subject, "transfers_total": a.transfers_total,
                 "transfer_target": a.transfer_target, "approximate": a.transfers_approximate},
        timers=_expiry(rule, ctx),
    )


def evaluate_policy(rules: RuleSet, policy: PolicyStatus, ctx: Context) -> list[Desired]:
    """The alerts a policy's status calls for (kind `policy-status-changed`), the old ones resolved."""
    desired: list[Desired] = []
    for rule in rules.enabled:
        if rule.kind != "policy-status-changed":
            continue
        wanted = []
        if policy.since is not None:  # it changed at some time: in effect from the start is no news
            at = policy.since
            where = f" in {', '.join(policy.blocked_in)}" if policy.blocked_in else ""
            cause = f"{policy.status}@{at.isoformat()}" + (f"/{','.join(policy.blocked_in)}"[:120] if where else "")
            change = policy.next_change
            wanted.append(Desired(
                rule, policy.id, cause, "firing",
                f"{policy.id} is now {policy.status.replace('_', ' ')}{where} (since {at.date().isoformat()})",
                at, historical=_old(at, ctx),
                details={"policy": policy.id, "status": policy.status, "blocked_in": policy.blocked_in,
                         "since": at.isoformat(), "affects": [policy.id],
                         "governing": [{"case": g.case, "court": g.court, "outcome": g.outcome,
                                        "event_id": str(g.event_id),
                                        "stayed_by": [str(s.event_id) for s in g.stayed_by]}
                                       for g in policy.governing],
                         "next_change": None if change is None else {
                             "at": change.at.isoformat(), "status": change.status, "blocked_in": change.blocked_in}},
                timers=_expiry(rule, ctx),
            ))
        desired.extend(wanted)
        causes = {d.cause for d in wanted}
        desired.extend(
            Desired(rule, policy.id, cause, "resolved", f"{rule.id}: superseded", ctx.now, historical=False,
                    resolution="superseded")
            for cause in sorted(ctx.firing.get(rule.id, frozenset()) - causes)
        )
    return desired


def _policy_rule(
    rule: Rule, rules: RuleSet, state: SubjectState, new: Sequence[Event], ctx: Context
) -> Iterable[Desired]:
    return ()  # a policy spans cases: `evaluate_policy` judges it, not a subject's state


def _iso(moment: date | datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


EVALUATORS: dict[RuleKind, Evaluator] = {
    "stay-requested": _stay_requested,
    "court-deadline": _court_deadline,
    "ruling-issued": _ruling_issued,
    "agreement-status-changed": _status_changed,
    "transfers-without-force": _transfers_without_force,
    "transfer-target-reached": _target_reached,
    "policy-status-changed": _policy_rule,
}

RECONCILED: dict[RuleKind, str] = {
    "stay-requested": "retracted",
    "court-deadline": "retracted",
    "ruling-issued": "retracted",
    "agreement-status-changed": "superseded",
    "transfer-target-reached": "no longer reached",
}
"""Kinds whose every alert follows from the current state: one it no longer calls for resolves."""
