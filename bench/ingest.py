"""Ingest benchmark: HTTP -> Kafka, beside raw producers and Kafka's own tool on the same broker.

Starts its own broker and ingest on free ports (127.0.0.1 only). In each of `--rounds`
rounds, side by side (this machine's speed drifts between minutes; medians judge):
- single-event POSTs from `wrk` (C, Lua script bench/wrk/post.lua; 64 connections), with
  ingest on 1 and on 2 uvicorn workers, and the CPU share of wrk, ingest and the broker;
- batches of 1,000 events (wrk, 4 connections), 1 and 2 workers;
- the baselines: a raw aiokafka producer sending the same records pre-encoded (the broker
  and client alone) and one validating and mapping them in the loop as ingest does;
  Kafka's ProducerPerformance (acks=all, 400-byte records) from the project's jars.
Prints and writes JSON (bench/results/ingest-*.json), with the machine's load.

    .venv/bin/python bench/ingest.py [--seconds 10] [--batch-events 100000] [--rounds 3]

`make bench` installs wrk (Debian's package) through `scripts/setup.sh --bench`.

Goals (issue 16): batch ingest >= 0.5 of the pre-encoded raw producer; single POST
>= 5,000 events/s with p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from common import (
    CpuShare,
    Timer,
    children_cpu_seconds,
    latency_ms,
    median,
    proc_memory_mb,
    producer_performance,
    write_results,
)

from schemas.cloudevents import to_record
from schemas.registry import parse_event
from services.platform.auth import new_key
from services.platform.kafka import make_producer
from services.stack.broker import LocalBroker, TopicSpec, assemble, ensure_topics
from services.stack.local import LocalStack, Ports
from tests.workload import realistic_events

LUA = Path(__file__).resolve().parent / "wrk" / "post.lua"
RAW_TOPIC = "bench.raw"
PERF_TOPIC = "bench.perf"


def write_bodies(path: Path, docs: list[dict[str, Any]], batch: int | None) -> Path:
    """One request body per line: an event (ingest assigns the id), or {"events": [...]}."""
    bare = [{k: v for k, v in d.items() if k != "id"} for d in docs]
    with path.open("wb") as out:
        if batch is None:
            out.writelines(orjson.dumps(d) + b"\n" for d in bare)
        else:
            out.writelines(orjson.dumps({"events": bare[i:i + batch]}) + b"\n" for i in range(0, len(bare), batch))
    return path


def wrk(url: str, target: str, key: str, bodies: Path, *, connections: int, seconds: float,
        events_per_request: int, pids: dict[str, int]) -> dict[str, Any]:
    """Run wrk against `target`; its figures, events/s, and the CPU each process used meanwhile."""
    env = {"BODIES": str(bodies), "KEY": key, "TARGET": target, "PATH": "/usr/bin:/bin"}
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "30s",
               "-s", str(LUA), url]
    loadgen_before = children_cpu_seconds()
    with CpuShare(pids) as share:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=seconds + 60)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["events_per_s"] = round(figures["requests"] * events_per_request / figures["seconds"])
    figures["connections"] = connections
    figures["cpu"] = share.figures
    figures["cpu"]["wrk_cores"] = round((children_cpu_seconds() - loadgen_before) / figures["seconds"], 3)
    return figures


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


def start_ingest(stack: LocalStack, workers: int) -> dict[str, int]:
    """(Re)start ingest with `workers` uvicorn processes; the pids to watch."""
    stack.extra_env["ACCORDWATCH_INGEST_WORKERS"] = str(workers)
    proc = stack.restart("ingest")
    broker = stack.broker.proc if isinstance(stack.broker, LocalBroker) else None  # one broker here
    assert proc.pid is not None
    assert broker is not None
    return {"ingest": proc.pid, "broker": broker.pid}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run")
    parser.add_argument("--batch-events", type=int, default=100_000, help="events for the raw producer runs")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections for single POSTs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--perf-records", type=int, default=500_000, help="records for ProducerPerformance")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed: `make setup-bench` (scripts/setup.sh --bench) installs it")

    home = Path(tempfile.mkdtemp(prefix="accordwatch-bench-ingest-"))
    key = new_key()
    stack = LocalStack(home=home, ports=Ports.free(), dev_key=key,
                       extra_env={"ACCORDWATCH_LOG_LEVEL": "warning"})
    results: dict[str, Any] = {"settings": vars(args)}
    try:
        stack.start_broker()
        asyncio.run(ensure_topics(stack.bootstrap, [TopicSpec(RAW_TOPIC, 6, {"retention.ms": "-1"}),
                                                    TopicSpec(PERF_TOPIC, 6, {"retention.ms": "-1"})]))
        stack.start(("ingest",))
        singles = write_bodies(home / "single.ndjson", list(realistic_events(20_000, seed=1)), None)
        batch_docs = list(realistic_events(args.batch_events, seed=2))
        batches = write_bodies(home / "batch.ndjson", batch_docs, 1000)
        url = stack.urls["ingest"]
        rounds: list[dict[str, Any]] = []
        for n in range(args.rounds):
            row: dict[str, Any] = {}
            for workers in (1, 2):
                pids = start_ingest(stack, workers)
                wrk(url, "/v1/events", key, singles, connections=args.connections, seconds=2,
                    events_per_request=1, pids=pids)  # warm-up
                row[f"single_post_{workers}w"] = wrk(url, "/v1/events", key, singles, connections=args.connections,
                                                     seconds=args.seconds, events_per_request=1, pids=pids)
                row[f"batch_post_{workers}w"] = wrk(url, "/v1/events/batch", key, batches, connections=4,
                                                    seconds=args.seconds, events_per_request=1000, pids=pids)
                row[f"ingest_memory_mb_{workers}w"] = proc_memory_mb(pids["ingest"])
            row["raw_producer_preencoded"] = asyncio.run(
                raw_producer(stack.bootstrap, RAW_TOPIC, batch_docs, 1000, validate=False))
            row["raw_producer_validating"] = asyncio.run(
                raw_producer(stack.bootstrap, RAW_TOPIC, batch_docs, 1000, validate=True))
            row["kafka_producer_performance"] = producer_performance(
                assemble(), stack.bootstrap, PERF_TOPIC, args.perf_records, 400)
            raw = row["raw_producer_preencoded"]["events_per_s"]
            for workers in (1, 2):
                batch = row[f"batch_post_{workers}w"]["events_per_s"]
                row[f"batch_{workers}w_vs_raw_preencoded"] = round(batch / raw, 3)
            rounds.append(row)
            print(f"round {n + 1}:", json.dumps(row), flush=True)

        def med(*path: str) -> float:
            values = []
            for row in rounds:
                value: Any = row
                for part in path:
                    value = value[part]
                values.append(float(value))
            return median(values)

        summary = {
            "raw_producer_preencoded_events_per_s": med("raw_producer_preencoded", "events_per_s"),
            "raw_producer_validating_events_per_s": med("raw_producer_validating", "events_per_s"),
            "kafka_producer_performance_records_per_s": med("kafka_producer_performance", "records_per_s"),
        }
        for workers in (1, 2):
            summary |= {
                f"single_post_{workers}w_events_per_s": med(f"single_post_{workers}w", "events_per_s"),
                f"single_post_{workers}w_p99_ms": med(f"single_post_{workers}w", "p99_ms"),
                f"single_post_{workers}w_wrk_cores": med(f"single_post_{workers}w", "cpu", "wrk_cores"),
                f"single_post_{workers}w_ingest_cores": med(f"single_post_{workers}w", "cpu", "ingest_cores"),
                f"batch_post_{workers}w_events_per_s": med(f"batch_post_{workers}w", "events_per_s"),
                f"batch_{workers}w_vs_raw_preencoded": med(f"batch_{workers}w_vs_raw_preencoded"),
            }
        results["rounds"] = rounds
        results["median"] = summary
        best = max((1, 2), key=lambda w: summary[f"single_post_{w}w_events_per_s"])
        results["goals"] = {
            "batch_vs_raw_preencoded>=0.5 (1 worker)": summary["batch_1w_vs_raw_preencoded"] >= 0.5,
            "batch_vs_raw_preencoded>=0.5 (2 workers)": summary["batch_2w_vs_raw_preencoded"] >= 0.5,
            f"single_post_events_per_s>=5000 ({best} workers)": summary[f"single_post_{best}w_events_per_s"] >= 5000,
            f"single_post_p99_ms<=20 ({best} workers)": summary[f"single_post_{best}w_p99_ms"] <= 20,
        }
        write_results("ingest", results)
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
