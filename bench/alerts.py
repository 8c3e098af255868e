"""Alerts benchmark: ingest's 202 -> a verified webhook on loopback, 20 subscribers, per alert store.

For each alert store (SQLite, PostgreSQL), on its own broker with ingest, the alerts
worker and the alerts API running (the projector is not on this path and is not started):
(0) baseline: the bench signs and POSTs the same fan-out straight to the same receivers,
    at the same rate: the floor of loopback HTTP plus signing and verification;
(a) steady: --rate StayRequested events/s (one critical alert each) x --subscribers;
    p50/p99 from each event's 202 to each verified webhook, all must arrive;
(b) isolation: the same, with one subscriber hanging 10 s per request and another
    answering 500 to everything: the others' share delivered and how far their p99 moved
    against (a) for the same subscribers;
(c) catch-up: the receivers answer 503 with Retry-After at one fixed moment while
    --catchup-alerts alerts are posted (x subscribers deliveries queue up); from that
    moment on, how fast the outbox drains, and that every webhook-id arrives exactly once.
Throughout: the alerts worker's RSS (sampled), the CPU seconds of every process of the run
(the bench and its receivers share the two cores with the worker), and the worker's
database statements and transactions per delivery (from its /metrics).
The receivers are one process (bench/receivers.py) verifying every signature.

    flock -x /work/team/cpu.lock .venv/bin/python bench/alerts.py [--stores sqlite,postgresql]
        [--rate 100] [--seconds 20] [--subscribers 20] [--catchup-alerts 2500] [--py-spy DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop
from common import latency_ms, percentile, proc_memory_mb, write_results
from receivers import receiver_main

from services.alerts.delivery import signed_headers
from services.platform.auth import new_key
from services.stack.local import LocalStack, Ports

SOURCE = {"publisher": "bench", "url": "https://example.org/bench"}
TICK = os.sysconf("SC_CLK_TCK")
Seen = list[tuple[str, str, str, float]]


def stay_request(subject: str) -> dict[str, Any]:
    return {"type": "StayRequested", "subject": subject, "occurred_at": datetime.now(UTC).isoformat(),
            "sources": [SOURCE], "confidence": "confirmed",
            "data": {"requested_by": "bench", "court": "Supreme Court of the United States"}}


async def post_stream(ingest: str, key: str, rate: float, seconds: float, prefix: str) -> dict[str, float]:
    """POST one StayRequested per tick; subject -> time of the 202."""
    acked: dict[str, float] = {}
    interval = 1 / rate
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:

        async def one(subject: str) -> None:
            async with session.post(f"{ingest}/v1/events", json=stay_request(subject)) as response:
                assert response.status == 202, await response.text()
            acked[subject] = time.time()

        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the load, not synchronisation
            tasks.append(asyncio.create_task(one(f"{prefix}-{i}")))
        await asyncio.gather(*tasks)
    return acked


async def post_batches(ingest: str, key: str, n: int, prefix: str, size: int = 500) -> None:
    """POST n StayRequested events in batches, as fast as ingest takes them."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        for start in range(0, n, size):
            events = [stay_request(f"{prefix}-{i}") for i in range(start, min(n, start + size))]
            async with session.post(f"{ingest}/v1/events/batch", json={"events": events}) as response:
                assert response.status == 202, await response.text()


async def direct_stream(
    url_for: dict[str, str], secrets: dict[str, str], rate: float, seconds: float
) -> dict[str, float]:
    """Baseline: sign and POST the same fan-out straight to the receivers, no Kafka, no outbox."""
    sent: dict[str, float] = {}
    interval = 1 / rate
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(subject: str) -> None:
            sent[subject] = time.time()
            payload = f'{{"type":"alert.firing","timestamp":"x","data":{{"subject":"{subject}"}}}}'

            async def to(path: str) -> None:
                headers = signed_headers([secrets[path]], f"msg_{uuid.uuid4().hex}", payload, datetime.now(UTC))
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


def latencies(acked: dict[str, float], seen: Seen, paths: set[str]) -> dict[str, Any]:
    samples = [at - acked[subject] for path, subject, _, at in seen if path in paths and subject in acked]
    expected = len(acked) * len(paths)
    return {"webhooks": len(samples), "expected": expected, "all_delivered": len(samples) >= expected,
            **latency_ms(samples)}


def timeline(acked: dict[str, float], seen: Seen, paths: set[str]) -> list[dict[str, float]]:
    """Per second of the phase (by the 202's time): webhooks, p50 and max latency (ms): a ramp, a plateau or spikes."""
    if not acked:
        return []
    start = min(acked.values())
    by_second: dict[int, list[float]] = {}
    for path, subject, _, at in seen:
        if path in paths and subject in acked:
            by_second.setdefault(int(acked[subject] - start), []).append(at - acked[subject])
    return [{"s": s, "n": len(v), "p50": round(percentile(v, 50) * 1000, 1), "max": round(max(v) * 1000, 1)}
            for s, v in sorted(by_second.items())]


class Receivers:
    """The receiver process and its pipe."""

    def __init__(self, port: int, secrets: dict[str, str]) -> None:
        self.port = port
        self.parent, child = mp.Pipe()
        self.proc = mp.Process(target=receiver_main, args=(port, secrets, child), daemon=True)
        self.proc.start()
        assert self.parent.recv() == "ready"

    def call(self, *command: Any) -> Any:
        self.parent.send(command)
        return self.parent.recv()

    def report(self) -> dict[str, Any]:
        return dict(self.call("report"))

    def wait_for(self, want: int, timeout: float, paths: set[str] | None = None) -> Seen:
        """Collect what was seen until `want` verified webhooks (on `paths`) arrived, or the deadline."""
        deadline = time.monotonic() + timeout
        got: Seen = []
        counted = 0
        while time.monotonic() < deadline:
            fresh = self.report()["seen"]
            got.extend(fresh)
            counted += sum(1 for s in fresh if paths is None or s[0] in paths)
            if counted >= want:
                break
            time.sleep(0.25)
        return got

    def stop(self) -> None:
        if self.proc.is_alive():
            self.parent.send(("stop",))
            self.proc.join(10)


class Watch:
    """CPU seconds per process and the worker's peak RSS over one phase."""

    def __init__(self, pids: dict[str, int], worker_pid: int, metrics_url: str | None = None) -> None:
        self.pids = pids
        self.worker_pid = worker_pid
        self.metrics_url = metrics_url
        self.gauges: list[dict[str, float]] = []
        self.started = time.monotonic()
        self.cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.rss_max = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        ticks = 0
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.rss_max = max(self.rss_max, proc_memory_mb(self.worker_pid).get("VmRSS", 0.0))
            if self.metrics_url is not None and ticks % 4 == 0:
                with contextlib.suppress(httpx.HTTPError):
                    self.gauges.append(dispatch_gauges(self.metrics_url) | {
                        "s": round(time.monotonic() - self.started, 1)})
            ticks += 1
            self._stop.wait(0.25)

    def done(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        wall = time.monotonic() - self.started
        cpu = {name: round(cpu_seconds(pid) - self.cpu0[name], 2) for name, pid in self.pids.items()}
        total = sum(cpu.values())
        bench = cpu.get("bench", 0.0) + cpu.get("receivers", 0.0)
        return {
            "wall_s": round(wall, 1), "cpu_s": cpu,
            "machine_busy_share": round(total / (2 * wall), 3) if wall else None,
            "bench_and_receivers_cpu_share": round(bench / total, 3) if total else None,
            "worker_cpu_share_of_a_core": round(cpu.get("alerts-worker", 0.0) / wall, 3) if wall else None,
            "worker_rss_max_mb": self.rss_max,
        } | ({"dispatch_gauges": self.gauges} if self.metrics_url is not None else {})


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / TICK


def scrape(url: str) -> dict[str, float]:
    """The worker's counters that the bench divides: statements, transactions, deliveries by label."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("accordwatch_alerts_db_", "accordwatch_alerts_deliveries_total")) and " " in line:
            name, value = line.rsplit(" ", 1)
            if "_created" not in name:
                out[name] = float(value)
    return out


def dispatch_gauges(url: str) -> dict[str, float]:
    """The worker's dispatch gauges now (refreshed by the worker every 2 s): memory, spilled lanes, lag, outbox."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out = {"in_memory": 0.0, "spilled": 0.0, "lag": 0.0, "outbox": 0.0}
    names = {"accordwatch_alerts_webhooks_in_memory": "in_memory",
             "accordwatch_alerts_subscriptions_spilled": "spilled",
             "accordwatch_alerts_consumer_lag_records": "lag", "accordwatch_alerts_outbox_depth": "outbox"}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names and " " in line:
            out[names[name]] += float(line.rsplit(" ", 1)[1])
    return out


def per_delivery(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Statements and transactions per webhook attempt, by role."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    attempts = sum(v for k, v in delta.items() if k.startswith("accordwatch_alerts_deliveries_total"))
    out: dict[str, Any] = {"attempts": attempts}
    if not attempts:
        return out
    for kind in ("statements", "transactions"):
        prefix = f"accordwatch_alerts_db_{kind}_total"
        by_role = {k.split('role="', 1)[1].rstrip('"}'): v for k, v in delta.items() if k.startswith(prefix) and v}
        out[f"{kind}_per_attempt"] = round(sum(by_role.values()) / attempts, 4)
        out[f"{kind}_by_role"] = {r: round(v / attempts, 4) for r, v in sorted(by_role.items())}
    return out


PY_SPY_EXTRA: list[str] = []


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy")
    if not Path(exe).exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                             "--format", "raw", "--output", str(out), "--nonblocking", *PY_SPY_EXTRA],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_store(store: str, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Every phase against one alert store, into `out` as they finish."""
    home = Path(tempfile.mkdtemp(prefix=f"accordwatch-bench-alerts-{store}-"))
    key = new_key()
    postgres = None
    database_url = None
    if store == "postgresql":
        from services.stack.postgres import LocalPostgres

        postgres = LocalPostgres().start()
        database_url = postgres.create_database("accordwatch")
    stack = LocalStack(home=home, ports=Ports.free(), dev_key=key, database_url=database_url)
    rx_port = Ports.free().ingest
    paths = [f"/s{i}" for i in range(args.subscribers)]
    out["store"] = store
    receivers: Receivers | None = None
    try:
        stack.start_broker()
        stack.start(("ingest", "alerts-worker", "alerts-api"))
        api = httpx.Client(base_url=stack.urls["alerts"], headers={"Authorization": f"Bearer {key}"}, timeout=30)

        def subscribe(path: str) -> dict[str, Any]:
            response = api.post("/v1/subscriptions", json={"url": f"http://127.0.0.1:{rx_port}{path}",
                                                            "rules": ["stay-requested"]})
            assert response.status_code == 201, response.text
            body: dict[str, Any] = response.json()
            return body

        subs = {path: subscribe(path) for path in paths}
        secrets = {path: sub["secret"] for path, sub in subs.items()}
        receivers = Receivers(rx_port, secrets)
        worker = stack.services["alerts-worker"]
        assert worker.pid is not None
        pids = {"bench": os.getpid(), "receivers": receivers.proc.pid or 0, "alerts-worker": worker.pid,
                "alerts-api": stack.services["alerts-api"].pid or 0, "ingest": stack.services["ingest"].pid or 0}
        broker_proc = getattr(stack.broker, "proc", None)  # one local broker (not a cluster) in this bench
        if broker_proc is not None:
            pids["kafka"] = broker_proc.pid
        metrics_url = stack.urls["alerts-worker"]
        ingest = stack.urls["ingest"]
        everyone = set(paths)

        # (0) the baseline, same receivers, same rate and fan-out.
        if not args.no_baseline:
            watch = Watch(pids, worker.pid)
            url_for = {path: f"http://127.0.0.1:{rx_port}{path}" for path in paths}
            sent = uvloop.run(direct_stream(url_for, secrets, args.rate, args.seconds))
            seen = receivers.wait_for(len(sent) * len(paths), 60)
            out["baseline_direct_post"] = latencies(sent, seen, everyone) | {"resources": watch.done()}

        # A warm-up alert, so that the first measured one pays no connection set-up.
        uvloop.run(post_stream(ingest, key, 5, 1, "warm"))
        receivers.wait_for(5 * len(paths), 60)

        # (a) steady.
        watch = Watch(pids, worker.pid, metrics_url)
        before = scrape(metrics_url)
        spy = py_spy(worker.pid, args.seconds, args.py_spy / f"{store}-steady.txt") if args.py_spy else None
        acked = uvloop.run(post_stream(ingest, key, args.rate, args.seconds, "calm"))
        seen = receivers.wait_for(len(acked) * len(paths), 120)
        out["steady"] = latencies(acked, seen, everyone) | {
            "db": per_delivery(before, scrape(metrics_url)), "resources": watch.done()}
        if spy is not None:
            spy.wait()
        healthy = set(paths[:-2])
        out["steady"]["healthy_subset"] = latencies(acked, seen, healthy)
        out["steady"]["timeline"] = timeline(acked, seen, everyone)

        # (b) one subscriber hangs, another fails.
        hang, fail = paths[-2], paths[-1]
        receivers.call("modes", {hang: "hang", fail: "fail"})
        watch = Watch(pids, worker.pid, metrics_url)
        before = scrape(metrics_url)
        spy = py_spy(worker.pid, args.seconds, args.py_spy / f"{store}-isolation.txt") if args.py_spy else None
        acked = uvloop.run(post_stream(ingest, key, args.rate, args.seconds, "hang"))
        seen = receivers.wait_for(len(acked) * len(healthy), 120, healthy)
        got = latencies(acked, seen, healthy)
        calm = out["steady"]["healthy_subset"]["p99"]
        out["isolation"] = got | {
            "hanging": hang, "failing": fail,
            "healthy_share_delivered": round(got["webhooks"] / got["expected"], 4) if got["expected"] else None,
            "healthy_p99_moved_by": round(got["p99"] / calm - 1, 3) if calm else None,
            "db": per_delivery(before, scrape(metrics_url)), "resources": watch.done(),
            "timeline": timeline(acked, seen, healthy)}
        if spy is not None:
            spy.wait()
        for path in (hang, fail):  # their backlogs would only add noise to the catch-up
            gone = api.delete(f"/v1/subscriptions/{subs[path]['id']}")
            assert gone.status_code == 204, (gone.status_code, gone.text)
            fresh = f"{path}b"
            subs[fresh] = subscribe(fresh)
            receivers.call("secret", fresh, subs[fresh]["secret"])
        paths = [*paths[:-2], f"{hang}b", f"{fail}b"]

        # (c) catch-up: deliveries queue while the receivers are in maintenance, then all fall due at once.
        n = args.catchup_alerts
        up_at = float(int(time.time() + args.catchup_hold) + 1)
        receivers.call("retry_after", up_at)
        receivers.call("modes", dict.fromkeys(paths, "maintenance"))
        watch = Watch(pids, worker.pid, metrics_url)
        before = scrape(metrics_url)
        uvloop.run(post_batches(ingest, key, n, "catchup"))
        queued = n * len(paths)
        first_attempts_at = _wait_for_attempts(metrics_url, before, queued, up_at - 1)
        receivers.call("modes", dict.fromkeys(paths, "ok"))
        spy = None
        if args.py_spy:
            spy = py_spy(worker.pid, 15, args.py_spy / f"{store}-catchup.txt")
        seen = receivers.wait_for(queued, max(120.0, up_at - time.time() + 120), set(paths))
        ids = [s[2] for s in seen if s[1].startswith("catchup-")]
        times = sorted(s[3] for s in seen if s[1].startswith("catchup-"))
        drained = times[-1] - up_at if times else float("nan")
        out["catchup"] = {
            "queued": queued, "first_attempts_done_before_due": first_attempts_at is not None,
            "first_attempts_s": first_attempts_at, "delivered": len(ids), "unique_webhook_ids": len(set(ids)),
            "duplicates": len(ids) - len(set(ids)),
            "drain_s": round(drained, 2),
            "drain_rate_per_s": round(len(set(ids)) / drained, 1) if drained > 0 else None,
            "first_after_due_ms": round((times[0] - up_at) * 1000, 1) if times else None,
            "p50_after_due_ms": round((percentile(times, 50) - up_at) * 1000, 1) if times else None,
            "db": per_delivery(before, scrape(metrics_url)), "resources": watch.done(),
        }
        if spy is not None:
            spy.wait()
        out["alerts_worker_memory_mb"] = proc_memory_mb(worker.pid)
        out["bad_signatures"] = receivers.report()["bad"]
        api.close()
    finally:
        if receivers is not None:
            receivers.stop()
        stack.stop()
        if postgres is not None:
            postgres.stop()
        if args.keep_home:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def _wait_for_attempts(metrics_url: str, before: dict[str, float], want: int, until: float) -> float | None:
    """Seconds until the worker had attempted `want` deliveries once (or None if not before `until`)."""
    started = time.time()
    while time.time() < until:
        now = scrape(metrics_url)
        done = sum(v - before.get(k, 0.0) for k, v in now.items() if k.startswith("accordwatch_alerts_deliveries_"))
        if done >= want:
            return round(time.time() - started, 2)
        time.sleep(0.5)
    return None


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """Each goal of issue 15, met or not, per store."""
    out: dict[str, Any] = {}
    for store, r in results["stores"].items():
        if "catchup" not in r or "baseline_direct_post" not in r:
            continue
        base = r["baseline_direct_post"]["p99"]
        steady, iso, catch = r["steady"], r["isolation"], r["catchup"]
        rss = max(r[p]["resources"]["worker_rss_max_mb"] for p in ("steady", "isolation", "catchup"))
        out[store] = {
            "steady_all_delivered": steady["all_delivered"],
            "steady_p99_le_250ms": steady["p99"] <= 250,
            "steady_p99_le_10x_baseline": steady["p99"] <= 10 * base,
            "isolation_healthy_get_100pct": iso["healthy_share_delivered"] == 1.0,
            "isolation_healthy_p99_moves_le_10pct": (iso["healthy_p99_moved_by"] or 0) <= 0.10,
            "catchup_ge_5000_per_s": (catch["drain_rate_per_s"] or 0) >= 5000,
            "catchup_exactly_once": catch["duplicates"] == 0 and catch["unique_webhook_ids"] == catch["queued"],
            "worker_rss_le_150mb": rss <= 150,
            "worker_rss_max_mb": rss,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--catchup-alerts", type=int, default=2500)
    parser.add_argument("--catchup-hold", type=float, default=60.0,
                        help="seconds from the start of the catch-up phase to the moment every delivery falls due")
    parser.add_argument("--py-spy", type=Path, default=None, help="record py-spy raw profiles of the worker here")
    parser.add_argument("--py-spy-args", default="", help="more py-spy record options, e.g. '--idle' or '--gil'")
    parser.add_argument("--no-baseline", action="store_true", help="skip the direct baseline (quick profiling runs)")
    parser.add_argument("--keep-home", action="store_true", help="keep the stack's folder (logs) afterwards")
    parser.add_argument("--label", default="", help="a word for the results file (e.g. before, after)")
    args = parser.parse_args()
    PY_SPY_EXTRA.extend(args.py_spy_args.split())
    results: dict[str, Any] = {
        "rate": args.rate, "seconds": args.seconds, "subscribers": args.subscribers,
        "catchup_alerts": args.catchup_alerts, "label": args.label,
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 check=False).stdout.strip(),
        "load_average_before": os.getloadavg(), "stores": {},
    }
    for store in args.stores.split(","):
        try:
            run_store(store.strip(), args, results["stores"].setdefault(store, {}))
        except Exception as exc:  # report what the other store measured all the same
            import traceback

            traceback.print_exc()
            results.setdefault("errors", {})[store] = repr(exc)
    results["load_average_after"] = os.getloadavg()
    results["goals"] = goals(results)
    write_results("alerts", results)


if __name__ == "__main__":
    main()
