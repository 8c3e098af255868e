"""Regression: every input the issue found answered `500 text/plain` now gets a 4xx problem naming it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uuid_utils
from fastapi.testclient import TestClient

from schemas.registry import parse_event
from services.projector.readmodel.store import Consumed, ReadModelStore
from tests.apps import AUTH, alerts_app, alerts_engine, ingest_app, projector_app, projector_engine
from tests.fakes import InMemoryPublisher
from tests.samples import event

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "seed-timeline.ndjson"


@pytest.fixture(scope="module")
def query(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The query API over the example timeline."""
    engine = projector_engine(tmp_path_factory.mktemp("answers"))
    docs = [orjson.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]
    ReadModelStore(engine).apply([Consumed("t", 0, i, parse_event({**d, "recorded_at": "2026-01-05T10:00:00Z"}))
                                  for i, d in enumerate(docs)])
    with TestClient(projector_app(engine), headers=AUTH) as client:
        yield client
    engine.dispose()


def _problem(response: Any, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert field in [e["field"] for e in body["errors"]], body
    return body


@pytest.mark.parametrize("path", ["/v1/agreements/us-gt-aca-2019", "/v1/cases/innovation-law-lab-v-wolf"])
@pytest.mark.parametrize("parameter", ["as_of", "known_at"])
@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "9999-12-31T23:59:59-01:00", "2020-13-01"])
def test_a_date_outside_the_representable_range_is_422_naming_it(
    query: TestClient, path: str, parameter: str, value: str
) -> None:
    body = _problem(query.get(path, params={parameter: value}), 422, f"query.{parameter}")
    assert value in body["detail"] or "not a valid" in body["detail"] or "pattern" in body["detail"]


def test_the_edges_of_the_range_are_answered(query: TestClient) -> None:
    for value in ("1000-01-01", "8999-12-31", "8999-12-31T23:59:59Z"):
        response = query.get("/v1/agreements/us-gt-aca-2019", params={"as_of": value, "known_at": value})
        assert response.status_code == 200, response.text


def _forged(doc: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode()


@pytest.mark.parametrize("token", [
    base64.urlsafe_b64encode(b"not a number").decode(),  # the old format, decoding to a non-integer
    base64.urlsafe_b64encode(b"12").decode(),  # the old format, well formed: no longer a token
    _forged({"v": 1, "l": "timeline", "p": {"offset": "x"}}),
    "%%%", "A" * 2000, "",
])
def test_a_timeline_page_token_this_api_did_not_give_is_422(query: TestClient, token: str) -> None:
    response = query.get("/v1/agreements/us-gt-aca-2019/timeline", params={"page_token": token})
    if token == "":
        assert response.status_code == 200  # no token: the first page
    else:
        _problem(response, 422, "query.page_token")


def test_a_statistics_token_that_is_not_an_event_id_is_422(query: TestClient) -> None:
    """Regression: a /v1/statistics token that was not a UUID answered 500."""
    response = query.get("/v1/statistics", params={"page_token": base64.urlsafe_b64encode(b"not-a-uuid").decode()})
    _problem(response, 422, "query.page_token")


def test_pages_follow_their_tokens_and_refuse_them_elsewhere(query: TestClient) -> None:
    timeline = query.get("/v1/agreements/us-gt-aca-2019/timeline", params={"limit": 2}).json()
    assert timeline["next"]
    seen = [e["id"] for e in timeline["items"]]
    token = timeline["next"]
    while token:
        page = query.get("/v1/agreements/us-gt-aca-2019/timeline", params={"limit": 2, "page_token": token}).json()
        seen += [e["id"] for e in page["items"]]
        token = page["next"]
    assert len(seen) == len(set(seen)) == timeline["total"]
    # A token only continues the listing (and the filters) that gave it.
    other = query.get("/v1/agreements/us-sv-aca-2019/timeline", params={"page_token": timeline["next"]})
    _problem(other, 422, "query.page_token")
    agreements = query.get("/v1/agreements", params={"limit": 1}).json()
    _problem(query.get("/v1/cases", params={"page_token": agreements["next"]}), 422, "query.page_token")
    _problem(query.get("/v1/agreements", params={"page_token": agreements["next"], "status": "signed"}), 422,
             "query.page_token")
    # An edited token is refused, whatever was edited.
    raw = bytearray(base64.urlsafe_b64decode(agreements["next"] + "=="))
    raw[10] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    _problem(query.get("/v1/agreements", params={"page_token": tampered}), 422, "query.page_token")
    assert query.get("/v1/agreements", params={"page_token": agreements["next"]}).status_code == 200


@pytest.fixture(scope="module")
def alerts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    engine = alerts_engine(tmp_path_factory.mktemp("alerts-answers"))
    with TestClient(alerts_app(engine), headers=AUTH) as client:
        yield client
    engine.dispose()


@pytest.mark.parametrize("path", ["/v1/alerts", "/v1/subscriptions"])
def test_an_alerts_offset_token_of_25_digits_is_422(alerts: TestClient, path: str) -> None:
    """Regression: the token decoded to an offset SQLite cannot hold, and the answer was 500."""
    token = base64.urlsafe_b64encode(b"9" * 25).decode()
    _problem(alerts.get(path, params={"next": token}), 422, "query.next")


def test_an_event_in_year_1_with_an_offset_is_422_and_the_batch_names_it() -> None:
    """Regression: 0001-01-01T00:30:00+01:00 is before year 1 in UTC; one such event made a whole batch 500."""
    publisher = InMemoryPublisher()
    with TestClient(ingest_app(publisher), headers=AUTH) as client:
        single = client.post("/v1/events", json=event("AgreementSigned", occurred_at="0001-01-01T00:30:00+01:00"))
        assert single.status_code == 422, single.text
        assert single.json()["errors"][0]["field"] == "occurred_at"
        batch = client.post("/v1/events/batch", json={"events": [
            event("AgreementSigned"), event("AgreementSigned", occurred_at="0001-01-01T00:30:00+01:00")]})
    assert batch.status_code == 422, batch.text
    assert batch.json()["invalid_indexes"] == [1]
    assert publisher.records == []


def test_a_subscription_token_cannot_page_deliveries(alerts: TestClient) -> None:
    token = base64.urlsafe_b64encode(orjson.dumps({"offset": 1})).decode()
    sub = str(uuid_utils.uuid7())
    response = alerts.get(f"/v1/subscriptions/{sub}/deliveries", params={"next": token})
    assert response.status_code in (404, 422)


@pytest.mark.parametrize("path", ["/status", "/status/agreements/us-gt-aca-2019",
                                  "/status/cases/innovation-law-lab-v-wolf"])
@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "2020-13-01", "x" * 5000, "2020-03-05\x00"])
def test_a_status_page_with_a_date_out_of_range_is_an_html_page_naming_as_of(
    query: TestClient, path: str, value: str
) -> None:
    response = query.get(path, params={"as_of": value})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "as_of:" in response.text


@pytest.mark.parametrize("subject", ["US-GT", "a" * 5000, "us-gt-aca-2019%00", "x%20y", "%C3%A9t%C3%A9"])
def test_a_status_page_for_an_id_that_cannot_exist_is_an_html_404(query: TestClient, subject: str) -> None:
    for kind in ("agreements", "cases", "subjects"):
        response = query.get(f"/status/{kind}/{subject}", follow_redirects=False)
        assert response.status_code == 404, (kind, response.text)
        assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(("params", "field"), [
    ({"subject": "US GT"}, "query.subject"), ({"subject": "a" * 121}, "query.subject"),
    ({"status": "soon"}, "query.status"),
])
def test_the_deadline_calendar_refuses_a_bad_filter_naming_it(
    query: TestClient, params: dict[str, str], field: str
) -> None:
    _problem(query.get("/v1/deadlines.ics", params=params), 422, field)
    assert query.get("/v1/deadlines.ics", params={"subject": "innovation-law-lab-v-wolf"}).status_code == 200


@pytest.mark.parametrize(("params", "field"), [
    ({"subject": "Not A Slug"}, "query.subject.0"), ({"subject": ["ok", "x\x00"]}, "query.subject.1"),
    ({"subject": [f"s{i}" for i in range(101)]}, "query.subject"),
    ({"severity": "fatal"}, "query.severity.0"), ({"limit": "0"}, "query.limit"), ({"state": "gone"}, "query.state"),
])
def test_the_alert_feed_refuses_a_bad_filter_naming_it(
    alerts: TestClient, params: dict[str, Any], field: str
) -> None:
    _problem(alerts.get("/v1/alerts.atom", params=params), 422, field)
    assert alerts.get("/v1/alerts.atom", params={"subject": ["us-gt-aca-2019"]}).status_code == 200


@pytest.mark.parametrize("value", ["1000-01-01", "8999-12-31", "2019-07-26"])
def test_the_status_pages_answer_at_the_edges_of_the_range(query: TestClient, value: str) -> None:
    for path in ("/status", "/status/agreements/us-gt-aca-2019", "/status/cases/innovation-law-lab-v-wolf"):
        response = query.get(path, params={"as_of": value})
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
