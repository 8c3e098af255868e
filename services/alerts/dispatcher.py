"""Dispatching the outbox: per-subscriber lanes fed from memory, the database for durability.

- Hand-off: before an alert transaction the worker reserves room in each lane; the
  transaction writes the deliveries that fit leased to this dispatcher (token, lease) and
  the worker queues them here once it commits: no claim, no extra round trip.
- Claims (one statement) fetch what is not in memory: spilled backlogs, retries that fell
  due, deliveries whose lease lapsed; never more per subscriber than the room in its window
  (lanes + buffer), asked for before a lane with a backlog runs dry.
- Lanes: each subscriber has `concurrency` requests in flight at most, its own HTTP
  connection pool of that size, and a bounded buffer; a hanging endpoint fills only those.
- Bookings: results are booked as soon as they arrive, all that arrived while the previous
  booking ran in one transaction (bulk under load); a lane may send again as soon as its
  request ends, its row stays leased (and counted against its claims) until booked.
- Buffered deliveries whose lease would lapse mid-request are given back to the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import Engine

from services.alerts import metrics, outbox
from services.alerts.delivery import Sender
from services.alerts.lanes import Lane
from services.alerts.statements import StoreThread
from services.alerts.store import Handoff, Outcome

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class Dispatcher:
    """Lanes, the claim loop, the booking loop."""

    def __init__(
        self,
        engine: Engine,
        sender: Sender,
        policy: outbox.Policy,
        *,
        concurrency: int,
        buffer: int,
        clock: Clock,
        db: StoreThread,
        idle_poll_s: float = 1.0,
        refresh_s: float = 2.0,
        book_every_s: float = 0.1,
        book_max: int = 1000,
    ) -> None:
        self.engine = engine
        self.sender = sender
        self.policy = policy
        self.concurrency = concurrency
        self.buffer = buffer
        self.clock = clock
        self.db = db
        self.idle_poll_s = idle_poll_s
        self.refresh_s = refresh_s
        self.book_every_s = book_every_s
        self.book_max = book_max
        self.token = uuid.uuid4()
        self.margin = timedelta(seconds=sender.timeout.total or 0) + timedelta(seconds=2)
        self.lanes: dict[UUID, Lane] = {}
        self.results: list[outbox.Result] = []
        self.releases: list[outbox.Claimed] = []
        self._claim_wake = asyncio.Event()
        self._book_wake = asyncio.Event()
        self._refresh_wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the alert transaction's side -------------------------------------------------------

    def reserve(self) -> tuple[Handoff, dict[UUID, int]]:
        """Room per lane for the next alert transaction, held until `accept`."""
        room = {sid: n for sid, lane in self.lanes.items() if (n := lane.room()) > 0}
        for sid, n in room.items():
            self.lanes[sid].reserved += n
        return Handoff(self.token, self.clock() + self.policy.lease, dict(room)), room

    def accept(self, reserved: dict[UUID, int], outcome: Outcome | None) -> None:
        """The transaction ended: queue what it handed over, note what it left in the database."""
        for sid, n in reserved.items():
            lane = self.lanes.get(sid)
            if lane is not None:
                lane.reserved -= n
        if outcome is None:
            return
        touched: dict[UUID, Lane] = {}
        for delivery in outcome.handed:
            lane = self._lane(delivery.subscription_id)
            lane.offer((delivery,))
            touched[lane.subscription_id] = lane
        for sid in outcome.spilled:
            self._lane(sid).spill()
        for lane in touched.values():
            self._pump(lane)
        if outcome.spilled:
            self._claim_wake.set()

    def held(self) -> tuple[int, int]:
        """(deliveries leased to this dispatcher, subscriptions whose backlog waits in the outbox)."""
        lanes = self.lanes.values()
        return (sum(lane.held() for lane in lanes),
                sum(1 for lane in lanes if lane.spilled))

    def wake(self) -> None:
        """Something may be due now that this process did not write (a tick, an API retry)."""
        self._claim_wake.set()

    # -- lanes ------------------------------------------------------------------------------

    def _lane(self, sid: UUID) -> Lane:
        lane = self.lanes.get(sid)
        if lane is None:
            lane = self.lanes[sid] = Lane(sid, self.concurrency, self.buffer)
        return lane

    def _pump(self, lane: Lane) -> None:
        if not lane.active:
            return
        now = self.clock()
        for delivery in lane.take(now, self.margin):
            task = asyncio.create_task(self._send(lane, delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if lane.ready and lane.in_flight < lane.concurrency:
            # The head's lease would lapse mid-request: give the buffer back to the database.
            self.releases.extend(lane.expired(now, self.margin))
            self._book_wake.set()

    async def _send(self, lane: Lane, delivery: outbox.Claimed) -> None:
        try:
            result = await self.sender.send(delivery, pool=lane.subscription_id)
        except Exception as exc:  # a bug here must not leak the lane
            log.exception("sending %s failed", delivery.id)
            result = outbox.Result(delivery, self.clock(), None, f"internal error: {exc}", 0.0)
        lane.finished(delivery.id)
        self.results.append(result)
        # Book at once: the delivery log shows the outcome as soon as it is known. Results that
        # arrive while a booking runs are booked together in the next one (bulk under load).
        self._book_wake.set()
        self._pump(lane)
        if lane.spilled and lane.hungry():
            self._claim_wake.set()

    # -- loops ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Dispatch until cancelled; on the way out, book what was sent and give back what was not."""
        await self._refresh()
        loops = [asyncio.create_task(loop()) for loop in (self._claim_forever, self._book_forever,
                                                          self._refresh_forever)]
        try:
            await asyncio.gather(*loops)
        finally:
            for task in [*loops, *self._tasks]:
                task.cancel()
            self._shutdown()

    def _shutdown(self) -> None:
        pending = [d for lane in self.lanes.values() for d in lane.ready]
        try:
            if self.results:
                outbox.record(self.engine, self.results, self.policy)
            outbox.release(self.engine, [d.id for d in [*pending, *self.releases]], self.token)
        except Exception:  # the leases lapse instead and the deliveries go again, same webhook-id
            log.exception("booking on shutdown failed")

    def _sleep_for(self, now: datetime) -> float:
        dues = [lane.next_due for lane in self.lanes.values() if lane.next_due is not None and lane.free()]
        if not dues:
            return self.idle_poll_s
        return max(0.0, min(self.idle_poll_s, (min(dues) - now).total_seconds()))

    async def _claim_forever(self) -> None:
        await _guarded("claiming deliveries", self._claim_loop)

    async def _claim_loop(self) -> None:
        swept = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._claim_wake.wait(), self._sleep_for(self.clock()))
            self._claim_wake.clear()
            now = self.clock()
            sweep = time.monotonic() - swept >= self.idle_poll_s
            # A round is due when a lane needs one: its backlog is about to run dry in memory, a
            # retry fell due, or the sweep (lapsed leases, rows written by others). Every other
            # lane with a backlog has its window topped up in the same statement.
            needed = any(lane.free() and (sweep or (lane.spilled and lane.hungry())
                                          or (lane.next_due is not None and lane.next_due <= now))
                         for lane in self.lanes.values())
            if sweep:
                swept = time.monotonic()
            if not needed:
                continue
            asks: dict[UUID, int] = {}
            for sid, lane in self.lanes.items():
                free = lane.free()
                if free and (sweep or lane.spilled or (lane.next_due is not None and lane.next_due <= now)):
                    asks[sid] = free
            spills = {sid: self.lanes[sid].spills for sid in asks}
            for sid in asks:
                self.lanes[sid].next_due = None
            try:
                claimed = await self.db.run("claim", outbox.claim, self.engine, now, asks, self.policy, self.token)
            except Exception:
                log.exception("claiming deliveries failed; retrying")
                await asyncio.sleep(self.idle_poll_s)
                continue
            got: dict[UUID, list[outbox.Claimed]] = {}
            for delivery in claimed:
                got.setdefault(delivery.subscription_id, []).append(delivery)
            for sid, n in asks.items():
                claimer = self.lanes.get(sid)
                if claimer is None:  # closed while the claim ran; its rows were cancelled with it
                    continue
                lane = claimer
                mine = got.get(sid, [])
                lane.offer(mine)
                if len(mine) < n:
                    lane.drained(spills[sid])
                else:
                    lane.spill()  # as many as asked: more may be due behind them, claimed as the lane sends
                self._pump(lane)

    async def _book_forever(self) -> None:
        await _guarded("booking deliveries", self._book_loop)

    async def _book_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._book_wake.wait(), self.book_every_s)
            self._book_wake.clear()
            batch, self.results = self.results[:self.book_max], self.results[self.book_max:]
            releases, self.releases = self.releases, []
            if batch:
                await self._book(batch)
            if releases:
                try:
                    await self.db.run("release", outbox.release, self.engine, [d.id for d in releases], self.token)
                except Exception:  # their leases lapse instead
                    log.exception("giving back %d buffered deliveries failed", len(releases))
                self._claim_wake.set()

    async def _book(self, batch: list[outbox.Result]) -> None:
        try:
            booked = await self.db.run("book", outbox.record, self.engine, batch, self.policy)
        except Exception:
            # The leases lapse and the deliveries go again with the same webhook-id.
            log.exception("booking %d delivery results failed", len(batch))
            booked = []
        for result in batch:
            lane = self.lanes.get(result.delivery.subscription_id)
            if lane is not None:
                lane.booked()
        for item in booked:
            metrics.DELIVERIES.labels(item.outcome).inc()
            result = item.result
            if item.outcome == "succeeded":
                metrics.DELIVERY_LATENCY.observe(
                    max(0.0, (result.at - result.delivery.created_at).total_seconds()) + result.duration_ms / 1000
                )
            elif item.outcome == "retrying" and item.next_attempt_at is not None:
                lane = self.lanes.get(result.delivery.subscription_id)
                if lane is not None:
                    lane.retry_at(item.next_attempt_at)
            elif item.outcome in ("gone", "failed"):
                self._refresh_wake.set()  # the subscription may be disabled now
        self._claim_wake.set()

    async def _refresh_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_wake.wait(), self.refresh_s)
            self._refresh_wake.clear()
            try:
                await self._refresh()
            except Exception:
                log.exception("reading subscriptions failed")

    async def _refresh(self) -> None:
        """Lanes for active subscriptions; a disabled or deleted one's lane and pool are closed."""
        active = await self.db.run("subscriptions", outbox.active_subscriptions, self.engine)
        for sid in active:
            lane = self._lane(sid)
            lane.active = True
        for sid, lane in list(self.lanes.items()):
            if sid not in active:
                lane.close()
                if not lane.in_flight:
                    del self.lanes[sid]
                    await self.sender.drop(sid)


async def _guarded(what: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run a dispatcher loop; a bug in it is logged and the loop starts again, the worker goes on."""
    while True:
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; starting again", what)
            await asyncio.sleep(1.0)
