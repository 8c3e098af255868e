"""Per-subscriber lanes: what each subscriber has in memory, in flight, and may take on (no I/O).

A lane has at most `concurrency` requests in flight and a window of `concurrency + buffer`
deliveries leased to it (queued, in flight, or sent and not yet booked). Fresh
deliveries are handed to it by the alert transaction that wrote them (leased to this
dispatcher in that same transaction) while its window has room and nothing older waits
in the database; otherwise they stay in the database ("spilled") and come back through
claims, which never ask for more than the room left in the lane's window. So a
subscriber that hangs fills only its own lanes and window, and its backlog costs other
subscribers nothing: not memory, not claim rows, not connections.

A healthy lane that spilled (a burst larger than its window, a slow moment of the
worker) is fed by claims at the speed it sends: a claim refills its whole window and the
next one is asked for as soon as fewer than a lane-full wait in memory, before the lane
runs dry. (Claims that only refilled free lanes, once every result was booked, made a
spilled lane crawl: one burst cost every subscriber seconds.)

Dispatch order per lane is first in, first out: hand-offs in write order, claims in due
time, creation, write order; once a lane has spilled, new deliveries spill behind the
backlog until a claim finds no more due rows for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from services.alerts.outbox import Claimed


@dataclass(slots=True)
class Lane:
    """One subscriber's in-memory queue and its counters."""

    subscription_id: UUID
    concurrency: int
    buffer: int
    ready: deque[Claimed] = field(default_factory=deque)
    known: set[UUID] = field(default_factory=set)
    in_flight: int = 0
    unbooked: int = 0
    reserved: int = 0
    spilled: bool = False
    spills: int = 0
    next_due: datetime | None = None
    active: bool = True

    def held(self) -> int:
        """Deliveries leased to this lane: queued, in flight, or sent and not yet booked."""
        return len(self.ready) + self.in_flight + self.unbooked

    def free(self) -> int:
        """How many more deliveries a claim may lease for this lane: the room left in its window, never more.

        A hand-off in progress (`reserved`) does not hold claims back: memory stays bounded by
        one window plus one hand-off's worth, and due retries are not starved by busy batches.
        A lane that hangs has its window full (lanes in flight, buffer queued) and asks nothing.
        """
        if not self.active:
            return 0
        return max(0, self.concurrency + self.buffer - self.held())

    def hungry(self) -> bool:
        """Fewer than a lane-full wait in memory and the window has room: time to claim the next part of a backlog."""
        return len(self.ready) < self.concurrency and self.free() > 0

    def room(self) -> int:
        """How many fresh deliveries the alert transaction may hand over (0 while a backlog waits in the database)."""
        if not self.active or self.spilled:
            return 0
        return max(0, self.concurrency + self.buffer - self.held() - self.reserved)

    def offer(self, deliveries: Iterable[Claimed]) -> int:
        """Queue leased deliveries (once each); returns how many were new."""
        added = 0
        for delivery in deliveries:
            if delivery.id in self.known:
                continue
            self.known.add(delivery.id)
            self.ready.append(delivery)
            added += 1
        return added

    def take(self, now: datetime, margin: timedelta) -> Iterator[Claimed]:
        """Deliveries to start now, while lanes are free; a lease about to lapse is not sent (see `expired`)."""
        while self.ready and self.in_flight < self.concurrency:
            delivery = self.ready[0]
            if delivery.lease_until is not None and delivery.lease_until - now < margin:
                return
            self.ready.popleft()
            self.in_flight += 1
            yield delivery

    def expired(self, now: datetime, margin: timedelta) -> list[Claimed]:
        """Take out buffered deliveries whose lease would lapse mid-request: they go back to the database."""
        keep: deque[Claimed] = deque()
        out: list[Claimed] = []
        for delivery in self.ready:
            if delivery.lease_until is not None and delivery.lease_until - now < margin:
                out.append(delivery)
                self.known.discard(delivery.id)
            else:
                keep.append(delivery)
        if out:
            self.ready = keep
            self.spill()
        return out

    def finished(self, delivery_id: UUID) -> None:
        """A request ended: the lane may send again; its row stays leased until the result is booked."""
        self.in_flight -= 1
        self.unbooked += 1
        self.known.discard(delivery_id)

    def booked(self) -> None:
        """A result of this lane was booked: its row is no longer leased to us."""
        self.unbooked -= 1

    def spill(self) -> None:
        """Something of this lane waits in the database: newer deliveries queue behind it there."""
        self.spilled = True
        self.spills += 1

    def drained(self, spills_seen: int) -> None:
        """A claim found no more due rows; unless something spilled since it began, hand-offs resume."""
        if self.spills == spills_seen:
            self.spilled = False

    def retry_at(self, when: datetime) -> None:
        """A retry of this lane falls due at `when`."""
        if self.next_due is None or when < self.next_due:
            self.next_due = when

    def close(self) -> list[Claimed]:
        """The subscription is gone or disabled: drop what waits (the database cancelled it)."""
        self.active = False
        dropped = list(self.ready)
        self.ready.clear()
        for delivery in dropped:
            self.known.discard(delivery.id)
        return dropped
