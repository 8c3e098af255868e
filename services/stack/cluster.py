"""A local Kafka cluster: three combined broker+controller KRaft nodes on one machine.

Each node is a `LocalBroker` with its own ports and data folder; they share one cluster
id (each folder formatted with it) and one static quorum (`1@host:c1,2@host:c2,3@host:c3`).
Internal topics are replicated three times with two in sync (`Replication.for_brokers`).
The cluster is for the tests and for `accordwatch run --brokers 3`; `make run` stays on
one broker.

Besides start and stop, the cluster answers what failure tests need to aim at: which
node leads which partitions, whether every replica is back in sync, and which node is the
active controller (from KRaft's own DescribeQuorum, through Kafka's MetadataQuorumCommand).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.stack.broker import DEFAULT_LIBS, BrokerError, LocalBroker, Replication, new_cluster_id

RETRIABLE_METADATA_ERRORS = {3, 5}  # UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE


class LocalCluster:
    """Combined KRaft nodes 1..n on `host`, node i listening on `ports[i-1]` = (broker, controller)."""

    def __init__(
        self,
        data_dir: Path,
        ports: Sequence[tuple[int, int]],
        *,
        libs: Path = DEFAULT_LIBS,
        host: str = "127.0.0.1",
    ) -> None:
        if len({p for pair in ports for p in pair}) != 2 * len(ports):
            raise BrokerError(f"every node needs two ports of its own: {list(ports)}")
        self.data_dir = data_dir
        self.host = host
        self.libs = libs
        self.replication = Replication.for_brokers(len(ports))
        self.cluster_id = _cluster_id(data_dir)
        voters = ",".join(f"{i}@{host}:{controller}" for i, (_, controller) in enumerate(ports, 1))
        self.nodes = [
            LocalBroker(
                data_dir / f"node-{i}", port=port, controller_port=controller, libs=libs, host=host,
                node_id=i, voters=voters, cluster_id=self.cluster_id, replication=self.replication,
            )
            for i, (port, controller) in enumerate(ports, 1)
        ]

    @property
    def bootstrap(self) -> str:
        """Every node, comma-separated: clients find the cluster through whichever answers."""
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def node_ids(self) -> list[int]:
        return [node.node_id for node in self.nodes]

    def node(self, node_id: int) -> LocalBroker:
        return self.nodes[node_id - 1]

    def start(self) -> None:
        """Launch every node (formatting new folders with the cluster id)."""
        for node in self.nodes:
            node.start()

    def running(self) -> bool:
        return all(node.running() for node in self.nodes)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until every running node answers and has registered with the quorum."""
        deadline = time.monotonic() + timeout
        up = [node for node in self.nodes if node.running()]
        for node in up:
            node.wait_ready(max(1.0, deadline - time.monotonic()))
        wanted = {node.node_id for node in up}
        while (seen := self.registered()) != wanted:
            if time.monotonic() > deadline:
                raise BrokerError(f"cluster: nodes {sorted(wanted)} running, {sorted(seen)} registered")
            time.sleep(0.2)

    def registered(self) -> set[int]:
        """The node ids the cluster's metadata lists as live brokers (empty if none answers)."""
        try:
            described = asyncio.run(self._admin(lambda admin: admin.describe_cluster()))
        except (KafkaError, OSError, TimeoutError):
            return set()
        return {int(b["node_id"]) for b in described["brokers"]}

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node: SIGTERM to all at once (a controlled shutdown), SIGKILL after `timeout`."""
        for node in self.nodes:
            node.signal_stop()
        for node in self.nodes:
            node.stop(timeout)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    # ------------------------------------------------------------------ what failure tests aim at

    def partitions(self, topics: Iterable[str], timeout: float = 15.0) -> list[dict[str, Any]]:
        """Each partition of `topics`: {"topic", "partition", "leader", "replicas", "isr"}."""
        wanted = list(topics)
        deadline = time.monotonic() + timeout
        while True:
            described = asyncio.run(self._admin(lambda admin: admin.describe_topics(wanted)))
            errors = {t["topic"]: t["error_code"] for t in described if t["error_code"]}
            if not errors:
                break
            # A node that has not caught up with the metadata log yet answers "unknown topic".
            if set(errors.values()) - RETRIABLE_METADATA_ERRORS or time.monotonic() > deadline:
                raise BrokerError(f"describing topics failed: {errors}")
            time.sleep(0.2)
        out = [
            {"topic": t["topic"], "partition": p["partition"], "leader": p["leader"],
             "replicas": sorted(p["replicas"]), "isr": sorted(p["isr"])}
            for t in described for p in t["partitions"]
        ]
        return sorted(out, key=lambda p: (p["topic"], p["partition"]))

    def busiest_leader(self, topics: Iterable[str]) -> int:
        """The node that leads the most partitions of `topics` (lowest id on a tie)."""
        led = Counter(int(p["leader"]) for p in self.partitions(topics) if p["leader"] >= 0)
        return min(led, key=lambda node: (-led[node], node))

    def in_sync(self, topics: Iterable[str]) -> bool:
        """Every partition of `topics` has a leader and all its replicas in sync."""
        try:
            parts = self.partitions(topics)
        except (KafkaError, OSError, TimeoutError, BrokerError):
            return False
        return bool(parts) and all(p["leader"] >= 0 and p["isr"] == p["replicas"] for p in parts)

    def wait_in_sync(self, topics: Iterable[str], timeout: float = 120.0) -> None:
        """Poll until every replica of `topics` is back in sync (after a node returned)."""
        wanted = list(topics)
        deadline = time.monotonic() + timeout
        while not self.in_sync(wanted):
            if time.monotonic() > deadline:
                raise BrokerError(f"replicas of {wanted} not in sync after {timeout:.0f}s")
            time.sleep(0.5)

    def active_controller(self, timeout: float = 60.0) -> int:
        """The node id of the quorum's leader (the active controller), as DescribeQuorum reports it."""
        up = [node for node in self.nodes if node.running()]
        cmd = [*self.nodes[0].java_command("org.apache.kafka.tools.MetadataQuorumCommand"),
               "--bootstrap-server", ",".join(node.bootstrap for node in up), "describe", "--status"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
        found = re.search(r"^LeaderId:\s+(\d+)", done.stdout, re.MULTILINE)
        if done.returncode != 0 or found is None:
            raise BrokerError(f"describing the quorum failed ({done.returncode}):\n{done.stdout}{done.stderr[-2000:]}")
        return int(found.group(1))

    async def _admin(self, call: Any) -> Any:
        bootstrap = ",".join(node.bootstrap for node in self.nodes if node.running()) or self.bootstrap
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # dead nodes refuse connections here
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
        try:
            async with asyncio.timeout(15):
                await admin.start()
                return await call(admin)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
            logging.getLogger("aiokafka").setLevel(logging.NOTSET)


def _cluster_id(data_dir: Path) -> str:
    """The id every node is formatted with: made once, kept in the cluster's folder."""
    stored = data_dir / "cluster-id"
    if not stored.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        stored.write_text(new_cluster_id())
    return stored.read_text().strip()
