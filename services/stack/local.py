"""The whole local stack on its embedded defaults: broker, topics, and every service.

`accordwatch run` uses it for the developer stack (default ports, data under `.local/`),
and the tests use it for a throwaway stack on free ports beside it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from services.stack.broker import LocalBroker, assemble, default_topics, ensure_topics, free_port
from services.stack.cluster import LocalCluster
from services.stack.processes import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
ALL_SERVICES = ("ingest", "projector-worker", "projector-api", "alerts-worker", "alerts-api")


@dataclass
class Ports:
    """Every port of the local stack (all on 127.0.0.1)."""

    kafka: int = 9092  # ACCORDWATCH_KAFKA_PORT, and so on for each
    controller: int = 9093
    kafka_2: int = 9094  # nodes 2 and 3 of `accordwatch run --brokers 3`
    controller_2: int = 9095
    kafka_3: int = 9096
    controller_3: int = 9097
    ingest: int = 8080
    projector: int = 8081
    projector_metrics: int = 9181
    alerts: int = 8082
    alerts_metrics: int = 9182

    @classmethod
    def free(cls) -> Ports:
        return cls(**{name: free_port() for name in cls.__dataclass_fields__})

    @classmethod
    def from_env(cls) -> Ports:
        """Defaults, overridden by ACCORDWATCH_<NAME>_PORT variables."""
        values = {}
        for name in cls.__dataclass_fields__:
            raw = os.environ.get(f"ACCORDWATCH_{name.upper()}_PORT")
            if raw:
                values[name] = int(raw)
        return cls(**values)

    def kafka_nodes(self, brokers: int) -> list[tuple[int, int]]:
        """(broker port, controller port) of each of the first `brokers` Kafka nodes."""
        nodes = [(self.kafka, self.controller), (self.kafka_2, self.controller_2), (self.kafka_3, self.controller_3)]
        if not 1 <= brokers <= len(nodes):
            raise ValueError(f"the local stack runs 1 to {len(nodes)} brokers, not {brokers}")
        return nodes[:brokers]


@dataclass
class LocalStack:
    """A broker (or a cluster of `brokers` nodes) plus service processes sharing one data folder."""

    home: Path
    ports: Ports
    dev_key: str
    database_url: str | None = None
    sealing_keys: str = field(default_factory=lambda: _new_sealing_key())
    partitions: int = 6
    brokers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    broker: LocalBroker | LocalCluster | None = None

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port, _ in self.ports.kafka_nodes(self.brokers))

    @property
    def kafka_dir(self) -> Path:
        """The broker's data folder (a cluster's has one folder per node); never shared between the two."""
        return self.home / ("kafka" if self.brokers == 1 else f"kafka-{self.brokers}")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'accordwatch.db'}"

    @property
    def alerts_db_url(self) -> str:
        """The alert store: beside the read model on PostgreSQL, its own file on SQLite."""
        if self.database_url and not self.database_url.startswith("sqlite"):
            return self.database_url
        return f"sqlite:///{self.home / 'alerts.db'}"

    @property
    def urls(self) -> dict[str, str]:
        p = self.ports
        return {
            "ingest": f"http://127.0.0.1:{p.ingest}",
            "projector": f"http://127.0.0.1:{p.projector}",
            "projector-worker": f"http://127.0.0.1:{p.projector_metrics}",
            "alerts": f"http://127.0.0.1:{p.alerts}",
            "alerts-worker": f"http://127.0.0.1:{p.alerts_metrics}",
        }

    def env(self) -> dict[str, str]:
        """The environment every service of this stack runs with."""
        p = self.ports
        return {
            "ACCORDWATCH_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "ACCORDWATCH_DEV_KEY": self.dev_key,
            "ACCORDWATCH_WEBHOOK_SECRET_KEYS": self.sealing_keys,
            "ACCORDWATCH_DATABASE_URL": self.db_url,
            "ACCORDWATCH_ALERTS_DATABASE_URL": self.alerts_db_url,
            "ACCORDWATCH_WEBHOOK_ALLOW": "127.0.0.1",
            # Status pages, calendar and feed without a key, so on loopback only.
            "ACCORDWATCH_PUBLIC_STATUS": "true",
            "ACCORDWATCH_INGEST_HOST": "127.0.0.1",
            "ACCORDWATCH_PROJECTOR_HOST": "127.0.0.1",
            "ACCORDWATCH_ALERTS_HOST": "127.0.0.1",
            "ACCORDWATCH_STATUS_PAGE_URL": f"http://127.0.0.1:{p.projector}/status",
            "ACCORDWATCH_INGEST_PORT": str(p.ingest),
            "ACCORDWATCH_PROJECTOR_PORT": str(p.projector),
            "ACCORDWATCH_PROJECTOR_METRICS_PORT": str(p.projector_metrics),
            "ACCORDWATCH_ALERTS_PORT": str(p.alerts),
            "ACCORDWATCH_ALERTS_METRICS_PORT": str(p.alerts_metrics),
            "ACCORDWATCH_LOG_LEVEL": os.environ.get("ACCORDWATCH_LOG_LEVEL", "warning"),
            "ACCORDWATCH_HOME": str(self.home),
            **self.extra_env,
        }

    def start_broker(self) -> None:
        """Assemble (cached), start and wait for the broker or cluster; create the topics."""
        libs = assemble()
        if self.brokers == 1:
            self.broker = LocalBroker(self.kafka_dir, port=self.ports.kafka, controller_port=self.ports.controller,
                                      libs=libs)
        else:
            self.broker = LocalCluster(self.kafka_dir, self.ports.kafka_nodes(self.brokers), libs=libs)
        self.broker.start()
        self.broker.wait_ready()
        asyncio.run(ensure_topics(self.bootstrap, default_topics(partitions=self.partitions, brokers=self.brokers)))

    def service(self, name: str) -> ServiceProcess:
        """The process definition of one service (not started)."""
        p = self.ports
        table = {
            "ingest": (["services.ingest"], f"http://127.0.0.1:{p.ingest}/readyz"),
            "projector-worker": (["services.projector.worker"], f"http://127.0.0.1:{p.projector_metrics}/metrics"),
            "projector-api": (["services.projector.api"], f"http://127.0.0.1:{p.projector}/healthz"),
            "alerts-worker": (["services.alerts.worker"], f"http://127.0.0.1:{p.alerts_metrics}/metrics"),
            "alerts-api": (["services.alerts.api"], f"http://127.0.0.1:{p.alerts}/readyz"),
        }
        args, health = table[name]
        return ServiceProcess(name, args, env=self.env(), log_dir=self.home / "logs", health_url=health, cwd=ROOT)

    def start(self, names: tuple[str, ...] = ALL_SERVICES) -> None:
        """Migrate the read model, start the services, wait for each health check."""
        self.migrate()
        for name in names:
            proc = self.services[name] = self.service(name)
            proc.start()
        for name in names:
            self.services[name].wait_healthy(timeout=90)

    def migrate(self) -> None:
        """`alembic upgrade head` for the read model and the alert store."""
        from services.alerts.migrate import upgrade as upgrade_alerts
        from services.alerts.sealing import Sealer
        from services.platform.db import make_engine
        from services.projector.readmodel.migrate import upgrade as upgrade_read_model

        engine = make_engine(self.db_url)
        try:
            upgrade_read_model(engine)
        finally:
            engine.dispose()
        engine = make_engine(self.alerts_db_url)
        try:
            upgrade_alerts(engine, Sealer(self.sealing_keys.split(",")))
        finally:
            engine.dispose()

    def restart(self, name: str) -> ServiceProcess:
        old = self.services.get(name)
        if old is not None:
            old.stop()
        proc = self.services[name] = self.service(name)
        proc.start()
        proc.wait_healthy(timeout=90)
        return proc

    def stop(self) -> None:
        """Stop the services (all signalled at once, so their shutdowns overlap), then the broker."""
        for proc in reversed(list(self.services.values())):
            proc.signal_stop()
        for proc in reversed(list(self.services.values())):
            proc.stop()
        if self.broker is not None:
            self.broker.stop()

    def processes(self) -> Iterator[tuple[str, int | None]]:
        for name, proc in self.services.items():
            yield name, proc.pid


def _new_sealing_key() -> str:
    from services.alerts.sealing import new_sealing_key

    return new_sealing_key()
