"""Replication on a real three-node KRaft cluster: a broker's death, two brokers down, a controller's death.

The stack (ingest, projector and alerts workers, query API) runs on the cluster with its
topics replicated three times and two replicas in sync (`min.insync.replicas=2`). Each
test writes its figures to bench/results/cluster-<name>-<time>.json.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from aiokafka.errors import KafkaError

from services.stack.broker import Replication, TopicSpec, ensure_topics
from services.stack.cluster import LocalCluster
from tests.cluster.conftest import PRODUCE_TIMEOUT_S, ClusterStack, gaps, now
from tests.cluster.writer import PartitionWriter
from tests.conftest import read_topic
from tests.posting import Answer, RatePoster
from tests.workload import realistic_events

pytestmark = [pytest.mark.kafka, pytest.mark.stack, pytest.mark.cluster]

RATE = 200.0  # events per second, one POST each
TWO_DOWN_RATE = 50.0  # every request waits out ingest's produce timeout then: fewer keep fewer in flight
DOWN_S = 20.0  # how long the killed broker stays dead
TWO_DOWN_S = 15.0  # how long two brokers stay stopped
SLACK_S = 3.0  # on top of ingest's produce timeout: a loaded two-core machine answers late


def settle(stack: ClusterStack, acked: set[str], timeout: float = 180.0) -> tuple[dict[str, int], dict[str, int]]:
    """Poll until every acknowledged id is in the read model and the alert store (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        stored, alerted = stack.stored(acked), stack.alerted(acked)
        if (len(stored) == len(acked) and len(alerted) == len(acked)) or time.monotonic() > deadline:
            return stored, alerted
        time.sleep(1.0)


def answer_figures(poster: RatePoster, start: float, end: float) -> dict[str, Any]:
    """What ingest answered: counts by status, the slowest 503, the longest stretch without a 202."""
    answers = poster.answers
    statuses = Counter(a.status for a in answers)
    refused = [a.seconds for a in answers if a.status == 503]
    accepted = sorted(a.seconds for a in answers if a.status == 202)
    return {
        "posted": len(answers),
        "acked": statuses.get(202, 0),
        "answered_503": statuses.get(503, 0),
        "answered_other": {str(k): v for k, v in statuses.items() if k not in (202, 503)},
        "answered_other_first": [f"{a.sent_at - start:+.1f}s {a.status} {a.detail[:80]}"
                                 for a in answers if a.status not in (202, 503)][:5],
        "slowest_503_s": round(max(refused), 2) if refused else None,
        "p99_202_s": round(accepted[int(0.99 * (len(accepted) - 1))], 3) if accepted else None,
        "slowest_healthz_s": round(max((p.seconds for p in poster.probes), default=0.0), 2),
        "503s_over_the_bound": len(over_bound(poster)),
        "503s_over_the_plain_bound": sum(1 for a in answers if a.status == 503
                                         and a.seconds > PRODUCE_TIMEOUT_S + SLACK_S),
        "rate_per_s": round(len(answers) / (poster.stopped_at - poster.started_at), 1),
        "late_starts": poster.late_starts,
        "longest_without_a_202_s": gaps([a.sent_at + a.seconds for a in answers if a.status == 202], start, end),
    }


def timeline(answers: list[Answer], zero: float, step: float = 5.0) -> list[dict[str, Any]]:
    """What was sent in each `step` seconds around `zero` (the failure): counts by answer, slowest answer."""
    buckets: dict[int, list[Answer]] = {}
    for a in answers:
        buckets.setdefault(int((a.sent_at - zero) // step), []).append(a)
    return [{"from_s": k * step, "sent": len(b), "202": sum(a.status == 202 for a in b),
             "503": sum(a.status == 503 for a in b), "slowest_s": round(max(a.seconds for a in b), 2)}
            for k, b in sorted(buckets.items())]


def create_topic_until_it_works(cluster: LocalCluster, since: float, timeout: float = 90.0) -> float:
    """Seconds from `since` until a topic could be created (CreateTopics needs an active controller)."""
    probe = TopicSpec(f"probe.{uuid.uuid4().hex[:8]}", 1, {}, 2)
    deadline = time.monotonic() + timeout
    running = ",".join(node.bootstrap for node in cluster.nodes if node.running())
    while True:
        try:
            asyncio.run(ensure_topics(running, [probe], timeout=5))
            return round(now() - since, 2)
        except (KafkaError, OSError, TimeoutError):
            assert time.monotonic() < deadline, f"no topic could be created {timeout:.0f}s after the controller died"


def over_bound(poster: RatePoster) -> list[tuple[Answer, float]]:
    """503s slower than ingest's produce timeout plus SLACK_S plus what answering cost at that moment
    (the slowest /healthz probe sent while the 503 was pending): a starved machine delays every answer,
    an ingest that waits on Kafka past its timeout delays only these."""
    slow = []
    for a in poster.answers:
        if a.status == 503:
            bound = PRODUCE_TIMEOUT_S + SLACK_S + poster.answering_cost(a.sent_at - 1.0, a.sent_at + a.seconds)
            if a.seconds > bound:
                slow.append((a, round(bound, 2)))
    return slow


def judge_answers(poster: RatePoster) -> None:
    """Ingest answered 202, or 503 within its bound; never anything else."""
    others = [a for a in poster.answers if a.status not in (202, 503)]
    assert not others, f"{len(others)} answers neither 202 nor 503, e.g. {others[:3]}"
    slow = over_bound(poster)
    assert not slow, f"{len(slow)} 503s slower than their bound, e.g. {slow[:3]}"


def test_a_killed_broker_loses_no_acknowledged_event_and_the_workers_carry_on(
    cluster: LocalCluster, cluster_stack: ClusterStack, report: Any
) -> None:
    """SIGKILL the broker leading most partitions while events are posted at 200/s; restart it 20 s later."""
    stack = cluster_stack
    poster = RatePoster(stack.stack.urls["ingest"], stack.stack.dev_key,
                        realistic_events(10**6, seed=1901, subjects=150), rate=RATE).start()
    try:
        poster.wait_until(lambda p: p.count(202) >= 1_000, timeout=120, what="1,000 events acknowledged")
        victim = cluster.busiest_leader([stack.events_topic])
        led = [p["partition"] for p in cluster.partitions([stack.events_topic]) if p["leader"] == victim]
        killed_at = now()
        cluster.node(victim).kill()
        time.sleep(DOWN_S)  # the outage this scenario prescribes, not a synchronisation
        restarted_at = now()
        cluster.node(victim).start()
        # Go on posting until another 1,000 events sent after the restart were acknowledged.
        poster.wait_until(lambda p: p.count(202, since=restarted_at) >= 1_000, timeout=180,
                          what="1,000 events acknowledged after the restart")
    finally:
        answers = poster.stop()
    cluster.wait_in_sync(stack.topics)
    back_in_sync_s = round(now() - restarted_at, 1)

    acked = poster.acked()
    stored, alerted = settle(stack, acked)
    on_topic = stack.on_topic()
    refused_ids = {a.id for a in answers if a.status == 503}
    figures = {
        **answer_figures(poster, killed_at, restarted_at),
        "killed_node": victim,
        "partitions_it_led": led,
        "seconds_down": DOWN_S,
        "seconds_until_back_in_sync": back_in_sync_s,
        "present_in_read_model": len(stored),
        "missing_from_read_model": len(acked - set(stored)),
        "duplicated_in_read_model": sum(1 for n in stored.values() if n > 1),
        "present_in_alert_store": len(alerted),
        "duplicated_on_topic": sum(1 for i in acked if on_topic.get(i, 0) > 1),
        "answered_503_but_written": len(refused_ids & set(on_topic)),
        "workers_carried_on": stack.workers_carried_on(),
        "worker_log_errors": stack.worker_log_errors(),
        "worker_group_joins_so_far": stack.worker_group_joins(),
        "timeline_from_kill": timeline(answers, killed_at),
    }
    report("broker-killed", figures)

    judge_answers(poster)
    assert figures["missing_from_read_model"] == 0
    assert figures["duplicated_in_read_model"] == 0
    assert len(alerted) == len(acked), f"{len(acked) - len(alerted)} acknowledged events never reached alerts"
    assert figures["duplicated_on_topic"] == 0
    assert all(figures["workers_carried_on"].values()), figures["workers_carried_on"]


def test_two_brokers_down_is_503_within_the_bound_and_nothing_acknowledged_is_lost(
    cluster: LocalCluster, cluster_stack: ClusterStack, report: Any
) -> None:
    """Stop two of the three brokers: min.insync.replicas=2 can no longer be met, so ingest must refuse."""
    stack = cluster_stack
    poster = RatePoster(stack.stack.urls["ingest"], stack.stack.dev_key,
                        realistic_events(10**6, seed=1902, subjects=150), rate=TWO_DOWN_RATE).start()
    try:
        poster.wait_until(lambda p: p.count(202) >= 200, timeout=120, what="200 events acknowledged")
        first = cluster.busiest_leader([stack.events_topic])
        second = min(set(cluster.node_ids) - {first})
        stopping_at = now()
        cluster.node(first).stop()  # a controlled shutdown each, one after the other
        cluster.node(second).stop()
        down_at = now()
        time.sleep(TWO_DOWN_S)  # the outage this scenario prescribes, not a synchronisation
        restarted_at = now()
        cluster.node(first).start()
        cluster.node(second).start()
        poster.wait_until(lambda p: p.count(202, since=restarted_at) >= 200, timeout=180,
                          what="200 events acknowledged after the restart")
    finally:
        answers = poster.stop()
    cluster.wait_in_sync(stack.topics)

    acked = poster.acked()
    stored, alerted = settle(stack, acked)
    on_topic = stack.on_topic()
    # Sent once both were down, early enough that no restart could come to the rescue within the bound.
    during = [a for a in answers if down_at <= a.sent_at < restarted_at - PRODUCE_TIMEOUT_S - SLACK_S]
    writable_again = min((a.sent_at + a.seconds for a in answers if a.status == 202 and a.sent_at >= restarted_at),
                         default=float("nan"))
    figures = {
        **answer_figures(poster, down_at, restarted_at),
        "stopped_nodes": [first, second],
        "seconds_to_stop_both": round(down_at - stopping_at, 1),
        "sent_while_down": len(during),
        "acked_while_down": sum(a.status == 202 for a in during),
        "slowest_503_while_down_s": round(max((a.seconds for a in during if a.status == 503), default=0.0), 2),
        "seconds_from_restart_to_first_202": round(writable_again - restarted_at, 1),
        "present_in_read_model": len(stored),
        "missing_from_read_model": len(acked - set(stored)),
        "present_in_alert_store": len(alerted),
        "duplicated_on_topic": sum(1 for i in acked if on_topic.get(i, 0) > 1),
        "answered_503_but_written": len({a.id for a in answers if a.status == 503} & set(on_topic)),
        "workers_carried_on": stack.workers_carried_on(),
        "worker_group_joins_so_far": stack.worker_group_joins(),
        "timeline_from_second_stop": timeline(answers, down_at),
    }
    report("two-brokers-down", figures)

    judge_answers(poster)
    assert len(during) >= TWO_DOWN_RATE * (TWO_DOWN_S - PRODUCE_TIMEOUT_S - SLACK_S) / 2, "too little was sent"
    assert figures["acked_while_down"] == 0, "a write was acknowledged by fewer than min.insync.replicas"
    assert figures["missing_from_read_model"] == 0
    assert len(alerted) == len(acked)
    assert figures["duplicated_on_topic"] == 0
    assert all(figures["workers_carried_on"].values()), figures["workers_carried_on"]


def test_the_active_controller_killed_a_new_one_is_elected_and_topics_stay_writable(
    cluster: LocalCluster, cluster_stack: ClusterStack, report: Any
) -> None:
    """SIGKILL the quorum's leader while a producer writes to every partition; time the stretch without writes."""
    topic = f"failover.{uuid.uuid4().hex[:8]}"
    replication = Replication.for_brokers(3)
    asyncio.run(ensure_topics(cluster.bootstrap, [TopicSpec(topic, 6, replication.topic_config(), 3)]))
    cluster.wait_in_sync([topic])
    writer = PartitionWriter(cluster.bootstrap, topic, partitions=6).start()
    try:
        writer.wait_until(lambda w: len(w.written) >= 300, timeout=60, what="300 records acknowledged")
        controller = cluster.active_controller()
        led = [p["partition"] for p in cluster.partitions([topic]) if p["leader"] == controller]
        killed_at = now()
        cluster.node(controller).kill()
        metadata_writable_s = create_topic_until_it_works(cluster, killed_at)
        elected = cluster.active_controller()
        elected_at = now()
        writer.wait_until(lambda w: w.partitions_acked_since(elected_at) == 6, timeout=120,
                          what="every partition acknowledging records sent after the election")
        resumed_at = now()
    finally:
        writer.stop()
    on_topic = Counter(int(r.value) for r in asyncio.run(read_topic(cluster.bootstrap, topic, timeout=60)))
    by_partition = {p: gaps([w.acked_at for w in writer.written if w.partition == p], killed_at, resumed_at)
                    for p in range(6)}
    figures = {
        "killed_controller": controller,
        "new_controller": elected,
        "partitions_it_led": led,
        "seconds_until_metadata_writable": metadata_writable_s,
        "seconds_without_writes": gaps(writer.acked_at(), killed_at, resumed_at),
        "seconds_without_writes_by_partition": by_partition,
        "records_acked": len(writer.acked),
        "records_lost": len(writer.acked - set(on_topic)),
        "records_duplicated": sum(1 for n in on_topic.values() if n > 1),
        "producer_errors": writer.errors[:5],
    }
    report("controller-failover", figures)

    assert elected != controller
    assert figures["records_lost"] == 0
    assert figures["records_duplicated"] == 0
    assert not writer.errors
