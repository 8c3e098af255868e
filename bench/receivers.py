"""The benchmark's webhook receivers: one process, many endpoints, every signature verified.

Cheaper than an aiohttp application so that 2,000 requests a second leave the worker
room on a 2-core machine: uvloop, the httptools parser on a bare asyncio protocol,
keep-alive, a prepared response. Each endpoint (a path) verifies with its subscription's
secret through `standardwebhooks` and records (path, subject, webhook-id, time) of every
verified request it accepts. An endpoint's mode says how it answers:

- `ok`: verify, record, 204;
- `hang`: answer 204 after 10 s (the worker gives up first);
- `fail`: 500 to everything;
- `maintenance`: 503 with `Retry-After` at a fixed moment (an HTTP date), nothing recorded.

The parent drives it through a pipe: ("modes", {path: mode}), ("retry_after", epoch),
("secret", path, secret), ("listen", bool), ("report",) -> {seen, bad, requests}, ("stop",).
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import Any

HANG_S = 10.0
NO_CONTENT = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
FAILED = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
UNAUTHORIZED = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


class Endpoints:
    """What each path does, and what the receivers saw."""

    def __init__(self, secrets: dict[str, str]) -> None:
        from standardwebhooks import Webhook

        self._webhook = Webhook
        self.hooks = {path: Webhook(secret) for path, secret in secrets.items()}
        self.modes: dict[str, str] = dict.fromkeys(secrets, "ok")
        self.seen: list[tuple[str, str, str, float]] = []
        self.bad = 0
        self.requests = 0
        self.retry_after = b""

    def set_secret(self, path: str, secret: str) -> None:
        self.hooks[path] = self._webhook(secret)
        self.modes.setdefault(path, "ok")

    def set_retry_after(self, epoch: float) -> None:
        stamp = formatdate(epoch, usegmt=True).encode()
        self.retry_after = (b"HTTP/1.1 503 Service Unavailable\r\nretry-after: " + stamp
                            + b"\r\ncontent-length: 0\r\n\r\n")

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[bytes, float]:
        """The response to send and how long to wait before sending it."""
        self.requests += 1
        mode = self.modes.get(path)
        if mode is None:
            return NOT_FOUND, 0.0
        if mode == "hang":
            return NO_CONTENT, HANG_S
        if mode == "fail":
            return FAILED, 0.0
        if mode == "maintenance":
            return self.retry_after, 0.0
        at = time.time()
        try:
            doc = self.hooks[path].verify(body, headers)
        except Exception:
            self.bad += 1
            return UNAUTHORIZED, 0.0
        data = doc.get("data", {})
        self.seen.append((path, str(data.get("subject", "")), headers.get("webhook-id", ""), at))
        return NO_CONTENT, 0.0


class _Connection(asyncio.Protocol):
    def __init__(self, endpoints: Endpoints) -> None:
        import httptools

        self.endpoints = endpoints
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.error = httptools.HttpParserError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except self.error:
            if self.transport is not None:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0].decode()
        response, delay = self.endpoints.answer(path, self.headers, b"".join(self.body))
        self.url, self.headers, self.body = b"", {}, []
        transport = self.transport
        if transport is None:
            return
        if delay:
            asyncio.get_running_loop().call_later(delay, _send, transport, response)
        else:
            transport.write(response)


def _send(transport: asyncio.Transport, response: bytes) -> None:
    if not transport.is_closing():
        transport.write(response)


def receiver_main(port: int, secrets: dict[str, str], conn: Any) -> None:
    """The receiver process: serve `secrets`' paths on 127.0.0.1:`port`, obey the pipe."""
    import uvloop

    endpoints = Endpoints(secrets)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server: asyncio.Server | None = None

        async def listen(on: bool) -> None:
            nonlocal server
            if on and server is None:
                server = await loop.create_server(lambda: _Connection(endpoints), "127.0.0.1", port,
                                                  reuse_address=True, backlog=1024)
            elif not on and server is not None:
                server.close()
                server = None

        await listen(True)
        conn.send("ready")
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            kind = command[0]
            if kind == "report":
                conn.send({"seen": endpoints.seen, "bad": endpoints.bad, "requests": endpoints.requests})
                endpoints.seen = []
            elif kind == "modes":
                endpoints.modes.update(command[1])
                conn.send("ok")
            elif kind == "retry_after":
                endpoints.set_retry_after(command[1])
                conn.send("ok")
            elif kind == "secret":
                endpoints.set_secret(command[1], command[2])
                conn.send("ok")
            elif kind == "listen":
                await listen(bool(command[1]))
                conn.send("ok")
            elif kind == "stop":
                await listen(False)
                break

    uvloop.run(serve())
