"""Property (b) through the database store: uneven batches, a clock that moves on, checkpoints and the timer.

Generated streams (tests/unit/test_time_properties.py) go through `ReadModelStore.apply` in
uneven batches, in a shuffled order, some redelivered, while the clock moves forward and the
timer (`refresh_due`) runs between batches; every subject's stored state, and the policy, must
then be exactly `project` of the whole set as of the last time (and `policy_status` of it).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from schemas.registry import parse_event
from services.domain.fold import project
from services.domain.litigation import case_facts
from services.domain.policy import policy_status
from services.domain.state import read_state
from services.platform.db import make_engine
from services.projector.readmodel import store as store_module
from services.projector.readmodel.migrate import upgrade
from services.projector.readmodel.policies import facts_of
from services.projector.readmodel.store import Consumed, ReadModelStore
from services.projector.readmodel.tables import SubjectSnapshot
from tests.unit.test_time_properties import AGREEMENT, CASE, POLICY, at, streams


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('props') / 'readmodel.db'}", writer=True)
    upgrade(engine)
    yield engine
    engine.dispose()


TOPICS = itertools.count()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(streams(), st.randoms(use_true_random=False), st.lists(st.integers(-2, 62), min_size=1, max_size=6))
def test_the_store_in_uneven_batches_as_time_goes_on_equals_one_projection(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, docs: list[dict[str, Any]], rng: random.Random,
    days: list[int],
) -> None:
    monkeypatch.setattr(store_module, "CHECKPOINT_SPACING", 2)  # checkpoints within these short histories
    events = [parse_event(doc) for doc in docs]
    arrived = list(events)
    rng.shuffle(arrived)
    clock = Clock(at(min(days), hour=0))
    store = ReadModelStore(engine, clock=clock)
    gen, topic = store.start_generation(), f"t{next(TOPICS)}"
    assert store.swap(gen, topic)  # active, so that the timer sees it
    times = iter(sorted(at(n, hour=0) for n in days))
    position = 0
    while position < len(arrived):
        size = rng.randrange(1, 5)
        batch = [Consumed(topic, 0, position + i, e) for i, e in enumerate(arrived[position:position + size])]
        store.apply(batch)
        store.apply(batch[:rng.randrange(0, len(batch) + 1)])  # redelivered in part
        position += size
        clock.now = next(times, clock.now)
        store.refresh_due()
    now = clock.now
    with engine.connect() as conn:
        stored = {s: read_state(raw) for s, raw in conn.execute(
            select(SubjectSnapshot.subject, SubjectSnapshot.state).where(SubjectSnapshot.generation == gen))}
        facts = facts_of(conn, gen, [POLICY])
    for subject in (AGREEMENT, CASE):
        mine = [e for e in events if e.subject == subject]
        if not mine:
            assert subject not in stored
            continue
        expected = project(subject, mine, as_of=now)
        state = stored[subject]
        assert state is not None
        assert state.model_dump_json() == expected.model_dump_json()
        if subject == CASE and expected.case is not None:
            assert policy_status(POLICY, facts.get(POLICY, []), now) == policy_status(
                POLICY, [case_facts(CASE, expected.case)], now)
    store.drop_generations_below(gen)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(streams(), st.integers(0, 62), st.integers(1, 30))
def test_the_timer_brings_every_stored_state_to_now(
    engine: Engine, docs: list[dict[str, Any]], start: int, later: int,
) -> None:
    """Folded as of one day, then the clock jumps: after the timer, every state is as of the new day."""
    events = [parse_event(doc) for doc in docs]
    clock = Clock(at(start, hour=0))
    store = ReadModelStore(engine, clock=clock)
    gen, topic = store.start_generation(), f"t{next(TOPICS)}"
    store.apply([Consumed(topic, 0, i, e) for i, e in enumerate(events)], generation=gen)
    assert store.swap(gen, topic)  # the timer looks at the active generation
    clock.now = clock.now + timedelta(days=later)
    store.refresh_due(limit=10_000)
    with engine.connect() as conn:
        stored = {s: read_state(raw) for s, raw in conn.execute(
            select(SubjectSnapshot.subject, SubjectSnapshot.state).where(SubjectSnapshot.generation == gen))}
    for subject, state in stored.items():
        assert state is not None
        expected = project(subject, [e for e in events if e.subject == subject], as_of=clock.now)
        assert state.model_dump_json() == expected.model_dump_json()
    store.drop_generations_below(gen)
