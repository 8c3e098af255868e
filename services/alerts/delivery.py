"""Webhook delivery: signed requests from the outbox, each endpoint with its own lanes.

`Sender` signs a message with the `standardwebhooks` package and POSTs it through an
aiohttp session whose resolver enforces the egress policy on every connection.
`Dispatcher` leases due deliveries (at most `endpoint_concurrency` in flight per
subscription, so a slow or dead endpoint only ever holds its own lanes), sends them
concurrently, and books the results in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from uuid import UUID

import aiohttp
from sqlalchemy import Engine
from standardwebhooks import Webhook

from services.alerts import metrics, outbox, statements
from services.alerts.egress import EgressPolicy, EgressRefused

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
USER_AGENT = "accordwatch-webhooks/1"


def message_id(delivery_id: UUID) -> str:
    """The `webhook-id` of a delivery: the same on every retry."""
    return f"msg_{delivery_id.hex}"


def signed_headers(secret: str, msg_id: str, payload: str, at: datetime) -> dict[str, str]:
    """Standard Webhooks headers for one attempt."""
    signature = Webhook(secret).sign(msg_id, at.astimezone(UTC), payload)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` header (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class Sender:
    """Signs and sends single webhook requests, refusing forbidden destinations."""

    def __init__(self, policy: EgressPolicy, timeout_s: float, clock: Clock) -> None:
        self.policy = policy
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(resolver=self.policy.resolver(), limit=0, ttl_dns_cache=10)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, delivery: outbox.Claimed) -> outbox.Result:
        """One attempt; never raises for the endpoint's sake, the result says what happened."""
        assert self._session is not None, "Sender.start() first"
        at = self.clock()
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            target = self.policy.parse(delivery.url)
            if target.literal is not None:
                self.policy.check_address(target.host, target.literal)
            headers = signed_headers(delivery.secret, message_id(delivery.id), delivery.payload, at)
            async with self._session.post(
                delivery.url, data=delivery.payload.encode(), headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                retry_after = retry_after_seconds(response.headers.get("retry-after"), at)
                await response.read()
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
        except EgressRefused as exc:
            error = f"refused: {exc}"
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error if isinstance(exc.os_error, EgressRefused) else exc
            error = f"refused: {cause}" if isinstance(cause, EgressRefused) else f"cannot connect: {exc}"
        except TimeoutError:
            error = f"no answer within {self.timeout.total:g}s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        return outbox.Result(delivery, at, status, error, (time.perf_counter() - started) * 1000, retry_after)


class Dispatcher:
    """Leases due deliveries, sends them with per-endpoint lanes, books the outcomes."""

    def __init__(
        self,
        engine: Engine,
        sender: Sender,
        policy: outbox.Policy,
        *,
        concurrency: int,
        clock: Clock,
        idle_poll_s: float = 0.5,
    ) -> None:
        self.engine = engine
        self.sender = sender
        self.policy = policy
        self.concurrency = concurrency
        self.clock = clock
        self.idle_poll_s = idle_poll_s
        self.in_flight: Counter[UUID] = Counter()
        self._wake = asyncio.Event()
        self._results: asyncio.Queue[outbox.Result] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Something may be due now (new outbox rows, or a lane freed up)."""
        self._wake.set()

    def capacity(self, subscription_id: UUID) -> int:
        return self.concurrency - self.in_flight[subscription_id]

    async def run(self) -> None:
        """Dispatch until cancelled."""
        booker = asyncio.create_task(self._book_forever())
        try:
            while True:
                self._wake.clear()
                try:
                    with statements.role("claim"):
                        claimed = await asyncio.to_thread(outbox.claim, self.engine, self.clock(), self.capacity,
                                                          self.policy)
                except Exception:
                    log.exception("claiming deliveries failed; retrying")
                    claimed = []
                for delivery in claimed:
                    self.in_flight[delivery.subscription_id] += 1
                    task = asyncio.create_task(self._deliver(delivery))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.idle_poll_s)
        finally:
            booker.cancel()
            for task in list(self._tasks):
                task.cancel()

    async def _deliver(self, delivery: outbox.Claimed) -> None:
        try:
            result = await self.sender.send(delivery)
        except Exception as exc:  # a bug here must not leak the lane
            log.exception("sending %s failed", delivery.id)
            result = outbox.Result(delivery, self.clock(), None, f"internal error: {exc}", 0.0)
        await self._results.put(result)

    async def _book_forever(self) -> None:
        while True:
            batch = [await self._results.get()]
            while not self._results.empty() and len(batch) < 500:
                batch.append(self._results.get_nowait())
            try:
                with statements.role("book"):
                    booked = await asyncio.to_thread(outbox.record, self.engine, batch, self.policy)
            except Exception:
                # The leases lapse and the deliveries go again with the same webhook-id.
                log.exception("booking %d delivery results failed", len(batch))
                booked = []
            for result in batch:
                self.in_flight[result.delivery.subscription_id] -= 1
            for item in booked:
                metrics.DELIVERIES.labels(item.outcome).inc()
                if item.outcome == "succeeded":
                    metrics.DELIVERY_LATENCY.observe(
                        max(0.0, (item.result.at - item.result.delivery.created_at).total_seconds())
                        + item.result.duration_ms / 1000
                    )
            self.wake()
