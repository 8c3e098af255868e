"""The Grafana dashboards and the Prometheus config agree with the code: generated, provisioned, real names."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from services.alerts import metrics as alerts_metrics
from services.ingest import metrics as ingest_metrics
from services.projector import metrics as projector_metrics
from services.stack.prometheus import COMPOSE_CONFIG, PrometheusError, load_config, retarget

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _boards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))]


def _targets() -> list[dict[str, Any]]:
    return [t for board in _boards() for panel in board["panels"] for t in panel["targets"]]


def _exposed_names() -> set[str]:
    """Every sample name our own metric objects expose."""
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    names: set[str] = set()
    for module in (ingest_metrics, projector_metrics, alerts_metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                [family] = list(value.describe())
                names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    rendered = _generator().render()
    committed = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}
    assert committed == rendered, "stale: run .venv/bin/python deploy/grafana/generate.py"


def test_dashboards_are_titled_and_laid_out() -> None:
    boards = {b["title"]: b for b in _boards()}
    assert set(boards) == {"Agreements", "Pipeline"}
    for board in boards.values():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            assert panel["targets"], panel["title"]


def test_panels_use_only_provisioned_data_sources() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "accordwatch.yml").read_text())
    sources = {(d["type"], d["uid"]) for d in provisioned["datasources"]}
    used = {(t["datasource"]["type"], t["datasource"]["uid"]) for t in _targets()}
    assert used == sources
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "accordwatch.yml").read_text())
    assert [p["type"] for p in provider["providers"]] == ["file"]


def test_promql_names_real_metrics_and_scrape_jobs() -> None:
    exposed = _exposed_names()
    jobs = {job["job_name"] for job in load_config()["scrape_configs"]}
    exprs = [t["expr"] for t in _targets() if "expr" in t]
    assert exprs
    for expr in exprs:
        for name in re.findall(r"\baccordwatch_[a-z_]+", expr):
            if "_faust_" in name:
                continue  # faust's own sensor, under the prefix each worker gives it
            assert name in exposed, f"{name} (in {expr}) is not a metric any service declares"
        for selector in re.findall(r'job=~?"([^"]+)"', expr):
            assert set(selector.split("|")) <= jobs, f"{expr} selects a job Prometheus does not scrape"


def test_prometheus_scrapes_every_process_by_its_compose_name() -> None:
    config = load_config()
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "ingest": ["ingest:8080"], "projector-api": ["projector-api:8081"],
        "projector-worker": ["projector-worker:9181"], "alerts-api": ["alerts-api:8082"],
        "alerts-worker": ["alerts-worker:9182"], "prometheus": ["localhost:9090"],
    }


def test_retarget_points_every_job_at_a_local_port_and_refuses_to_leave_one_out() -> None:
    local = {job: f"127.0.0.1:{9000 + i}" for i, job in enumerate(j["job_name"] for j in load_config()["scrape_configs"])}
    config = retarget(load_config(), local)
    assert {j["job_name"]: j["static_configs"] for j in config["scrape_configs"]} == {
        job: [{"targets": [target]}] for job, target in local.items()}
    assert config["global"]["scrape_interval"] == "1s"
    with pytest.raises(PrometheusError, match="ingest"):
        retarget(load_config(), {k: v for k, v in local.items() if k != "ingest"})


def test_promtool_accepts_the_compose_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/setup.sh --test (Debian's prometheus package)"
    done = subprocess.run([promtool, "check", "config", str(COMPOSE_CONFIG)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
