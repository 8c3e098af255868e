"""docker-compose.yml against the code it runs: services, images, ports, ordering, health, real settings.

No Docker engine runs here, so the file is read with PyYAML and every ACCORDWATCH_*
variable it (or the Dockerfile) sets is checked against the pydantic-settings class of
the process that reads it: settings ignore unknown variables, so a typo would otherwise
pass silently. `docker compose config` runs too where the compose plugin is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from services.alerts.settings import AlertsSettings
from services.ingest.settings import IngestSettings
from services.projector.settings import ProjectorSettings
from services.stack.broker import Replication

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]

# Each process of ours: its module, the settings classes it reads, the port it serves, the path its health check asks.
OURS: dict[str, tuple[list[str], list[type[BaseSettings]], int | None, str | None]] = {
    "migrate": (["accordwatch", "migrate"], [ProjectorSettings, AlertsSettings], None, None),
    "ingest": (["python", "-m", "services.ingest"], [IngestSettings], 8080, "/readyz"),
    "projector-worker": (["python", "-m", "services.projector.worker"], [ProjectorSettings], 9181, "/metrics"),
    "projector-api": (["python", "-m", "services.projector.api"], [ProjectorSettings], 8081, "/readyz"),
    "alerts-worker": (["python", "-m", "services.alerts.worker"], [AlertsSettings], 9182, "/metrics"),
    "alerts-api": (["python", "-m", "services.alerts.api"], [AlertsSettings], 8082, "/readyz"),
}
PUBLISHED = {"ingest": 8080, "projector-api": 8081, "alerts-api": 8082, "prometheus": 9090, "grafana": 3000}
NEEDS_DATABASE = {"projector-worker", "projector-api", "alerts-worker", "alerts-api"}
NEEDS_KAFKA = {"ingest", "projector-worker", "alerts-worker"}
KAFKA_NODES = ["kafka-1", "kafka-2", "kafka-3"]
BOOTSTRAP = ",".join(f"{node}:9092" for node in KAFKA_NODES)


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads (aliases, or the prefix plus the field name)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def interpolate(value: Any) -> str:
    """Compose's ${VAR:-default} with nothing set: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def environment(service: str) -> dict[str, str]:
    return {k: interpolate(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return found


def test_the_stack_has_every_process() -> None:
    assert set(SERVICES) == {
        *KAFKA_NODES, "kafka-topics", "postgres", "migrate", "ingest", "projector-worker", "projector-api",
        "alerts-worker", "alerts-api", "prometheus", "grafana",
    }


def test_images_are_pinned_and_ours_are_built_here() -> None:
    for name, service in SERVICES.items():
        if name in OURS:
            assert (service["image"], service["build"]) == ("accordwatch:latest", "."), name
            continue
        image = service["image"]
        assert ":" in image, f"{name}: pin a tag"
        assert not image.endswith(":latest"), name
    assert SERVICES["kafka-1"]["image"].startswith("apache/kafka:")
    assert {SERVICES[name]["image"] for name in [*KAFKA_NODES, "kafka-topics"]} == {SERVICES["kafka-1"]["image"]}
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert SERVICES["prometheus"]["image"].startswith("prom/prometheus:")
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana:")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile


def test_each_process_runs_its_module() -> None:
    for name, (command, *_rest) in OURS.items():
        assert SERVICES[name]["command"] == command, name


def test_kafka_is_three_kraft_nodes_of_one_cluster_without_auto_created_topics() -> None:
    nodes = {name: SERVICES[name]["environment"] for name in KAFKA_NODES}
    assert sorted(int(env["KAFKA_NODE_ID"]) for env in nodes.values()) == [1, 2, 3]
    for name, env in nodes.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092", name
        assert SERVICES[name]["hostname"] == name
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", name
        assert env["KAFKA_LISTENERS"] == "PLAINTEXT://:9092,CONTROLLER://:9093", name
        # Each node is a static voter at its own host and controller port, with the same cluster id.
        voters = dict(v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert voters == {str(n): f"{other}:9093" for n, other in enumerate(KAFKA_NODES, 1)}, name
        assert voters[str(env["KAFKA_NODE_ID"])] == f"{name}:9093"
    assert len({env["CLUSTER_ID"] for env in nodes.values()}) == 1
    volumes = [SERVICES[name]["volumes"][0].split(":")[0] for name in KAFKA_NODES]
    assert len(set(volumes)) == 3, "each node keeps its own data"


def test_replication_is_three_copies_two_in_sync_as_the_local_cluster_has_it() -> None:
    wanted = Replication.for_brokers(len(KAFKA_NODES))
    assert (wanted.factor, wanted.min_insync) == (3, 2)
    for name in KAFKA_NODES:
        env = SERVICES[name]["environment"]
        for variable in ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                         "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                         "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR"):
            assert int(env[variable]) == wanted.factor, (name, variable)
        for variable in ("KAFKA_MIN_INSYNC_REPLICAS", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
                         "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR"):
            assert int(env[variable]) == wanted.min_insync, (name, variable)
    topics = " ".join(SERVICES["kafka-topics"]["command"])
    commands = [c for c in topics.split("&&") if "--create" in c]
    assert len(commands) == 2
    for topic, command in zip(("accordwatch.events ", "accordwatch.events.dlq "), commands, strict=True):
        assert f"--topic {topic}" in command
        assert f"--bootstrap-server {BOOTSTRAP} " in command
        assert f"--replication-factor {wanted.factor} " in command
        assert f"--config min.insync.replicas={wanted.min_insync} " in command
        assert "--config retention.ms=-1 " in command


def test_the_services_are_pointed_at_all_three_brokers() -> None:
    for name in NEEDS_KAFKA:
        assert environment(name)["ACCORDWATCH_KAFKA_BOOTSTRAP_SERVERS"] == BOOTSTRAP, name


def test_published_ports() -> None:
    published = {name: [str(p) for p in s.get("ports", [])] for name, s in SERVICES.items() if s.get("ports")}
    assert published == {name: [f"{port}:{port}"] for name, port in PUBLISHED.items()}


def test_ordering_waits_for_kafka_topics_and_the_migration_job() -> None:
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in SERVICES.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in conditions
            if SERVICES[dependency].get("restart") == "no":  # one-shot jobs
                assert spec["condition"] == "service_completed_successfully", (name, dependency)
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in NEEDS_DATABASE:
        assert SERVICES[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    for name in [*NEEDS_KAFKA, "kafka-topics"]:
        deps = SERVICES[name]["depends_on"]
        for node in KAFKA_NODES:
            assert deps[node] == {"condition": "service_healthy"}, (name, node)
    for name in NEEDS_KAFKA:
        assert SERVICES[name]["depends_on"]["kafka-topics"] == {"condition": "service_completed_successfully"}


def test_every_long_running_service_has_a_health_check_on_its_own_port() -> None:
    for name, service in SERVICES.items():
        if service.get("restart") == "no":
            continue
        check = service.get("healthcheck")
        assert check, f"{name}: no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        if name in OURS:
            _, _, port, path = OURS[name]
            assert f"http://127.0.0.1:{port}{path}" in " ".join(check["test"]), name


def _ours(variable: str) -> bool:
    return variable.startswith("ACCORDWATCH_") or variable in {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"}


def test_every_accordwatch_variable_is_a_real_setting() -> None:
    for name, (_, classes, *_rest) in OURS.items():
        known = set().union(*(env_names(c) for c in classes))
        for variable in filter(_ours, environment(name)):
            assert variable in known, f"{name}: {variable} is not a field of {[c.__name__ for c in classes]}"
    # The image's own variables reach every process; each must be read by one of them.
    every = set().union(*(env_names(c) for c in (IngestSettings, ProjectorSettings, AlertsSettings)))
    assert dockerfile_env()
    for variable in filter(_ours, dockerfile_env()):
        assert variable in every, f"Dockerfile: {variable} is no setting of any service"


def test_our_variables_stay_on_our_services() -> None:
    for name, service in SERVICES.items():
        if name not in OURS:
            assert not [v for v in service.get("environment") or {} if v.startswith("ACCORDWATCH_")], name


def test_settings_built_from_compose_listen_on_every_interface_at_the_scraped_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scraped = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in
               yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]}

    def settings(service: str, cls: type[BaseSettings]) -> Any:
        with monkeypatch.context() as m:
            for variable in list(os.environ):
                if variable.startswith("ACCORDWATCH_"):
                    m.delenv(variable)
            for variable, value in {**dockerfile_env(), **environment(service)}.items():
                m.setenv(variable, value)
            return cls()

    ingest = settings("ingest", IngestSettings)
    assert (ingest.host, ingest.port, ingest.kafka_bootstrap_servers) == ("0.0.0.0", 8080, BOOTSTRAP)
    assert scraped["ingest"] == f"ingest:{ingest.port}"
    assert ingest.api_keys_file == Path("/run/secrets/api-keys")

    api = settings("projector-api", ProjectorSettings)
    assert (api.api_host, scraped["projector-api"]) == ("0.0.0.0", f"projector-api:{api.api_port}")
    assert api.database_url.startswith("postgresql://accordwatch:")
    assert api.database_url.endswith("@postgres:5432/accordwatch")
    worker = settings("projector-worker", ProjectorSettings)
    assert (worker.api_host, scraped["projector-worker"]) == (
        "0.0.0.0", f"projector-worker:{worker.worker_metrics_port}")
    assert worker.database_url == api.database_url
    assert worker.home == Path("/var/lib/accordwatch")

    alerts_api = settings("alerts-api", AlertsSettings)
    assert (alerts_api.api_host, scraped["alerts-api"]) == ("0.0.0.0", f"alerts-api:{alerts_api.api_port}")
    alerts_worker = settings("alerts-worker", AlertsSettings)
    assert (alerts_worker.api_host, scraped["alerts-worker"]) == (
        "0.0.0.0", f"alerts-worker:{alerts_worker.worker_metrics_port}")
    assert alerts_worker.database_url == alerts_api.database_url
    assert alerts_worker.database_url.endswith("@postgres:5432/accordwatch_alerts")
    assert alerts_worker.database_url != api.database_url  # the Grafana role never sees webhook secrets
    assert alerts_worker.rules_file == Path("/etc/accordwatch/rules.yaml")
    assert "COPY deploy/alerts/rules.yaml /etc/accordwatch/rules.yaml" in (ROOT / "Dockerfile").read_text()

    migrate = settings("migrate", ProjectorSettings)
    assert migrate.database_url == api.database_url
    assert settings("migrate", AlertsSettings).database_url == alerts_api.database_url


def test_files_mounted_into_images_exist_and_named_volumes_are_declared() -> None:
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: {source}"
        for secret in service.get("secrets", []):
            assert secret in COMPOSE["secrets"], name


def test_grafana_is_provisioned_with_what_its_files_expect() -> None:
    grafana = SERVICES["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("."))
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/accordwatch.yml").read_text())
    assert mounts["./deploy/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    datasources = (ROOT / "deploy/grafana/provisioning/datasources/accordwatch.yml").read_text()
    assert set(re.findall(r"\$\{(\w+)\}", datasources)) <= set(grafana["environment"])
    init = (ROOT / "deploy/grafana/postgres-init.sh").read_text()
    postgres = SERVICES["postgres"]
    assert set(re.findall(r"\$(\w+)", init)) <= set(postgres["environment"])
    assert postgres["environment"]["GRAFANA_READMODEL_USER"] == grafana["environment"]["GRAFANA_READMODEL_USER"]
    assert postgres["environment"]["POSTGRES_ALERTS_DB"] == interpolate(
        SERVICES["alerts-api"]["environment"]["ACCORDWATCH_ALERTS_DATABASE_URL"]).rsplit("/", 1)[1]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in SERVICES["prometheus"]["volumes"]


def _compose() -> list[str]:
    """`docker compose` where the plugin is installed, else the Compose v2 binary that
    `scripts/setup.sh --test` unpacks under .local/bin."""
    docker = shutil.which("docker")
    if docker is not None and subprocess.run([docker, "compose", "version"], capture_output=True,
                                             check=False).returncode == 0:
        return [docker, "compose"]
    local = ROOT / ".local/bin/docker-compose"
    assert local.is_file(), "no Compose v2: run scripts/setup.sh --test"
    return [str(local)]


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys.json"
    keys.write_text("[]")
    done = subprocess.run([*_compose(), "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin", "ACCORDWATCH_API_KEYS": str(keys)},
                          capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_the_compose_checker_rejects_a_broken_file(tmp_path: Path) -> None:
    """The checker above is a real validator: a misspelt key fails it."""
    broken = (ROOT / "docker-compose.yml").read_text().replace("healthcheck:", "healthchek:", 1)
    (tmp_path / "docker-compose.yml").write_text(broken)
    keys = tmp_path / "api-keys.json"
    keys.write_text("[]")
    done = subprocess.run([*_compose(), "-f", str(tmp_path / "docker-compose.yml"), "config", "--quiet"],
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin", "ACCORDWATCH_API_KEYS": str(keys)},
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode != 0
    assert "healthchek" in done.stderr
