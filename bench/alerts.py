"""Alerts benchmark: ingest's 202 -> a verified webhook on loopback, with 20 subscribers.

In one run, on its own broker (127.0.0.1, free ports) with the whole stack running:
(0) baseline: the bench itself signs and POSTs the same number of webhooks straight to
    the receiver, at the same rate: the floor of loopback HTTP plus verification;
(a) a steady stream of StayRequested events (one critical alert each) at --rate events/s,
    20 subscribers: p50/p99 from each event's 202 to each verified webhook;
(b) the same with a 21st subscriber that hangs for 10 s on every request: the 20 others'
    p99, and how much the hanging one moved it.
The receiver runs in its own process and verifies every signature with `standardwebhooks`.

    .venv/bin/python bench/alerts.py [--rate 100] [--seconds 20] [--subscribers 20]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from common import latency_ms, proc_memory_mb, write_results

from services.alerts.delivery import signed_headers
from services.platform.auth import new_key
from services.stack.local import LocalStack, Ports

SOURCE = {"publisher": "bench", "url": "https://example.org/bench"}


def receiver_main(port: int, secrets: dict[str, str], hang_path: str, conn: Any) -> None:
    """The receiver process: verify, note (subject, time) per path, report on request."""
    from aiohttp import web
    from standardwebhooks import Webhook

    hooks = {path: Webhook(secret) for path, secret in secrets.items()}
    seen: list[tuple[str, str, float]] = []
    bad = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal bad
        raw = await request.read()
        at = time.time()
        if request.path == hang_path:
            await asyncio.sleep(10)
            return web.Response(status=204)
        hook = hooks.get(request.path)
        if hook is None:
            return web.Response(status=404)
        try:
            body = hook.verify(raw, dict(request.headers))
        except Exception:
            bad += 1
            return web.Response(status=401)
        seen.append((request.path, body["data"].get("subject", body["data"].get("message", "")), at))
        return web.Response(status=204)

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        conn.send("ready")
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "report":
                conn.send({"seen": list(seen), "bad": bad})
                seen.clear()
            elif command == "stop":
                break
        await runner.cleanup()

    asyncio.run(serve())


async def post_stream(ingest: str, key: str, rate: float, seconds: float, prefix: str) -> dict[str, float]:
    """POST one StayRequested per tick; subject -> time of the 202."""
    acked: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {key}"}
    interval = 1 / rate
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(subject: str) -> None:
            doc = {"type": "StayRequested", "subject": subject, "occurred_at": datetime.now(UTC).isoformat(),
                   "sources": [SOURCE], "confidence": "confirmed",
                   "data": {"requested_by": "bench", "court": "Supreme Court of the United States"}}
            async with session.post(f"{ingest}/v1/events", json=doc) as response:
                assert response.status == 202, await response.text()
            acked[subject] = time.time()

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the load, not synchronisation
            tasks.append(asyncio.create_task(one(f"{prefix}-{i}")))
        await asyncio.gather(*tasks)
    return acked


async def direct_stream(
    url_for: dict[str, str], secrets: dict[str, str], rate: float, seconds: float
) -> dict[str, float]:
    """Baseline: sign and POST the same fan-out straight to the receiver, no Kafka, no outbox."""
    sent: dict[str, float] = {}
    interval = 1 / rate
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(subject: str) -> None:
            sent[subject] = time.time()
            payload = f'{{"type":"alert.firing","timestamp":"x","data":{{"subject":"{subject}"}}}}'

            async def to(path: str) -> None:
                headers = signed_headers(secrets[path], f"msg_{uuid.uuid4().hex}", payload, datetime.now(UTC))
                async with session.post(url_for[path], data=payload.encode(), headers=headers) as response:
                    await response.read()

            await asyncio.gather(*(to(path) for path in url_for))

        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(f"direct-{i}")))
        await asyncio.gather(*tasks)
    return sent


def latencies(acked: dict[str, float], seen: list[tuple[str, str, float]], paths: set[str]) -> dict[str, Any]:
    samples = [at - acked[subject] for path, subject, at in seen if path in paths and subject in acked]
    expected = len(acked) * len(paths)
    return {"webhooks": len(samples), "expected": expected, **latency_ms(samples)}


def wait_for_count(conn: Any, want: int, timeout: float) -> list[tuple[str, str, float]]:
    deadline = time.monotonic() + timeout
    got: list[tuple[str, str, float]] = []
    while time.monotonic() < deadline:
        conn.send("report")
        report = conn.recv()
        got.extend(report["seen"])
        if len(got) >= want:
            break
        time.sleep(0.5)
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--subscribers", type=int, default=20)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="accordwatch-bench-alerts-"))
    key = new_key()
    ports = Ports.free()
    stack = LocalStack(home=home, ports=ports, dev_key=key)
    rx_port = Ports.free().ingest
    paths = [f"/s{i}" for i in range(args.subscribers)]
    hang = "/hang"
    results: dict[str, Any] = {"rate": args.rate, "seconds": args.seconds, "subscribers": args.subscribers}
    parent, child = mp.Pipe()
    receiver: mp.Process | None = None
    try:
        stack.start_broker()
        stack.start()
        api = api_client(stack.urls["alerts"], key)
        secrets: dict[str, str] = {}
        for path in paths:
            created = api("POST", "/v1/subscriptions", {"url": f"http://127.0.0.1:{rx_port}{path}",
                                                        "rules": ["stay-requested"]})
            secrets[path] = created["secret"]
        receiver = mp.Process(target=receiver_main, args=(rx_port, secrets, hang, child), daemon=True)
        receiver.start()
        assert parent.recv() == "ready"

        url_for = {path: f"http://127.0.0.1:{rx_port}{path}" for path in paths}
        sent = asyncio.run(direct_stream(url_for, secrets, args.rate, args.seconds))
        seen = wait_for_count(parent, len(sent) * len(paths), 60)
        results["baseline_direct_post"] = latencies(sent, seen, set(paths))

        acked = asyncio.run(post_stream(stack.urls["ingest"], key, args.rate, args.seconds, "calm"))
        seen = wait_for_count(parent, len(acked) * len(paths), 120)
        results["steady"] = latencies(acked, seen, set(paths))

        created = api("POST", "/v1/subscriptions", {"url": f"http://127.0.0.1:{rx_port}{hang}",
                                                    "rules": ["stay-requested"]})
        # The receiver knows the hanging path by name; its secret does not matter, it never answers in time.
        acked = asyncio.run(post_stream(stack.urls["ingest"], key, args.rate, args.seconds, "hang"))
        seen = wait_for_count(parent, len(acked) * len(paths), 120)
        results["with_hanging_subscriber"] = latencies(acked, seen, set(paths))
        api("DELETE", f"/v1/subscriptions/{created['id']}", None)

        calm_p99 = results["steady"]["p99"]
        hang_p99 = results["with_hanging_subscriber"]["p99"]
        results["hanging_moves_p99_by"] = round(hang_p99 / calm_p99 - 1, 3) if calm_p99 else None
        results["goals"] = {"p99_ms_max": 500, "hanging_moves_p99_by_max": 0.10}
        worker = stack.services["alerts-worker"]
        if worker.pid:
            results["alerts_worker_memory_mb"] = proc_memory_mb(worker.pid)
        parent.send("report")
        results["bad_signatures"] = parent.recv()["bad"]
    finally:
        if receiver is not None and receiver.is_alive():
            parent.send("stop")
            receiver.join(10)
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)
    write_results("alerts", results)


def api_client(base: str, key: str) -> Any:
    import httpx

    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def call(method: str, path: str, body: dict[str, Any] | None) -> Any:
        response = client.request(method, path, json=body)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    return call


if __name__ == "__main__":
    main()
