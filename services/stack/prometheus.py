"""A throwaway Prometheus server from Debian's binary, for tests and the local stack.

`LocalPrometheus` writes a config, starts `prometheus` on a free port on 127.0.0.1 with
its data in a temporary folder, waits for `/-/ready`, answers PromQL queries, and stops
and deletes everything. `retarget()` takes the committed compose config
(`deploy/prometheus/prometheus.yml`) and points its jobs at local ports, so a test scrapes
a local stack with the very job names the dashboards select on.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from services.stack.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"


class PrometheusError(RuntimeError):
    """Prometheus is missing, exited, never became ready, or refused a query."""


def binary() -> Path:
    """The `prometheus` executable (Debian's package installs /usr/bin/prometheus)."""
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if found is None:
        raise PrometheusError("Prometheus is not installed; run scripts/setup.sh --test (installs Debian's prometheus)")
    return Path(found)


def load_config(path: Path = COMPOSE_CONFIG) -> dict[str, Any]:
    """A Prometheus config file as data."""
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    return config


def retarget(config: Mapping[str, Any], targets: Mapping[str, str], *, scrape_interval: str = "1s") -> dict[str, Any]:
    """`config` with each job's static targets replaced by `targets[job]` (host:port), scraped often.

    Every job of the config must be given a target, so nothing is silently left unscraped.
    """
    out = copy.deepcopy(dict(config))
    out["global"] = {**out.get("global", {}), "scrape_interval": scrape_interval,
                     "scrape_timeout": scrape_interval, "evaluation_interval": scrape_interval}
    out.pop("rule_files", None)
    out.pop("alerting", None)
    jobs = out.get("scrape_configs", [])
    missing = [job["job_name"] for job in jobs if job["job_name"] not in targets]
    if missing:
        raise PrometheusError(f"no local target for jobs {missing}")
    for job in jobs:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
    return out


class LocalPrometheus:
    """One Prometheus on 127.0.0.1:`port` with `config`, its TSDB in a temporary folder."""

    def __init__(self, config: Mapping[str, Any], *, port: int | None = None) -> None:
        self.config = dict(config)
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="accordwatch-prometheus-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "prometheus.log"

    def start(self) -> LocalPrometheus:
        """Write the config and launch the server in its own session."""
        config_file = self.dir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config, sort_keys=False))
        cmd = [
            str(binary()),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         cwd=self.dir)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll `/-/ready` until it answers 200, with a deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise PrometheusError(f"prometheus exited ({self.proc and self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise PrometheusError(f"prometheus not ready on {self.url} after {timeout:.0f}s:\n{self.tail()}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant PromQL query (a list of series); a bad expression raises."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10.0)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"query {expr!r} failed: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health and last error."""
        response = httpx.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=10.0)
        response.raise_for_status()
        active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
        return active

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (SIGKILL after `timeout`), then delete the data folder."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no prometheus log)"
