"""Webhook delivery: signed requests, each subscriber through its own connection pool.

`Sender` signs a message with the `standardwebhooks` package and POSTs it through an
aiohttp session whose resolver enforces the egress policy on every connection (a literal
host is requested in the canonical form that was checked), and reads at most
`max_response_bytes` of what the receiver answers. The
dispatcher gives each subscription a pool of its own (at most `pool_size` connections),
so an endpoint that hangs holds only its own connections; `services.alerts.dispatcher`
decides what is sent when.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from uuid import UUID

import aiohttp
from standardwebhooks import Webhook
from yarl import URL

from services.alerts import outbox
from services.alerts.egress import EgressPolicy, EgressRefused, connect_url
from services.alerts.sealing import Sealer, SecretUnreadable, signing_secrets

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
USER_AGENT = "accordwatch-webhooks/1"


def message_id(delivery_id: UUID) -> str:
    """The `webhook-id` of a delivery: the same on every retry."""
    return f"msg_{delivery_id.hex}"


def signed_headers(secrets: Sequence[str], msg_id: str, payload: str, at: datetime) -> dict[str, str]:
    """Standard Webhooks headers for one attempt: one signature per secret, space-separated."""
    signatures = " ".join(_signer(secret).sign(msg_id, at.astimezone(UTC), payload) for secret in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


@lru_cache(maxsize=4096)
def _signer(secret: str) -> Webhook:
    """A secret's signer, decoded once (the hot path signs thousands a second with a few secrets)."""
    return Webhook(secret)


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


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> int:
    """Read at most `limit` bytes of a response body; a longer one is cut off and its connection closed."""
    read = 0
    while read <= limit:
        chunk = await response.content.read(min(65536, limit + 1 - read))
        if not chunk:
            return read
        read += len(chunk)
    response.close()  # never drain the rest: close the connection instead
    return read


class Sender:
    """Signs and sends single webhook requests, refusing forbidden destinations."""

    def __init__(self, policy: EgressPolicy, sealer: Sealer, timeout_s: float, clock: Clock, *, pool_size: int = 16,
                 max_response_bytes: int = 65536) -> None:
        self.policy = policy
        self.sealer = sealer
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.clock = clock
        self.pool_size = pool_size
        self.max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None
        self._pools: dict[UUID, aiohttp.ClientSession] = {}
        self._checked: dict[str, tuple[URL, dict[str, str]]] = {}

    def _new_session(self, limit: int) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(resolver=self.policy.resolver(), limit=limit, ttl_dns_cache=10)
        return aiohttp.ClientSession(connector=connector, timeout=self.timeout)

    async def start(self) -> None:
        self._session = self._new_session(0)

    async def close(self) -> None:
        for pool in [self._session, *self._pools.values()]:
            if pool is not None:
                await pool.close()
        self._session = None
        self._pools.clear()

    async def drop(self, pool: UUID) -> None:
        """Close a subscription's pool (it was disabled or deleted)."""
        session = self._pools.pop(pool, None)
        if session is not None:
            await session.close()

    def _pool(self, pool: UUID | None) -> aiohttp.ClientSession:
        if pool is None:
            assert self._session is not None, "Sender.start() first"
            return self._session
        session = self._pools.get(pool)
        if session is None or session.closed:
            session = self._pools[pool] = self._new_session(self.pool_size)
        return session

    def _check(self, url: str) -> tuple[URL, dict[str, str]]:
        """A URL's shape, a literal address against the policy (names are checked when they resolve),
        and what to request: a literal in the canonical form that was checked, with the Host it had."""
        checked = self._checked.get(url)
        if checked is not None:
            return checked
        target = self.policy.parse(url)
        if target.literal is not None:
            self.policy.check_address(target.host, target.literal)
        if len(self._checked) > 4096:
            self._checked.clear()
        connect, extra = connect_url(target)
        checked = self._checked[url] = (URL(connect, encoded=True) if extra else URL(url), extra)
        return checked

    async def send(self, delivery: outbox.Claimed, *, pool: UUID | None = None) -> outbox.Result:
        """One attempt (through `pool`'s connections if given); never raises for the endpoint's sake."""
        session = self._pool(pool)
        at = self.clock()
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            url, extra = self._check(delivery.url)
            secrets = signing_secrets(self.sealer, delivery.secret, delivery.previous_secret,
                                      delivery.previous_secret_until, at)
            headers = signed_headers(secrets, message_id(delivery.id), delivery.payload, at)
            if extra:
                headers = {**headers, **extra}
            async with session.post(
                url, data=delivery.payload.encode(), headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                retry_after = retry_after_seconds(response.headers.get("retry-after"), at)
                await read_capped(response, self.max_response_bytes)
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
        except SecretUnreadable as exc:
            error = f"cannot sign: {exc}"
        return outbox.Result(delivery, at, status, error, (time.perf_counter() - started) * 1000, retry_after)
