"""A real webhook receiver on 127.0.0.1 that verifies every signature with `standardwebhooks`.

It runs an aiohttp server on its own thread and event loop, so sync and async tests can
use it alike. Each endpoint (a path) has the subscription's secret and a behaviour:
answer 2xx, fail N times first, answer 410, hang, or answer with Retry-After. Every
request is recorded with whether its signature verified.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    webhook_id: str
    verified: bool
    body: dict[str, Any]
    status: int
    at: float
    raw: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Endpoint:
    """How one path answers."""

    secret: str | None = None
    fail_first: int = 0
    fail_status: int = 500
    status: int = 204
    hang_s: float = 0.0
    hang_first_s: float = 0.0
    """Hold the first request of each webhook-id this long (a slow first attempt), answer the others at once."""
    retry_after: str | None = None
    requests: int = 0
    seen: set[str] = field(default_factory=set)


@dataclass
class Receiver:
    """The server, its endpoints and everything it received."""

    port: int = 0
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    arrived: list[tuple[str, str, float]] = field(default_factory=list)
    """(path, webhook-id, time) of every request as it came in, before any answer."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_verified: Callable[[Received], None] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def endpoint(self, path: str, **behaviour: Any) -> str:
        """Register (or change) an endpoint; returns its URL."""
        with self.lock:
            current = self.endpoints.setdefault(path, Endpoint())
            for name, value in behaviour.items():
                setattr(current, name, value)
        return self.url(path)

    def verified(self, path: str | None = None, kind: str | None = None) -> list[Received]:
        """Verified requests answered 2xx (optionally for one path and one body type)."""
        with self.lock:
            return [
                r for r in self.received
                if r.verified and 200 <= r.status < 300 and (path is None or r.path == path)
                and (kind is None or r.body.get("type") == kind)
            ]

    def all(self, path: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if path is None or r.path == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        first = False
        with self.lock:
            self.arrived.append((request.path, webhook_id, time.time()))
            ep = self.endpoints.get(request.path)
            if ep is not None:
                ep.requests += 1
                n = ep.requests
                first = webhook_id not in ep.seen
                ep.seen.add(webhook_id)
        if ep is None:
            return web.Response(status=404)
        verified = False
        body: Any = {}
        if ep.secret:
            try:
                body = Webhook(ep.secret).verify(raw, dict(request.headers)) or {}
                verified = True
            except WebhookVerificationError:
                verified = False
        if ep.hang_s:
            await asyncio.sleep(ep.hang_s)  # a slow endpoint, on purpose
        if ep.hang_first_s and first:
            await asyncio.sleep(ep.hang_first_s)
        if not verified:
            status = 401
        elif n <= ep.fail_first:
            status = ep.fail_status
        else:
            status = ep.status
        if not verified:
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
        item = Received(request.path, webhook_id, verified,
                        body if isinstance(body, dict) else {}, status, time.time(), raw, dict(request.headers))
        with self.lock:
            self.received.append(item)
        if verified and 200 <= status < 300 and self.on_verified is not None:
            self.on_verified(item)
        headers = {"Retry-After": ep.retry_after} if ep.retry_after and status >= 400 else None
        return web.Response(status=status, headers=headers)


class ReceiverServer:
    """Runs a Receiver on a thread; start() / stop() may be called again (down, then up)."""

    def __init__(self, port: int = 0) -> None:
        self.receiver = Receiver(port=port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> Receiver:
        ready = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("POST", "/{tail:.*}", self.receiver._handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
            self._runner = runner
            try:
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, "127.0.0.1", self.receiver.port, reuse_address=True)
                loop.run_until_complete(site.start())
                self.receiver.port = int(runner.addresses[0][1])
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the receiver did not start")
        if errors:
            raise errors[0]
        return self.receiver

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = self._thread = self._runner = None
