"""The alerts worker against a hostile receiver: an endless answer costs it at most a small, fixed read."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import Broker, RunningStack, make_stack, wait_for
from tests.samples import event

pytestmark = [pytest.mark.kafka, pytest.mark.stack]

GIB = 1024**3
CHUNK = b"x" * (1024 * 1024)


class Flood:
    """A receiver that answers every POST 200 with a 1 GiB body, streamed; counts what it got out."""

    def __init__(self) -> None:
        self.port = 0
        self.requests = 0
        self.bytes_written = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.requests += 1
        response = web.StreamResponse(status=200, headers={"content-type": "application/octet-stream",
                                                           "content-length": str(GIB)})
        await response.prepare(request)
        try:
            for _ in range(GIB // len(CHUNK)):
                await response.write(CHUNK)
                self.bytes_written += len(CHUNK)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: exactly what it should do
        return response

    def start(self) -> None:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = int(runner.addresses[0][1])
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="flood-receiver", daemon=True)
        self._thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def flood() -> Iterator[Flood]:
    server = Flood()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hooks_stack(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = make_stack(kafka, tmp_path_factory.mktemp("egress-e2e"),
                         services=("ingest", "alerts-worker", "alerts-api"),
                         env={"ACCORDWATCH_WEBHOOK_TIMEOUT_S": "30"})
    try:
        yield running
    finally:
        running.close()


def test_a_receiver_streaming_1_gib_grows_the_worker_by_less_than_50_mb(hooks_stack: RunningStack,
                                                                        flood: Flood) -> None:
    created = hooks_stack.alerts.post("/v1/subscriptions", json={"url": f"http://127.0.0.1:{flood.port}/hook",
                                                                  "severities": ["critical"]})
    assert created.status_code == 201, created.text
    worker = hooks_stack.stack.services["alerts-worker"].pid
    assert worker is not None
    baseline = rss_bytes(worker)
    peak = baseline
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_bytes(worker))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        hooks_stack.post(event("StayRequested", subject="flood-v-accordwatch",
                               occurred_at=datetime.now(UTC).isoformat(timespec="seconds")))
        sub = created.json()["id"]
        done = wait_for(lambda: [d for d in hooks_stack.alerts.get(f"/v1/subscriptions/{sub}/deliveries").json()
                                 ["items"] if d["status"] != "pending"], timeout=90,
                        what="the delivery to the flooding receiver to be booked")
    finally:
        stop.set()
        sampler.join(5)
    assert flood.requests >= 1
    assert done[0]["status"] == "succeeded", done[0]  # a 200 is a 200, however long the body it came with
    grown = peak - baseline
    print(f"\nalerts worker RSS {baseline / 2**20:.1f} MB -> peak {peak / 2**20:.1f} MB; "
          f"the receiver got {flood.bytes_written / 2**20:.0f} MB of its 1 GiB out")
    assert grown < 50 * 2**20, f"the worker grew by {grown / 2**20:.1f} MB"
    assert flood.bytes_written < 200 * 2**20, "the worker hung up long before the end of the body"
