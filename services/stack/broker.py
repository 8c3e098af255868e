"""The embedded local Kafka broker: Kafka 4.1.1 in KRaft mode, from Maven Central jars.

`assemble()` resolves the jars with Maven (cached in ~/.m2 and stamped, so a second run
is instant); `LocalBroker` formats a data folder once, starts `java kafka.Kafka` on
configurable ports, waits until a metadata request succeeds, and stops or kills it. It is
one combined broker+controller node: alone (`make run`), or one of the static voters of a
`LocalCluster` (services/stack/cluster.py). `ensure_topics()` creates the topics
explicitly (no auto-creation anywhere), replicated as `Replication.for_brokers` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from services.platform.settings import DLQ_TOPIC, EVENTS_TOPIC

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J = ROOT / "deploy" / "kafka" / "log4j2.properties"
DEFAULT_LIBS = ROOT / ".local" / "kafka-libs"
JVM_OPTS = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]


class BrokerError(RuntimeError):
    """The broker could not be assembled, started or reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_cluster_id() -> str:
    """A KRaft cluster id: 22 characters of the URL-safe base64 alphabet (what StorageTool accepts)."""
    return uuid.uuid4().hex[:22]


def assemble(libs: Path = DEFAULT_LIBS, *, quiet: bool = True) -> Path:
    """Copy the broker's runtime jars into `libs` once per pom.xml content."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    stamp = libs / ".assembled"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is not installed; it assembles the Kafka broker from Maven Central")
    shutil.rmtree(libs, ignore_errors=True)
    libs.mkdir(parents=True)
    cmd = [
        "mvn",
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(POM),
        "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    done = subprocess.run(cmd, capture_output=quiet, text=True, check=False)
    if done.returncode != 0:
        raise BrokerError(
            f"mvn failed ({done.returncode}):\n{(done.stdout or '')[-3000:]}{(done.stderr or '')[-2000:]}"
        )
    stamp.write_text(digest)
    return libs


@dataclass(frozen=True)
class Replication:
    """How many copies of each partition, and how many must hold a write before it is acknowledged."""

    factor: int = 1
    min_insync: int = 1

    @classmethod
    def for_brokers(cls, brokers: int) -> Replication:
        """Three copies, two in sync (one broker may be lost without refusing writes) on three or
        more brokers; one and one on a single broker."""
        if brokers >= 3:
            return cls(3, 2)
        return cls(brokers, 1)

    def topic_config(self) -> dict[str, str]:
        return {"min.insync.replicas": str(self.min_insync)}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    replication: int = 1


def default_topics(
    events_topic: str = EVENTS_TOPIC, dlq_topic: str = DLQ_TOPIC, partitions: int = 6, *, brokers: int = 1
) -> list[TopicSpec]:
    """The topics accordwatch needs: the event log (kept forever, never compacted) and its DLQ,
    replicated for the number of brokers."""
    replication = Replication.for_brokers(brokers)
    keep = {"retention.ms": "-1", "cleanup.policy": "delete", **replication.topic_config()}
    return [
        TopicSpec(events_topic, partitions, keep, replication.factor),
        TopicSpec(dlq_topic, 1, keep, replication.factor),
    ]


async def ensure_topics(bootstrap: str, topics: Iterable[TopicSpec], *, timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    async with asyncio.timeout(timeout):
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [t for t in topics if t.name not in existing]
            if not wanted:
                return []
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t.name, t.partitions, t.replication, topic_configs=dict(t.config)) for t in wanted]
                )
            # Wait until the metadata shows every topic, so producers never race creation.
            while not {t.name for t in wanted} <= set(await admin.list_topics()):
                await asyncio.sleep(0.1)
            return [t.name for t in wanted]
        finally:
            await admin.close()


class LocalBroker:
    """One KRaft node (broker + controller) with its data in `data_dir`.

    Alone it is its own quorum and its own cluster; as one node of a cluster it is given
    its `node_id`, the static `voters` (`1@host:port,2@...`), the shared `cluster_id` it is
    formatted with, and the cluster's `replication` for the internal topics.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 9092,
        controller_port: int = 9093,
        libs: Path = DEFAULT_LIBS,
        host: str = "127.0.0.1",
        node_id: int = 1,
        voters: str | None = None,
        cluster_id: str | None = None,
        replication: Replication = Replication(),
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.controller_port = controller_port
        self.libs = libs
        self.host = host
        self.node_id = node_id
        self.voters = voters or f"{node_id}@{host}:{controller_port}"
        self.cluster_id = cluster_id
        self.replication = replication
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def properties(self) -> Path:
        return self.data_dir / "server.properties"

    def config(self) -> dict[str, str]:
        """The node's server.properties, as a mapping."""
        h = self.host
        copies, in_sync = str(self.replication.factor), str(self.replication.min_insync)
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": f"PLAINTEXT://{h}:{self.port},CONTROLLER://{h}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{h}:{self.port},CONTROLLER://{h}:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": copies,
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": copies,
            "transaction.state.log.min.isr": in_sync,
            "share.coordinator.state.topic.replication.factor": copies,
            "share.coordinator.state.topic.min.isr": in_sync,
            "default.replication.factor": copies,
            "min.insync.replicas": in_sync,
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": "33554432",
            "log.flush.interval.messages": "9223372036854775807",
        }

    def _write_properties(self) -> None:
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in self.config().items()))

    def java_command(self, main: str, *args: str) -> list[str]:
        """`java` with the broker's JVM options and jars, running `main` (a broker or one of Kafka's tools)."""
        return [
            "java",
            *JVM_OPTS,
            f"-Dlog4j2.configurationFile={LOG4J}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def format(self) -> None:
        """Write the config and format storage once (reruns keep the data)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_properties()
        cluster_file = self.data_dir / "cluster-id"
        if not cluster_file.exists():
            cluster_file.write_text(self.cluster_id or new_cluster_id())
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cmd = self.java_command(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_file.read_text().strip(),
            "-c",
            str(self.properties),
            "-g",
        )
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")

    def start(self) -> None:
        """Format if needed and launch the broker in its own session."""
        if self.running():
            return
        self.format()
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.java_command("kafka.Kafka", str(self.properties)),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Poll until the broker answers a metadata request, with a deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise BrokerError(f"Kafka exited ({self.proc and self.proc.returncode}):\n{self.tail()}")
            try:
                if asyncio.run(self._metadata_ok()):
                    return
            finally:
                logging.getLogger("aiokafka").setLevel(logging.NOTSET)
            time.sleep(0.2)
        raise BrokerError(f"Kafka not ready on {self.bootstrap} after {timeout:.0f}s:\n{self.tail()}")

    async def _metadata_ok(self) -> bool:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # refused connects are expected here
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2_000)
        try:
            async with asyncio.timeout(5):
                await admin.start()
                await admin.describe_cluster()
                return True
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after `timeout`."""
        self._stop(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, for failure tests."""
        self._stop(signal.SIGKILL, 10.0)

    def signal_stop(self) -> None:
        """Begin a controlled shutdown (SIGTERM) without waiting for it; `stop()` waits."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def _stop(self, sig: signal.Signals, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no broker log)"


def main() -> None:
    """`python -m services.stack.broker assemble`: fetch the jars (for scripts/setup.sh)."""
    import sys

    if sys.argv[1:] != ["assemble"]:
        raise SystemExit("usage: python -m services.stack.broker assemble")
    print(assemble(quiet=True))


if __name__ == "__main__":
    main()
