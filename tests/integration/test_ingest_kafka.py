"""Ingest against the real broker: what a 202 means, what lands on the topic, and outages."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uuid_utils
from aiokafka.partitioner import DefaultPartitioner

from schemas.cloudevents import from_record
from services.platform.auth import hash_key, new_key
from services.stack.broker import LocalBroker, TopicSpec, default_topics, ensure_topics, free_port
from tests.conftest import Broker, RunningStack, make_stack, read_topic
from tests.samples import event

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"writer": new_key(), "reader": new_key()}


@pytest.fixture(scope="module")
def ingest(kafka: Broker, tmp_path_factory: pytest.TempPathFactory, keys: dict[str, str]) -> Iterator[RunningStack]:
    home = tmp_path_factory.mktemp("ingest")
    keyfile = home / "keys.json"
    keyfile.write_text(json.dumps([
        {"name": "writer", "sha256": hash_key(keys["writer"]), "scopes": ["events:write"]},
        {"name": "reader", "sha256": hash_key(keys["reader"]), "scopes": ["read"]},
    ]))
    running = make_stack(kafka, home, services=("ingest",), env={"ACCORDWATCH_API_KEYS_FILE": str(keyfile)})
    try:
        yield running
    finally:
        running.close()


def _headers(records: Any) -> dict[str, bytes]:
    return dict(records.headers)


def test_posted_event_is_on_the_topic_with_key_headers_and_body(kafka: Broker, ingest: RunningStack) -> None:
    doc = event("AgreementSigned")
    response = ingest.ingest.post("/v1/events", json=doc)
    assert response.status_code == 202, response.text
    ack = response.json()
    records = kafka.read_all(ingest.events_topic)
    mine = [r for r in records if dict(r.headers)["ce_id"].decode() == ack["id"]]
    assert len(mine) == 1
    record = mine[0]
    assert (record.partition, record.offset) == (ack["partition"], ack["offset"])
    assert record.key == b"us-sv-aca-2019"
    headers = _headers(record)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"AgreementSigned"
    assert headers["ce_subject"] == b"us-sv-aca-2019"
    assert headers["content-type"] == b"application/json"
    body = orjson.loads(record.value)
    assert body["id"] == ack["id"]
    assert body["data"]["parties"] == ["US", "SV"]
    assert body["recorded_at"] == ack["recorded_at"]
    assert from_record(record.key, record.value, record.headers).type == "AgreementSigned"


def test_batch_lands_in_order_per_subject(kafka: Broker, ingest: RunningStack) -> None:
    subjects = [f"ordering-{i}" for i in range(4)]
    docs = [event("NegotiationReported", subject=s, summary=f"{s} #{n}") for n in range(25) for s in subjects]
    acks = ingest.post(*docs)
    assert len(acks) == len(docs)
    ids = {a["id"] for a in acks}
    records = [r for r in kafka.read_all(ingest.events_topic) if dict(r.headers)["ce_id"].decode() in ids]
    for subject in subjects:
        on_topic = sorted((r for r in records if r.key == subject.encode()), key=lambda r: r.offset)
        assert len({r.partition for r in on_topic}) == 1, "one subject, one partition"
        assert [orjson.loads(r.value)["summary"] for r in on_topic] == [f"{subject} #{n}" for n in range(25)]


def test_batch_acks_name_where_each_record_landed(kafka: Broker, ingest: RunningStack) -> None:
    """Batches go to Kafka as one record batch per partition: each ack is its own record's
    partition and offset, and a subject lands on the partition a plain `send` would choose."""
    subjects = [f"acks-{i}" for i in range(12)]
    docs = [event("NegotiationReported", subject=s, summary=f"{s} #{n}") for n in range(30) for s in subjects]
    acks = ingest.post(*docs)
    by_id = {a["id"]: a for a in acks}
    records = [r for r in kafka.read_all(ingest.events_topic) if dict(r.headers)["ce_id"].decode() in by_id]
    assert len(records) == len(docs)
    count = 6  # make_stack's events topic: kafka.topic()'s default
    assert {r.partition for r in records} <= set(range(count))
    for record in records:
        ack = by_id[dict(record.headers)["ce_id"].decode()]
        assert (record.partition, record.offset) == (ack["partition"], ack["offset"])
        assert orjson.loads(record.value)["id"] == ack["id"]
        assert record.partition == DefaultPartitioner()(record.key, list(range(count)), list(range(count)))


def test_bad_batch_leaves_the_topic_untouched(kafka: Broker, ingest: RunningStack) -> None:
    before = len(kafka.read_all(ingest.events_topic))
    docs = [event("AgreementSigned"), event("TransferReported"), event("AgreementSigned")]
    docs[1]["data"]["count"] = -3
    del docs[2]["sources"]
    response = ingest.ingest.post("/v1/events/batch", json={"events": docs})
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["invalid_indexes"] == [1, 2]
    assert {e["field"] for e in problem["errors"]} >= {"data.count", "sources"}
    # A later good event is the only thing that lands: nothing of the bad batch came before it.
    ack = ingest.post(event("NegotiationReported"))[0]
    records = kafka.read_all(ingest.events_topic, expect=before + 1)
    assert len(records) == before + 1
    assert dict(records[-1].headers)["ce_id"].decode() == ack["id"] or any(
        dict(r.headers)["ce_id"].decode() == ack["id"] for r in records)


def test_no_key_is_401_and_read_only_key_is_403(ingest: RunningStack, keys: dict[str, str]) -> None:
    base = ingest.stack.urls["ingest"]
    anonymous = httpx.post(f"{base}/v1/events", json=event("AgreementSigned"))
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    reader = httpx.post(f"{base}/v1/events", json=event("AgreementSigned"),
                        headers={"Authorization": f"Bearer {keys['reader']}"})
    assert reader.status_code == 403
    assert reader.json()["title"]
    writer = httpx.post(f"{base}/v1/events", json=event("AgreementSigned"),
                        headers={"Authorization": f"Bearer {keys['writer']}"})
    assert writer.status_code == 202


def test_broker_down_is_503_quickly_and_retries_land_once_each(tmp_path: Path, kafka_libs: Path) -> None:
    """Stop the broker under a running ingest: 503 + Retry-After within the produce timeout,
    then, after a restart on the same data, every retried event is on the topic, and any
    repeat carries the same id."""
    broker = LocalBroker(tmp_path / "kafka", port=free_port(), controller_port=free_port(), libs=kafka_libs)
    broker.start()
    try:
        broker.wait_ready()
        asyncio.run(ensure_topics(broker.bootstrap, default_topics(partitions=3)))
        outage = _OutageStack(broker, tmp_path)
        try:
            outage.run()
        finally:
            outage.close()
    finally:
        broker.stop()


class _OutageStack:
    def __init__(self, broker: LocalBroker, home: Path) -> None:
        from services.stack.local import LocalStack, Ports

        ports = Ports.free()
        ports.kafka = broker.port
        self.broker = broker
        self.stack = LocalStack(home=home, ports=ports, dev_key=new_key(),
                                extra_env={"ACCORDWATCH_INGEST_PRODUCE_TIMEOUT_S": "2"})
        self.stack.start(("ingest",))
        self.client = httpx.Client(base_url=self.stack.urls["ingest"], timeout=30,
                                   headers={"Authorization": f"Bearer {self.stack.dev_key}"})

    def close(self) -> None:
        self.client.close()
        self.stack.stop()

    def run(self) -> None:
        first = [event("NegotiationReported", summary=f"before {i}") for i in range(5)]
        assert self.client.post("/v1/events/batch", json={"events": first}).status_code == 202

        self.broker.stop()
        pending = [event("NegotiationReported", id=str(uuid_utils.uuid7()), summary=f"during {i}") for i in range(20)]
        refused: list[dict[str, Any]] = []
        for doc in pending:
            started = time.monotonic()
            response = self.client.post("/v1/events", json=doc)
            elapsed = time.monotonic() - started
            if response.status_code == 503:
                assert elapsed < 2 + 3, f"503 took {elapsed:.1f}s"
                assert int(response.headers["retry-after"]) > 0
                assert response.json()["ids"] == [doc["id"]]
                refused.append(doc)
            else:
                assert response.status_code == 202, response.text
        assert refused, "with the broker down, ingest must refuse"
        assert self.client.get("/readyz").status_code == 503

        self.broker.start()
        self.broker.wait_ready()
        deadline = time.monotonic() + 60
        for doc in pending:  # a client retrying everything it sent, accepted or not
            while True:
                response = self.client.post("/v1/events", json=doc)
                if response.status_code == 202:
                    break
                assert response.status_code == 503, response.text
                assert time.monotonic() < deadline, "ingest did not recover after the broker restarted"
                time.sleep(float(response.headers.get("retry-after", "1")) / 5)

        records = asyncio.run(read_topic(self.broker.bootstrap, "accordwatch.events"))
        bodies = [orjson.loads(r.value) for r in records]
        ids = [b["id"] for b in bodies]
        assert {d["id"] for d in pending} <= set(ids), "every retried event is on the topic"
        by_id: dict[str, set[str]] = {}
        for body in bodies:
            by_id.setdefault(body["id"], set()).add(body["summary"])
        assert all(len(summaries) == 1 for summaries in by_id.values()), "a repeat only with the same id"
        assert sum(1 for b in bodies if b["summary"].startswith("before")) == 5


def test_the_1_048_561_byte_event_is_413_and_nothing_lands(kafka: Broker, ingest: RunningStack) -> None:
    """Regression: it passed the 1 MiB body limit, Kafka refused its record, and the answer was 503 "retry"."""
    before = len(kafka.read_all(ingest.events_topic))
    doc = event("AgreementSigned", summary="")
    doc["summary"] = "x" * (1_048_561 - len(orjson.dumps(doc)))
    body = orjson.dumps(doc)
    assert len(body) == 1_048_561
    response = ingest.ingest.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    batch = ingest.ingest.post("/v1/events/batch", json={"events": [event("NegotiationReported"), doc]})
    assert batch.status_code in (413, 422), batch.text
    assert len(kafka.read_all(ingest.events_topic)) == before


def test_a_record_the_broker_refuses_as_too_large_is_413_not_503(kafka: Broker, tmp_path: Path) -> None:
    """A topic whose max.message.bytes is below ingest's per-event limit: the broker's refusal is the client's 413."""
    topic = f"small.{uuid_utils.uuid7().hex[:10]}"
    asyncio.run(ensure_topics(kafka.bootstrap, [TopicSpec(topic, 1, {"retention.ms": "-1",
                                                                      "max.message.bytes": "16384"})]))
    running = make_stack(kafka, tmp_path, services=("ingest",), topic=topic)
    try:
        doc = event("AgreementSigned", summary="s" * 4000)
        doc["data"]["conditions"] = ["c" * 2000] * 8
        response = running.ingest.post("/v1/events", json=doc)
        assert response.status_code == 413, response.text
        assert response.json()["title"] == "Event too large"
        assert running.ingest.post("/v1/events", json=event("NegotiationReported")).status_code == 202
        records = kafka.read_all(topic, expect=1)
        assert [orjson.loads(r.value)["type"] for r in records] == ["NegotiationReported"]
    finally:
        running.close()
