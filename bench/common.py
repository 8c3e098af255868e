"""Shared bits of the benchmarks: percentiles, process memory, JSON results."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100) of samples, nearest-rank on the sorted list."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_ms(samples: list[float]) -> dict[str, float]:
    return {f"p{q}": round(percentile(samples, q) * 1000, 2) for q in (50, 90, 99)} | {
        "max": round(max(samples) * 1000, 2) if samples else float("nan")}


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    payload = {"benchmark": name, "at": stamp, "machine": machine(), **results}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path


class Timer:
    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (from /proc/*/stat parent ids)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its living descendants."""
    ticks = 0
    for each in _descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _machine_jiffies() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


class CpuShare:
    """Cores used by named processes (with their descendants) while the block runs, the
    machine's busy cores (everyone's work on it, ours and others') and the load average."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.figures: dict[str, Any] = {}

    def __enter__(self) -> CpuShare:
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine = _machine_jiffies()
        self._load = os.getloadavg()[0]
        self._started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        wall = time.perf_counter() - self._started
        busy, total = _machine_jiffies()
        self.figures = {f"{name}_cores": round((cpu_seconds(pid) - self._before[name]) / wall, 3)
                        for name, pid in self.pids.items()}
        self.figures["machine_busy_cores"] = round(
            (busy - self._machine[0]) / max(1, total - self._machine[1]) * (os.cpu_count() or 1), 3)
        self.figures["load_average_1m"] = [round(self._load, 2), round(os.getloadavg()[0], 2)]


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (a load generator run by subprocess)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def _java(libs: Path, main: str, *args: str, timeout: float) -> str:
    command = ["java", "-Xms256m", "-Xmx512m", "-cp", f"{libs}/*", main, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)
    return done.stdout


def producer_performance(libs: Path, bootstrap: str, topic: str, records: int, size: int) -> dict[str, Any]:
    """Kafka's own ProducerPerformance (acks=all, idempotent) on the same broker: its records/s and latencies."""
    out = _java(libs, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
                "--num-records", str(records), "--record-size", str(size), "--throughput", "-1",
                "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all", "enable.idempotence=true",
                timeout=600)
    final = [line for line in out.splitlines() if "records sent" in line][-1]
    numbers = re.findall(r"([\d.]+) (records/sec|ms avg latency|ms 50th|ms 99th)", final)
    named = {unit: float(value) for value, unit in numbers}
    return {"records": records, "record_bytes": size, "records_per_s": round(named["records/sec"]),
            "avg_latency_ms": named.get("ms avg latency"), "p50_ms": named.get("ms 50th"),
            "p99_ms": named.get("ms 99th")}


def consumer_performance(libs: Path, bootstrap: str, topic: str, records: int) -> dict[str, Any]:
    """Kafka's own ConsumerPerformance on the same broker: records/s of its fetch phase and overall."""
    out = _java(libs, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap,
                "--topic", topic, "--messages", str(records), "--timeout", "60000", timeout=600)
    header, values = [line for line in out.splitlines() if line.strip()][-2:]
    row = dict(zip([h.strip() for h in header.split(",")], [v.strip() for v in values.split(",")], strict=True))
    return {"records": int(row["data.consumed.in.nMsg"]), "records_per_s": round(float(row["nMsg.sec"])),
            "fetch_records_per_s": round(float(row["fetch.nMsg.sec"]))}
