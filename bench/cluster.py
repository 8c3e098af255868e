"""Are three combined KRaft nodes sound on this machine? One broker against the three-node cluster.

Starts, one after the other on free ports, the single broker of `make run` and the cluster of
`accordwatch run --brokers 3` (same jars, same JVM options), and for each measures:
start-up until every node is registered; per node resident memory and Java heap (jstat) after
start, after an idle half minute and after a write load; CPU seconds per node while idle and
while loaded; and accordwatch's producer (idempotent, acks=all) writing event-sized records to
a 6-partition topic replicated as the stack replicates it (1 copy / 3 copies, 2 in sync): as
fast as it can, and at 200 records/s with acknowledgement latencies. The machine is shared
(several engineers' test runs): CPU figures move with everyone else's load, which is recorded.

    flock -x /work/team/cpu.lock .venv/bin/python bench/cluster.py [--records 20000] [--idle 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from common import latency_ms, proc_memory_mb, write_results

from services.platform.kafka import make_producer
from services.stack.broker import JVM_OPTS, LocalBroker, Replication, TopicSpec, assemble, ensure_topics, free_port
from services.stack.cluster import LocalCluster

RECORD = b"x" * 900  # about the size of an event on the topic


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def heap_mb(pid: int) -> dict[str, float] | None:
    """Java heap used and committed (MiB), from `jstat -gc` (None where the JDK tools are missing)."""
    if shutil.which("jstat") is None:
        return None
    done = subprocess.run(["jstat", "-gc", str(pid)], capture_output=True, text=True, check=False)
    lines = done.stdout.split("\n")
    if done.returncode != 0 or len(lines) < 2:
        return None
    gc = dict(zip(lines[0].split(), (float(v) for v in lines[1].split()), strict=False))
    used = gc["S0U"] + gc["S1U"] + gc["EU"] + gc["OU"]
    committed = gc["S0C"] + gc["S1C"] + gc["EC"] + gc["OC"]
    return {"used": round(used / 1024, 1), "committed": round(committed / 1024, 1)}


def snapshot(nodes: list[LocalBroker]) -> dict[str, Any]:
    return {f"node-{n.node_id}": {**proc_memory_mb(n.proc.pid), "heap": heap_mb(n.proc.pid)}
            for n in nodes if n.proc is not None}


def cpu(nodes: list[LocalBroker]) -> dict[int, float]:
    return {n.node_id: cpu_seconds(n.proc.pid) for n in nodes if n.proc is not None}


async def write(bootstrap: str, topic: str, records: int, rate: float | None) -> dict[str, Any]:
    """Send `records` records round the partitions, as fast as possible or at `rate` per second."""
    producer = make_producer(bootstrap, client_id="bench-cluster")
    await producer.start()
    latencies: list[float] = []

    def timed(started: float) -> Any:
        return lambda _: latencies.append(time.perf_counter() - started)

    try:
        began = time.perf_counter()
        pending = []
        for i in range(records):
            if rate is not None:
                delay = began + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            future = await producer.send(topic, RECORD, key=str(i % 600).encode())
            future.add_done_callback(timed(time.perf_counter()))
            pending.append(future)
        await asyncio.gather(*pending)
        seconds = time.perf_counter() - began
    finally:
        await producer.stop()
    return {"records": records, "seconds": round(seconds, 2), "records_per_s": round(records / seconds),
            "ack_latency_ms": latency_ms(latencies)}


def measure(name: str, nodes: list[LocalBroker], start: Any, bootstrap: str, brokers: int,
            args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    start()
    ready_s = round(time.monotonic() - began, 1)
    out: dict[str, Any] = {"nodes": len(nodes), "seconds_to_ready": ready_s, "memory_after_start": snapshot(nodes)}
    replication = Replication.for_brokers(brokers)
    topic = f"bench.{name}"
    asyncio.run(ensure_topics(bootstrap, [TopicSpec(topic, 6, replication.topic_config(), replication.factor)]))
    out["replication"] = {"factor": replication.factor, "min_insync": replication.min_insync}

    before = cpu(nodes)
    time.sleep(args.idle)  # idle on purpose: what the nodes cost doing nothing
    idle = cpu(nodes)
    out["idle_cpu_share_of_a_core"] = {f"node-{i}": round((idle[i] - before[i]) / args.idle, 3) for i in idle}
    out["memory_after_idle"] = snapshot(nodes)

    before, load_began = cpu(nodes), time.monotonic()
    out["write_as_fast_as_possible"] = asyncio.run(write(bootstrap, topic, args.records, None))
    out["write_at_200_per_s"] = asyncio.run(write(bootstrap, topic, args.paced, 200.0))
    after, load_s = cpu(nodes), time.monotonic() - load_began
    out["loaded_cpu_share_of_a_core"] = {f"node-{i}": round((after[i] - before[i]) / load_s, 3) for i in after}
    out["memory_after_load"] = snapshot(nodes)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="records written as fast as possible")
    parser.add_argument("--paced", type=int, default=2_000, help="records written at 200/s")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measured")
    args = parser.parse_args()
    libs = assemble()
    home = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    results: dict[str, Any] = {"jvm_options": JVM_OPTS, "load_average_before": [round(x, 2) for x in os.getloadavg()],
                               "cpus": os.cpu_count(), "note": "shared machine: CPU figures are noisy"}
    try:
        single = LocalBroker(home / "single", port=free_port(), controller_port=free_port(), libs=libs)

        def start_single() -> None:
            single.start()
            single.wait_ready()

        try:
            results["one_broker"] = measure("single", [single], start_single, single.bootstrap, 1, args)
        finally:
            single.stop()

        cluster = LocalCluster(home / "cluster", [(free_port(), free_port()) for _ in range(3)], libs=libs)

        def start_cluster() -> None:
            cluster.start()
            cluster.wait_ready()

        try:
            results["three_combined_nodes"] = measure("cluster", cluster.nodes, start_cluster, cluster.bootstrap, 3,
                                                      args)
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    heap = re.search(r"-Xmx(\S+)", " ".join(JVM_OPTS))
    results["heap_cap_per_node"] = heap.group(1) if heap else None
    write_results("cluster-nodes", results)


if __name__ == "__main__":
    main()
