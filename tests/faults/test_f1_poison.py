"""F1 poison: hostile and unfoldable records, through ingest and straight onto the topic, cost no good event.

On the real broker and the real PostgreSQL server (where NUL characters and integers past
the columns' range are refused): the issue's shapes, a record that does not decode, and a
record the database refuses (an injected failure), then 1,000 good events. Every good
event reaches the read model and the alert store; every poison record is parked on the
dead-letter topic with its reason (or, once ingest closes the class, refused with 422 and
never published); a replay from offset 0 ends with the identical read model.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from services.alerts.tables import AlertEvent
from services.platform.db import make_engine
from services.projector.readmodel.store import ReadModelStore, active_generation
from services.projector.readmodel.tables import StoredEvent
from services.projector.replay import rebuild
from services.projector.settings import ProjectorSettings
from tests.conftest import Broker, dump_columns, dump_generation
from tests.faults.conftest import FaultStack, Figures
from tests.faults.harness import ids_in, metric_total, subjects_differing, wait_for_ids
from tests.faults.injection import refuse_subject
from tests.samples import event
from tests.workload import realistic_events

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.stack]

RECORDED = "2026-01-05T10:00:00Z"


def shapes(x: str, case: str, target: str) -> dict[str, dict[str, Any]]:
    """The issue's accepted-but-unfoldable shapes, on agreement `x` (whose signing is `target`) and `case`."""
    title = event("AgreementProposed", subject=f"{x}-proposed")
    title["data"]["title"] = "Asylum\x00Cooperative Agreement"
    court = event("LawsuitFiled", subject=case)
    court["data"]["court"] = "N.D.\x00Cal."
    description = event("DeadlineSet", subject=case)
    description["data"]["description"] = "response\x00due"
    return {
        "correction_to_year_1": event("EventCorrected", subject=x, occurred_at="2024-05-01", data={
            "event_id": target, "changes": {"occurred_at": "0001-01-01T00:00:00+01:00"}}),
        "count_2_to_the_63": event("TransferReported", subject=x, occurred_at="2024-05-02",
                                   data={"count": 2**63, "cumulative": True}),
        "nul_in_title": title,
        "nul_in_court": court,
        "nul_in_description": description,
    }


def record_headers(doc: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [("ce_specversion", b"1.0"), ("ce_id", doc["id"].encode()), ("ce_type", str(doc["type"]).encode()),
            ("ce_source", b"faults"), ("ce_subject", doc["subject"].encode()),
            ("content-type", b"application/json")]


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


@pytest.mark.timeout(900)
def test_f1_poison_records_cost_no_good_event_and_a_replay_ends_identical(
    kafka: Broker, fault_stack: FaultStack, figures: Figures
) -> None:
    stack = fault_stack.running
    run = uuid.uuid4().hex[:6]
    x, case, injected = f"us-gt-aca-{run}", f"case-{run}-v-dhs", f"injected-{run}"
    engine = make_engine(stack.stack.db_url)
    for table in ("events", "alert_events"):
        refuse_subject(engine, table, injected)
    signed = {**event("AgreementSigned", subject=x, occurred_at="2024-04-01", data={"parties": ["US", "GT"]}),
              "id": str(uuid.uuid4())}
    good: list[dict[str, Any]] = [signed]
    stack.post(signed)

    # 1. The shapes through ingest: refused (422, never published) or accepted (then parked).
    through_ingest: dict[str, tuple[int, str]] = {}
    for name, doc in shapes(x, case, signed["id"]).items():
        doc = {**doc, "id": str(uuid.uuid4())}
        response = stack.ingest.post("/v1/events", json=doc)
        assert response.status_code in (202, 422), response.text
        through_ingest[name] = (response.status_code, doc["id"])

    # 2. The same shapes straight onto the topic (no ingest), a date out of range on the wire, a
    #    record that is not JSON, and a valid event the database refuses.
    straight: dict[str, dict[str, Any]] = {
        f"{name} (on the topic)": {**doc, "id": str(uuid.uuid4()), "recorded_at": RECORDED}
        for name, doc in shapes(x, case, signed["id"]).items()}
    straight["date out of range (on the topic)"] = {
        **event("AgreementSigned", subject=x, occurred_at="0001-01-01T00:00:00+01:00"),
        "id": str(uuid.uuid4()), "recorded_at": RECORDED}
    straight["database refuses it (injected)"] = {
        **event("AgreementSigned", subject=injected, data={"parties": ["US", "HN"]}),
        "id": str(uuid.uuid4()), "recorded_at": RECORDED}
    raw = [(doc["subject"].encode(), orjson.dumps(doc), record_headers(doc)) for doc in straight.values()]
    raw.append((x.encode(), b"{not json", []))
    asyncio.run(produce(kafka.bootstrap, stack.events_topic, raw))

    # 3. Then 1,000 good events (the first of them later events of the poisoned subjects).
    later = {**event("TransferReported", subject=x, occurred_at="2024-06-01",
                     data={"count": 40, "cumulative": False}), "id": str(uuid.uuid4())}
    filed = {**event("LawsuitFiled", subject=case), "id": str(uuid.uuid4())}
    good += [later, filed]
    good += list(realistic_events(1000 - len(good), seed=31, subjects=80))
    started = time.monotonic()
    for start in range(0, len(good) - 1, 250):
        stack.post(*good[max(1, start):start + 250])
    wanted = {doc["id"] for doc in good}
    assert len(wanted) == 1000
    alerts_engine = make_engine(stack.stack.alerts_db_url)
    wait_for_ids([("read model", engine, StoredEvent), ("alert store", alerts_engine, AlertEvent)], wanted,
                 timeout=600)
    applied_after = time.monotonic() - started
    read_model_ids, alert_ids = ids_in(engine, StoredEvent), ids_in(alerts_engine, AlertEvent)
    found = stack.query.get(f"/v1/agreements/{x}")
    assert found.status_code == 200, "the agreement signed before the poison is there"
    assert found.json()["transfers_total"] == 40

    # 4. Every poison record parked with its reason (the projector's group; the alerts group parks what it
    #    cannot apply), or refused by ingest and never published.
    projector_group = stack.stack.extra_env["ACCORDWATCH_PROJECTOR_GROUP"]
    alerts_group = stack.stack.extra_env["ACCORDWATCH_ALERTS_GROUP"]
    dead: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in kafka.read_all(stack.dlq_topic):
        headers = {k: v.decode(errors="replace") for k, v in r.headers}
        dead[headers.get("ce_id") or r.value.decode(errors="replace")].append(headers)
    on_topic = {dict(r.headers).get("ce_id", b"").decode() for r in kafka.read_all(stack.events_topic)}
    parked_by = {"projector": 0, "alerts": 0}
    for name, (status, doc_id) in through_ingest.items():
        if status == 422:
            assert doc_id not in on_topic, f"{name}: refused by ingest, yet published"
            continue
        assert any(h["accordwatch-dlq-group"] == projector_group for h in dead[doc_id]), f"{name}: not parked"
    for name, doc in straight.items():
        assert any(h["accordwatch-dlq-group"] == projector_group for h in dead[doc["id"]]), f"{name}: not parked"
    assert any(h["accordwatch-dlq-group"] == projector_group for h in dead["{not json"])
    for copies in dead.values():
        for h in copies:
            assert all(h[f"accordwatch-dlq-{part}"] for part in ("reason", "error", "origin"))
            parked_by["projector" if h["accordwatch-dlq-group"] == projector_group else "alerts"] += 1
            assert h["accordwatch-dlq-group"] in (projector_group, alerts_group)
    assert not (wanted & {i for i, copies in dead.items() for _ in copies}), "a good event was parked"

    # 5. A replay from offset 0 into a fresh generation: the identical read model.
    with engine.connect() as conn:
        live = active_generation(conn)
    settings = ProjectorSettings(database_url=stack.stack.db_url, kafka_bootstrap_servers=kafka.bootstrap,
                                 events_topic=stack.events_topic)
    writer = make_engine(settings.database_url, writer=True)
    replay_started = time.monotonic()
    try:
        rebuilt = asyncio.run(rebuild(settings, ReadModelStore(writer), swap=False))
    finally:
        writer.dispose()
    live_dump, clean_dump = dump_generation(engine, live), dump_generation(engine, rebuilt.generation)
    differing_tables = sorted(t for t in live_dump if live_dump[t] != clean_dump[t])
    differing = subjects_differing(live_dump, clean_dump, dump_columns)
    worker = stack.stack.urls["projector-worker"]
    figures.update(
        good_events_in_read_model=f"{len(wanted & read_model_ids)}/{len(wanted)}",
        good_events_in_alert_store=f"{len(wanted & alert_ids)}/{len(wanted)}",
        seconds_from_posting_to_all_applied=round(applied_after, 1),
        shapes_through_ingest={name: status for name, (status, _) in through_ingest.items()},
        poison_records_on_the_topic=len(straight) + 1 + sum(1 for s, _ in through_ingest.values() if s == 202),
        dlq_copies_by_group=parked_by,
        dlq_reasons={name: dead[doc["id"]][0]["accordwatch-dlq-kind"] + ": " + dead[doc["id"]][0][
            "accordwatch-dlq-reason"][:120] for name, doc in straight.items()},
        projector_parked_metric=metric_total(f"{worker}/metrics", "accordwatch_projector_dlq_records_total"),
        replay_records=rebuilt.records, replay_parked=rebuilt.parked,
        replay_seconds=round(time.monotonic() - replay_started, 1),
        replay_tables_differing=differing_tables, replay_subjects_differing=len(differing),
    )
    engine.dispose()
    alerts_engine.dispose()
    assert wanted <= read_model_ids
    assert wanted <= alert_ids
    assert differing_tables == []
    assert differing == set()
