"""A case as of a time: each ruling's standing, the requests' answers, the deadlines and the case status.

`settle_case` runs at the end of every fold, for the time folded to (see `litigation.py` for
the rules of rulings and stays). A deadline's state is derived here, never set once:
`open` (ahead, and nothing holds it), `stayed` (a stay holds the ruling there), `met` (the
ruling took effect, on time or once a stay ended), `passed` (the time came; for a ruling,
it ended before it took effect).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from uuid import UUID

from schemas.envelope import instant
from services.domain.litigation import CaseFacts, StayFact, Timeline, by_effect, case_facts
from services.domain.regions import Area
from services.domain.state import CasePart, CaseStatus, Deadline, DeadlineStatus, SubjectState


def settle_case(state: SubjectState, at: datetime) -> None:
    """Derive, as of `at`, each ruling's standing, the requests' answers, the deadlines and the case status."""
    c = state.case
    assert c is not None
    facts = case_facts(state.subject, c)
    timeline = Timeline(facts)
    for r in c.rulings:
        fact = timeline.rulings[r.event_id]
        r.state = "scheduled" if fact.effective > at else ("ended" if timeline.ended(r.event_id, at) else "in_force")
        r.stayed_by = [] if r.state == "ended" else [s.event_id for s in timeline.stays_at(r.event_id, at)]
    kept = [d for d in state.deadlines if d.origin == "DeadlineSet"]
    for d in kept:
        passed = d.due_instant <= at
        d.status, d.status_by, d.status_reason = ("passed", None, "the time came") if passed else ("open", None, None)
    state.deadlines = sorted([*kept, *_litigation_deadlines(state, c, timeline, at)],
                             key=lambda d: (d.due_instant, d.id))
    c.status, since = _case_status(c, facts, timeline, at)
    c.status_since = None if since is None else _as_given(c).get(since, since)


def _as_given(c: CasePart) -> dict[datetime, date | datetime]:
    """The moments of a case's facts as they were given (a date stays a date), by instant."""
    given: dict[datetime, date | datetime] = {}
    moments: list[date | datetime | None] = [c.filed_on]
    moments += [m for r in c.rulings for m in (r.occurred_at, r.effective_at)]
    moments += [m for d in c.stay_decisions for m in (d.occurred_at, d.effective_at)]
    moments += [r.occurred_at for r in c.stay_requests]
    moments += [r.decided_on for r in c.stay_requests]
    for moment in moments:
        if moment is not None:
            given.setdefault(instant(moment), moment)
    return given


def settle_deadlines(state: SubjectState, at: datetime) -> None:
    """The DeadlineSet deadlines of a subject that is not a case: open until due, then passed."""
    for d in state.deadlines:
        passed = d.due_instant <= at
        d.status, d.status_by, d.status_reason = ("passed", None, "the time came") if passed else ("open", None, None)
    state.deadlines.sort(key=lambda d: (d.due_instant, d.id))


def _litigation_deadlines(state: SubjectState, c: CasePart, timeline: Timeline, at: datetime) -> Iterable[Deadline]:
    """A deadline per ruling with an effective_at, and per decision with one that lets rulings take effect."""
    for r in c.rulings:
        if r.effective_at is None:
            continue
        fact = timeline.rulings[r.event_id]
        where = Area.of(r.regions)
        status, by, reason = deadline_state(timeline, (r.event_id,), where, fact.effective, at)
        scope = f" in {', '.join(r.regions)}" if r.regions else ""
        yield Deadline(
            id=str(r.event_id), subject=state.subject, due_at=r.effective_at,
            description=f"{r.court} ruling ({r.outcome}) takes effect{scope}", kind="ruling_effective",
            origin="CourtRulingIssued", event_id=r.event_id, affects=list(fact.affects), regions=list(r.regions),
            rulings=[r.event_id], confidence=r.confidence, status=status, status_by=by, status_reason=reason,
        )
    by_id = {d.event_id: d for d in c.stay_decisions}
    for stay in timeline.facts.stays:
        decision = by_id[stay.event_id]
        if decision.effective_at is None or stay.decision not in ("denied", "lifted", "granted_in_part") \
                or not stay.targets:
            continue
        where = Area.of(stay.remaining_regions)
        status, by, reason = deadline_state(timeline, stay.targets, where, stay.effective, at)
        courts = sorted({timeline.rulings[t].court for t in stay.targets})
        scope = f" in {', '.join(stay.remaining_regions)}" if stay.remaining_regions else ""
        affects = sorted({a for t in stay.targets for a in timeline.rulings[t].affects})
        yield Deadline(
            id=str(stay.event_id), subject=state.subject, due_at=decision.effective_at,
            description=f"{' and '.join(courts)} ruling takes effect{scope} ({stay.describe()})",
            kind="ruling_effective", origin="StayDecided", event_id=stay.event_id, affects=affects,
            regions=list(stay.remaining_regions), rulings=list(stay.targets), confidence=decision.confidence,
            status=status, status_by=by, status_reason=reason,
        )


def deadline_state(
    timeline: Timeline, rulings: Sequence[UUID], where: Area, due: datetime, at: datetime
) -> tuple[DeadlineStatus, UUID | None, str | None]:
    """Whether rulings take effect (in `where`) at `due`, as of `at`: open, met, stayed or passed."""

    def takes_effect(t: datetime) -> bool:
        return any(not (timeline.active(r, t) & where).empty for r in rulings)

    if due > at:
        return ("open", None, None) if takes_effect(due) else _held(timeline, rulings, where, due)
    times = sorted({due, *(p for r in rulings for p in timeline.points(r) if due < p <= at)})
    for t in times:
        if takes_effect(t):
            return "met", None, f"took effect {t.isoformat()}"
    return _held(timeline, rulings, where, at)


def _held(
    timeline: Timeline, rulings: Sequence[UUID], where: Area, at: datetime
) -> tuple[DeadlineStatus, UUID | None, str | None]:
    for r in rulings:
        if timeline.ended(r, at):
            continue
        stays = [s for s in timeline.stays_at(r, at) if not (s.area & where).empty]
        if stays:
            latest = max(stays, key=by_effect)
            return "stayed", latest.event_id, latest.describe()
    return "passed", None, "ended before it took effect"


def _case_status(c: CasePart, facts: CaseFacts, timeline: Timeline, at: datetime) -> tuple[CaseStatus, datetime | None]:
    """The case's status at `at` and since when: stay_requested, stayed, ruled or filed.

    One sweep over the times the answer may change: requests pending from when made until
    answered, rulings stayed while a stay holds them (and they are not ended), ruled from
    the first ruling.
    """
    changes: dict[datetime, list[tuple[str, int]]] = defaultdict(list)
    for q in facts.requests:
        changes[q.occurred].append(("pending", 1))
        if q.decided is not None:
            changes[q.decided].append(("pending", -1))
    for r in facts.rulings:
        changes[r.occurred].append(("ruled", 1))
        was = False
        for t in sorted({*(s.effective for s in facts.stays if r.event_id in s.targets), *timeline.points(r.event_id)}):
            now = bool(timeline.stays_at(r.event_id, t)) and not timeline.ended(r.event_id, t)
            if now != was:
                changes[t].append(("stayed", 1 if now else -1))
                was = now
    # A stay of rulings the record lacks (the facts name none, and the case has none it could mean)
    # still stays something in the case: "the Supreme Court granted the stay".
    holding: dict[str, StayFact] = {}
    was = False
    for stay in sorted((s for s in facts.stays if not s.targets), key=by_effect):
        if stay.decision == "lifted":
            holding.clear()
        elif stay.decision == "denied":
            holding.pop(stay.court.casefold(), None)
        else:
            holding[stay.court.casefold()] = stay
        if bool(holding) != was:
            was = bool(holding)
            changes[stay.effective].append(("stayed", 1 if was else -1))
    first = [instant(m) for m in (c.filed_on,) if m is not None]
    first += [r.occurred for r in facts.rulings] + [q.occurred for q in facts.requests]
    first += [s.occurred for s in facts.stays]
    since: datetime | None = min(first) if first else None
    counts = {"pending": 0, "stayed": 0, "ruled": 0}
    status: CaseStatus = "filed"
    for t in sorted(changes):
        if t > at:
            break
        for kind, delta in changes[t]:
            counts[kind] += delta
        now_status: CaseStatus = ("stay_requested" if counts["pending"] else "stayed" if counts["stayed"]
                                  else "ruled" if counts["ruled"] else "filed")
        if now_status != status:
            status, since = now_status, t
    return status, since
