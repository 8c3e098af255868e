"""The local cluster's configuration, without starting a JVM: nodes, quorum, replication, ports, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.stack.broker import BrokerError, LocalBroker, Replication, default_topics
from services.stack.cluster import LocalCluster
from services.stack.local import LocalStack, Ports


def test_three_brokers_keep_three_copies_two_in_sync_and_one_broker_one() -> None:
    assert Replication.for_brokers(1) == Replication(1, 1)
    assert Replication.for_brokers(2) == Replication(2, 1)
    assert Replication.for_brokers(3) == Replication(3, 2)
    assert Replication.for_brokers(5) == Replication(3, 2)


def test_the_topics_are_replicated_for_the_brokers_there_are() -> None:
    for brokers, (factor, in_sync) in ((1, (1, "1")), (3, (3, "2"))):
        events, dlq = default_topics(brokers=brokers)
        for topic in (events, dlq):
            assert topic.replication == factor
            assert topic.config["min.insync.replicas"] == in_sync
            assert topic.config["retention.ms"] == "-1"
        assert (events.partitions, dlq.partitions) == (6, 1)


def test_cluster_nodes_share_an_id_and_a_quorum_each_on_its_own_ports_and_folder(tmp_path: Path) -> None:
    ports = [(19092, 19093), (19094, 19095), (19096, 19097)]
    cluster = LocalCluster(tmp_path / "c", ports)
    configs = [node.config() for node in cluster.nodes]
    assert [c["node.id"] for c in configs] == ["1", "2", "3"]
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert {c["controller.quorum.voters"] for c in configs} == {voters}
    for config, (port, controller) in zip(configs, ports, strict=True):
        assert config["process.roles"] == "broker,controller"
        assert config["listeners"] == f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"
        assert config["offsets.topic.replication.factor"] == "3"
        assert config["transaction.state.log.replication.factor"] == "3"
        assert config["transaction.state.log.min.isr"] == "2"
        assert config["default.replication.factor"] == "3"
        assert config["min.insync.replicas"] == "2"
        assert config["auto.create.topics.enable"] == "false"
    assert len({c["log.dirs"] for c in configs}) == 3
    assert len({node.cluster_id for node in cluster.nodes}) == 1
    assert cluster.bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    # The id is made once and kept: the same folder is the same cluster.
    assert LocalCluster(tmp_path / "c", ports).cluster_id == cluster.cluster_id
    assert LocalCluster(tmp_path / "other", ports).cluster_id != cluster.cluster_id


def test_a_single_broker_is_its_own_quorum_with_one_copy(tmp_path: Path) -> None:
    config = LocalBroker(tmp_path, port=29092, controller_port=29093).config()
    assert config["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert (config["offsets.topic.replication.factor"], config["min.insync.replicas"]) == ("1", "1")


def test_nodes_sharing_a_port_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="two ports of its own"):
        LocalCluster(tmp_path, [(19092, 19093), (19093, 19095), (19096, 19097)])


def test_the_stack_finds_every_node_and_keeps_the_cluster_apart_from_the_single_broker(tmp_path: Path) -> None:
    ports = Ports()
    assert ports.kafka_nodes(3) == [(9092, 9093), (9094, 9095), (9096, 9097)]
    one = LocalStack(home=tmp_path, ports=ports, dev_key="k")
    three = LocalStack(home=tmp_path, ports=ports, dev_key="k", brokers=3)
    assert one.bootstrap == "127.0.0.1:9092"
    assert three.bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert three.env()["ACCORDWATCH_KAFKA_BOOTSTRAP_SERVERS"] == three.bootstrap
    assert one.kafka_dir != three.kafka_dir
    with pytest.raises(ValueError, match="1 to 3 brokers"):
        ports.kafka_nodes(4)


def test_ports_of_nodes_two_and_three_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCORDWATCH_KAFKA_2_PORT", "19194")
    monkeypatch.setenv("ACCORDWATCH_CONTROLLER_3_PORT", "19197")
    assert Ports.from_env().kafka_nodes(3) == [(9092, 9093), (19194, 9095), (9096, 19197)]


def test_run_accepts_one_or_three_brokers_only(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--brokers", "2"], env={"ACCORDWATCH_HOME": str(tmp_path)})
    assert result.exit_code == 2
    assert "1 or 3" in result.output
