"""Per-subscriber lanes: bounded memory, claims never beyond the window, first in first out, spill and drain."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.alerts.lanes import Lane
from services.alerts.outbox import Claimed

NOW = datetime(2026, 12, 3, tzinfo=UTC)
MARGIN = timedelta(seconds=12)


def delivery(sub: uuid.UUID, lease_s: float = 40) -> Claimed:
    return Claimed(uuid.uuid4(), sub, "http://127.0.0.1:9/", "whsec_x", "{}", 0, NOW, uuid.uuid4(),
                   NOW + timedelta(seconds=lease_s))


def test_a_lane_holds_at_most_its_lanes_in_flight_and_its_buffer_in_memory() -> None:
    lane = Lane(uuid.uuid4(), concurrency=2, buffer=3)
    assert lane.room() == 5
    lane.offer([delivery(lane.subscription_id) for _ in range(5)])
    started = list(lane.take(NOW, MARGIN))
    assert len(started) == 2
    assert (lane.in_flight, len(lane.ready), lane.room(), lane.free()) == (2, 3, 0, 0)


def test_claims_ask_for_the_room_left_in_the_window_and_a_full_window_asks_nothing() -> None:
    lane = Lane(uuid.uuid4(), concurrency=4, buffer=6)
    lane.offer([delivery(lane.subscription_id) for _ in range(3)])
    started = list(lane.take(NOW, MARGIN))
    assert lane.free() == 7  # 10 in the window, 3 in flight
    lane.finished(started[0].id)
    assert lane.free() == 7  # sent, not yet booked: still leased to the lane
    lane.booked()
    assert lane.free() == 8
    lane.reserved = 50  # a hand-off in progress does not hold claims back
    assert lane.free() == 8
    hanging = Lane(uuid.uuid4(), concurrency=2, buffer=3)
    hanging.offer([delivery(hanging.subscription_id) for _ in range(5)])
    assert len(list(hanging.take(NOW, MARGIN))) == 2
    assert (hanging.free(), hanging.hungry()) == (0, False)


def test_a_lane_with_a_backlog_asks_for_more_before_it_runs_dry() -> None:
    lane = Lane(uuid.uuid4(), concurrency=2, buffer=6)
    lane.spill()
    lane.offer([delivery(lane.subscription_id) for _ in range(8)])
    queued = []
    while lane.ready:
        started = list(lane.take(NOW, MARGIN))
        queued.append((len(lane.ready), lane.hungry()))
        for item in started:
            lane.finished(item.id)
            lane.booked()
    assert queued == [(6, False), (4, False), (2, False), (0, True)]
    assert lane.free() == 8


def test_deliveries_start_first_in_first_out_and_a_known_id_is_queued_once() -> None:
    lane = Lane(uuid.uuid4(), concurrency=1, buffer=10)
    items = [delivery(lane.subscription_id) for _ in range(4)]
    assert lane.offer(items) == 4
    assert lane.offer(items[:2]) == 0
    order = []
    for item in items:
        [started] = list(lane.take(NOW, MARGIN))
        order.append(started.id)
        lane.finished(item.id)
    assert order == [i.id for i in items]


def test_a_spilled_lane_takes_no_hand_offs_until_a_claim_drains_it() -> None:
    lane = Lane(uuid.uuid4(), concurrency=2, buffer=2)
    lane.spill()
    assert lane.room() == 0
    seen = lane.spills
    lane.spill()  # something spilled again while the claim ran
    lane.drained(seen)
    assert lane.spilled
    lane.drained(lane.spills)
    assert not lane.spilled
    assert lane.room() == 4


def test_a_buffered_lease_about_to_lapse_is_given_back_not_sent() -> None:
    lane = Lane(uuid.uuid4(), concurrency=1, buffer=5)
    fresh, stale = delivery(lane.subscription_id), delivery(lane.subscription_id, lease_s=5)
    lane.offer([stale, fresh])
    assert list(lane.take(NOW, MARGIN)) == []
    assert lane.expired(NOW, MARGIN) == [stale]
    assert lane.spilled
    assert [d.id for d in lane.take(NOW, MARGIN)] == [fresh.id]


def test_a_closed_lane_drops_its_buffer_and_asks_for_nothing() -> None:
    lane = Lane(uuid.uuid4(), concurrency=2, buffer=2)
    lane.offer([delivery(lane.subscription_id) for _ in range(3)])
    assert len(lane.close()) == 3
    assert (lane.free(), lane.room(), len(lane.ready)) == (0, 0, 0)
