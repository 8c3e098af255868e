"""Ingest's HTTP contract with a fake publisher: auth, validation, limits, problem bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from schemas.cloudevents import from_record
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.platform.auth import hash_key
from tests.fakes import InMemoryPublisher
from tests.samples import event

WRITE_KEY = "aw_test-writer"
READ_KEY = "aw_test-reader"


@pytest.fixture
def publisher() -> InMemoryPublisher:
    return InMemoryPublisher()


@pytest.fixture
def client(tmp_path: Path, publisher: InMemoryPublisher) -> Iterator[TestClient]:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([
        {"name": "writer", "sha256": hash_key(WRITE_KEY), "scopes": ["events:write", "read"]},
        {"name": "reader", "sha256": hash_key(READ_KEY), "scopes": ["read"]},
    ]))
    settings = IngestSettings(api_keys_file=keys, max_event_bytes=4096, max_batch_bytes=65536,
                              max_batch_events=20)
    with TestClient(create_app(settings, publisher)) as c:
        c.headers["Authorization"] = f"Bearer {WRITE_KEY}"
        yield c


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    return body


def test_accepted_event_gets_id_partition_offset(client: TestClient, publisher: InMemoryPublisher) -> None:
    response = client.post("/v1/events", json=event("AgreementSigned"))
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"id", "partition", "offset", "recorded_at"}
    decoded = from_record(*_record_parts(publisher, 0))
    assert str(decoded.id) == body["id"]
    assert decoded.id is not None
    assert decoded.id.version == 7
    assert decoded.recorded_at is not None


def _record_parts(publisher: InMemoryPublisher, i: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    r = publisher.records[i]
    return r.key, r.value, r.headers


def test_client_id_is_kept_and_recorded_at_is_stamped(client: TestClient, publisher: InMemoryPublisher) -> None:
    doc = event("AgreementSigned", id="0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f61",
                recorded_at="1999-01-01T00:00:00Z")
    assert client.post("/v1/events", json=doc).json()["id"] == doc["id"]
    decoded = from_record(*_record_parts(publisher, 0))
    assert decoded.recorded_at is not None
    assert decoded.recorded_at.year >= 2026


def test_no_key_is_401(client: TestClient, publisher: InMemoryPublisher) -> None:
    body = _problem(client.post("/v1/events", json=event("AgreementSigned"), headers={"Authorization": ""}), 401)
    assert "Bearer" in body["detail"]
    assert publisher.records == []


def test_unknown_key_is_401(client: TestClient) -> None:
    _problem(client.post("/v1/events", json=event("AgreementSigned"),
                         headers={"Authorization": "Bearer aw_nope"}), 401)


def test_read_only_key_is_403(client: TestClient, publisher: InMemoryPublisher) -> None:
    body = _problem(client.post("/v1/events", json=event("AgreementSigned"),
                                headers={"Authorization": f"Bearer {READ_KEY}"}), 403)
    assert body["required_scope"] == "events:write"
    assert publisher.records == []


def test_read_only_key_reads_schemas(client: TestClient) -> None:
    response = client.get("/v1/schemas", headers={"Authorization": f"Bearer {READ_KEY}"})
    assert response.status_code == 200
    assert {e["type"] for e in response.json()} >= {"AgreementSigned", "StayRequested"}
    schema = client.get("/v1/schemas/TransferReported").json()
    assert schema["properties"]["data"]["$ref"].endswith("TransferReportedData")


def test_unknown_schema_is_404_problem(client: TestClient) -> None:
    assert "AgreementRatified" in _problem(client.get("/v1/schemas/AgreementRatified"), 404)["detail"]


@pytest.mark.parametrize(
    ("mutate", "field", "fragment"),
    [
        (lambda d: d.update(type="AgreementRatified"), "type", "unknown event type"),
        (lambda d: d["data"].pop("parties"), "data.parties", "required"),
        (lambda d: d.update(occurred_at="September 20"), "occurred_at", "YYYY-MM-DD"),
        (lambda d: d["data"].update(parties=["US", "ZZ"]), "data.parties[1]", "country code"),
        (lambda d: d.update(sources=[]), "sources", "at least one"),
    ],
)
def test_invalid_event_names_the_field(client: TestClient, publisher: InMemoryPublisher,
                                       mutate: Any, field: str, fragment: str) -> None:
    doc = event("AgreementSigned")
    mutate(doc)
    body = _problem(client.post("/v1/events", json=doc), 422)
    errors = {e["field"]: e["reason"] for e in body["errors"]}
    assert fragment in errors[field]
    assert field in body["detail"]
    assert publisher.records == []


def test_negative_transfer_count_names_the_field(client: TestClient) -> None:
    doc = event("TransferReported")
    doc["data"]["count"] = -1
    body = _problem(client.post("/v1/events", json=doc), 422)
    assert body["errors"] == [{"field": "data.count", "reason": "Input should be greater than or equal to 0"}]


def test_bad_json_is_400(client: TestClient, publisher: InMemoryPublisher) -> None:
    body = _problem(client.post("/v1/events", content=b'{"type": ', headers={"content-type": "application/json"}), 400)
    assert "not valid JSON" in body["detail"]
    assert publisher.records == []


def test_wrong_content_type_is_415(client: TestClient) -> None:
    body = _problem(client.post("/v1/events", content=b"type=x", headers={"content-type": "application/x-www-form-urlencoded"}), 415)
    assert body["field"] == "content-type"


def test_body_too_large_is_413(client: TestClient, publisher: InMemoryPublisher) -> None:
    doc = event("AgreementSigned", summary="x" * 5000)
    body = _problem(client.post("/v1/events", json=doc), 413)
    assert body["limit_bytes"] == 4096
    assert publisher.records == []


def test_an_event_whose_record_passes_the_limit_is_413_not_503(client: TestClient, publisher: InMemoryPublisher) -> None:
    """The body fits the 4,096-byte limit; with its id, recorded_at and CloudEvents headers the record does not."""
    doc = event("AgreementSigned", summary="x" * 3350)
    assert len(orjson.dumps(doc)) < 4096
    body = _problem(client.post("/v1/events", json=doc), 413)
    assert body["title"] == "Event too large"
    assert body["limit_bytes"] == 4096
    assert publisher.records == []


def test_an_oversized_event_inside_a_batch_is_named_and_nothing_is_published(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    docs = [event("NegotiationReported"), event("AgreementSigned", summary="x" * 3900), event("NegotiationReported")]
    body = _problem(client.post("/v1/events/batch", json={"events": docs}), 422)
    assert body["invalid_indexes"] == [1]
    assert body["errors"][0]["field"] == "event"
    assert "the limit is 4096" in body["errors"][0]["reason"]
    assert publisher.records == []


def test_a_record_kafka_refuses_as_too_large_is_413_not_503(tmp_path: Path) -> None:
    """Regression: Kafka's size refusal was answered 503 "retry", so clients retried forever."""
    publisher = InMemoryPublisher(max_record_bytes=1500)
    settings = IngestSettings(dev_key=WRITE_KEY, max_event_bytes=4096)
    with TestClient(create_app(settings, publisher)) as c:
        response = c.post("/v1/events/batch", json={"events": [event("NegotiationReported"),
                                                                event("AgreementSigned", summary="x" * 2000)]},
                          headers={"Authorization": f"Bearer {WRITE_KEY}"})
    body = _problem(response, 413)
    assert body["errors"][0]["index"] == 1
    assert "retry" not in body["detail"]
    assert publisher.records == []


def test_kafka_down_is_503_with_retry_after_and_ids(client: TestClient, publisher: InMemoryPublisher) -> None:
    publisher.available = False
    response = client.post("/v1/events", json=event("AgreementSigned", id="0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f61"))
    body = _problem(response, 503)
    assert response.headers["retry-after"] == "5"
    assert body["ids"] == ["0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f61"]
    assert client.get("/readyz").status_code == 503


def test_batch_json_lands_in_order(client: TestClient, publisher: InMemoryPublisher) -> None:
    docs = [event("NegotiationReported"), event("AgreementSigned"), event("TransferTargetAnnounced")]
    response = client.post("/v1/events/batch", json={"events": docs})
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 3
    assert [from_record(*_record_parts(publisher, i)).type for i in range(3)] == [d["type"] for d in docs]
    assert [e["offset"] for e in body["events"]] == [0, 1, 2]


def test_batch_ndjson_is_accepted(client: TestClient, publisher: InMemoryPublisher) -> None:
    lines = b"\n".join(orjson.dumps(event(t)) for t in ("AgreementProposed", "AgreementSigned")) + b"\n\n"
    response = client.post("/v1/events/batch", content=lines, headers={"content-type": "application/x-ndjson"})
    assert response.status_code == 202
    assert len(publisher.records) == 2


def test_bad_batch_lists_every_bad_index_and_writes_nothing(client: TestClient, publisher: InMemoryPublisher) -> None:
    docs = [event("AgreementSigned"), event("AgreementSigned", type="Nope"), event("TransferReported"),
            event("AgreementSigned", occurred_at="yesterday")]
    docs[2]["data"]["count"] = -3
    body = _problem(client.post("/v1/events/batch", json={"events": docs}), 422)
    assert body["invalid_indexes"] == [1, 2, 3]
    assert {(e["index"], e["field"]) for e in body["errors"]} == {(1, "type"), (2, "data.count"), (3, "occurred_at")}
    assert publisher.records == []


def test_batch_with_bad_ndjson_line_is_400(client: TestClient, publisher: InMemoryPublisher) -> None:
    lines = orjson.dumps(event("AgreementSigned")) + b"\n{oops\n"
    body = _problem(client.post("/v1/events/batch", content=lines, headers={"content-type": "application/x-ndjson"}), 400)
    assert body["errors"][0]["line"] == 2
    assert publisher.records == []


def test_batch_over_the_event_limit_is_413(client: TestClient, publisher: InMemoryPublisher) -> None:
    _problem(client.post("/v1/events/batch", json={"events": [event("NegotiationReported")] * 21}), 413)
    assert publisher.records == []


def test_batch_with_repeated_id_is_rejected(client: TestClient) -> None:
    same = "0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f61"
    body = _problem(client.post("/v1/events/batch", json={"events": [event("AgreementSigned", id=same)] * 2}), 422)
    assert body["errors"][0]["index"] == 1


def test_batch_must_be_an_events_object(client: TestClient) -> None:
    body = _problem(client.post("/v1/events/batch", json=[event("AgreementSigned")]), 422)
    assert body["errors"][0]["field"] == "events"


def test_unknown_route_is_problem_json(client: TestClient) -> None:
    _problem(client.get("/v1/nothing"), 404)


def test_openapi_documents_the_event_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "Event" in spec["components"]["schemas"]
    assert "AgreementSigned" in spec["components"]["schemas"]


def test_metrics_count_rejections(client: TestClient) -> None:
    client.post("/v1/events", content=b"{", headers={"content-type": "application/json"})
    text = client.get("/metrics").text
    assert 'accordwatch_ingest_rejections_total{reason="bad_json"}' in text
    assert 'accordwatch_ingest_requests_total{route="/v1/events",status="400"}' in text


def test_correction_to_an_unrepresentable_time_is_422_and_never_published(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    doc = event("EventCorrected")
    doc["data"]["changes"] = {"occurred_at": "0001-01-01T00:00:00+01:00"}
    body = _problem(client.post("/v1/events", json=doc), 422)
    assert [e["field"] for e in body["errors"]] == ["data.changes.occurred_at"]
    assert "out of range" in body["errors"][0]["reason"]
    assert publisher.records == []
