"""Ingest benchmark: HTTP -> Kafka, beside a raw aiokafka producer on the same broker.

Starts its own broker and ingest process on free ports (127.0.0.1 only), then measures:
single-event POSTs with 64 concurrent clients, batches of 1,000 events, and a raw
aiokafka producer (acks=all, idempotent) sending the same records. Prints and writes JSON.

    .venv/bin/python bench/ingest.py [--events 20000] [--batch-events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from common import Timer, latency_ms, proc_memory_mb, write_results

from schemas.cloudevents import to_record
from schemas.registry import parse_event
from services.platform.auth import new_key
from services.platform.kafka import make_producer
from services.stack.broker import TopicSpec, ensure_topics
from services.stack.local import LocalStack, Ports
from tests.workload import realistic_events


async def single_posts(url: str, key: str, docs: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    bodies = [orjson.dumps(d) for d in docs]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(bodies)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def client(session: aiohttp.ClientSession) -> None:
        for body in queue:
            started = time.perf_counter()
            async with session.post(f"{url}/v1/events", data=body, headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        with Timer() as timer:
            await asyncio.gather(*(client(session) for _ in range(clients)))
    return {"events": len(bodies), "clients": clients, "seconds": round(timer.seconds, 3),
            "events_per_s": round(len(bodies) / timer.seconds), "latency_ms": latency_ms(latencies),
            "statuses": statuses}


async def batch_posts(url: str, key: str, docs: list[dict[str, Any]], size: int, clients: int) -> dict[str, Any]:
    bodies = [orjson.dumps({"events": docs[i:i + size]}) for i in range(0, len(docs), size)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(bodies)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def client(session: aiohttp.ClientSession) -> None:
        for body in queue:
            started = time.perf_counter()
            async with session.post(f"{url}/v1/events/batch", data=body, headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        with Timer() as timer:
            await asyncio.gather(*(client(session) for _ in range(clients)))
    return {"events": len(docs), "batch_size": size, "clients": clients, "seconds": round(timer.seconds, 3),
            "events_per_s": round(len(docs) / timer.seconds), "request_latency_ms": latency_ms(latencies),
            "statuses": statuses}


async def raw_producer(
    bootstrap: str, topic: str, docs: list[dict[str, Any]], size: int, *, validate: bool
) -> dict[str, Any]:
    """The baseline: the same records sent with acks=all; validated and mapped in the loop as
    ingest does (`validate`), or encoded beforehand (the broker and client alone)."""
    now = datetime.now(UTC).isoformat()

    def encode(chunk: list[dict[str, Any]]) -> list[Any]:
        return [to_record(parse_event({**d, "recorded_at": now}), source="bench") for d in chunk]

    chunks = [docs[i:i + size] for i in range(0, len(docs), size)]
    encoded = None if validate else [encode(c) for c in chunks]
    producer = make_producer(bootstrap, client_id="bench-raw")
    await producer.start()
    latencies: list[float] = []
    try:
        with Timer() as timer:
            for n, chunk in enumerate(chunks):
                began = time.perf_counter()
                records = encode(chunk) if encoded is None else encoded[n]
                futures = [await producer.send(topic, r.value, key=r.key, headers=r.headers) for r in records]
                await asyncio.gather(*futures)
                latencies.append(time.perf_counter() - began)
    finally:
        await producer.stop()
    return {"events": len(docs), "batch_size": size, "seconds": round(timer.seconds, 3),
            "events_per_s": round(len(docs) / timer.seconds), "batch_latency_ms": latency_ms(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events for the single-POST run")
    parser.add_argument("--batch-events", type=int, default=100_000, help="events for the batch runs")
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="accordwatch-bench-ingest-"))
    key = new_key()
    stack = LocalStack(home=home, ports=Ports.free(), dev_key=key,
                       extra_env={"ACCORDWATCH_LOG_LEVEL": "warning"})
    try:
        stack.start_broker()
        asyncio.run(ensure_topics(stack.bootstrap, [TopicSpec("bench.raw", 6, {"retention.ms": "-1"})]))
        stack.start(("ingest",))
        url = stack.urls["ingest"]
        singles = list(realistic_events(args.events, seed=1))
        batch_docs = list(realistic_events(args.batch_events, seed=2))
        asyncio.run(single_posts(url, key, singles[:2000], args.clients))  # warm-up
        results: dict[str, Any] = {}
        results["single_post"] = asyncio.run(single_posts(url, key, singles, args.clients))
        results["batch_post"] = asyncio.run(batch_posts(url, key, batch_docs, 1000, 4))
        results["raw_producer"] = asyncio.run(
            raw_producer(stack.bootstrap, "bench.raw", batch_docs, 1000, validate=True))
        results["raw_producer_preencoded"] = asyncio.run(
            raw_producer(stack.bootstrap, "bench.raw", batch_docs, 1000, validate=False))
        results["batch_vs_raw"] = round(results["batch_post"]["events_per_s"]
                                        / results["raw_producer"]["events_per_s"], 3)
        pid = stack.services["ingest"].pid
        assert pid is not None
        results["ingest_memory_mb"] = proc_memory_mb(pid)
        results["goals"] = {
            "single_post_events_per_s>=2000": results["single_post"]["events_per_s"] >= 2000,
            "single_post_p99_ms<=50": results["single_post"]["latency_ms"]["p99"] <= 50,
            "batch_events_per_s>=20000": results["batch_post"]["events_per_s"] >= 20_000,
            "batch_vs_raw>=0.5": results["batch_vs_raw"] >= 0.5,
        }
        write_results("ingest", results)
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
