"""`accordwatch post`: ids fixed before the first attempt, kept across retries and across runs of the same file."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from schemas.cloudevents import KafkaRecord, from_record
from services.ingest.publisher import Ack, KafkaUnavailable
from services.posting import Refused, content_id, post_batches, with_ids
from tests.apps import AUTH, ingest_app
from tests.fakes import InMemoryPublisher
from tests.samples import event


class Flaky(InMemoryPublisher):
    """Unavailable for the first `failures` publishes, like a broker coming back."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts: list[list[str]] = []

    async def publish(self, records: Sequence[KafkaRecord]) -> list[Ack]:
        self.attempts.append([dict(r.headers)["ce_id"].decode() for r in records])
        if self.failures:
            self.failures -= 1
            raise KafkaUnavailable("down for now")
        return await super().publish(records)


def _ids(publisher: InMemoryPublisher) -> list[str]:
    return [str(from_record(r.key, r.value, r.headers).id) for r in publisher.records]


def test_an_event_without_an_id_gets_a_uuidv7_from_its_content() -> None:
    doc = event("AgreementSigned")
    given = with_ids([doc])[0]["id"]
    again = with_ids([dict(doc)])[0]["id"]
    assert given == again
    parsed = uuid.UUID(given)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == 1568937600000  # 2019-09-20, the event's occurred_at, in ms
    assert "id" not in doc, "the caller's event is not changed"


def test_identical_events_in_one_file_are_distinct_and_given_ids_are_kept() -> None:
    doc = event("TransferReported")
    kept = {**event("NegotiationReported"), "id": "0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f61"}
    first, second, third = with_ids([doc, doc, kept])
    assert first["id"] != second["id"]
    assert third["id"] == kept["id"]
    assert with_ids([doc, doc])[1]["id"] == second["id"]
    assert content_id({"occurred_at": "not a date"}, 0).version == 7


def test_a_retry_sends_the_same_ids_and_each_event_lands_once() -> None:
    publisher = Flaky(failures=2)
    docs = [event("NegotiationReported", summary=f"#{i}") for i in range(5)]
    waits: list[float] = []
    with TestClient(ingest_app(publisher), headers=AUTH) as client:
        assert post_batches(client, docs, batch=2, sleep=waits.append) == 5
    first = publisher.attempts[0]
    assert publisher.attempts[1] == publisher.attempts[2] == first, "the same ids on every attempt"
    assert waits == [5.0, 5.0]  # ingest's Retry-After
    assert len(_ids(publisher)) == len(set(_ids(publisher))) == 5


def test_rerunning_a_file_after_a_failure_records_nothing_twice() -> None:
    publisher = InMemoryPublisher()
    docs = [event("TransferReported", summary=f"report {i}", data={"count": 10 + i, "cumulative": False})
            for i in range(6)]
    bad = [*docs[:4], {**docs[4], "data": {"count": -1, "cumulative": False}}, docs[5]]
    with TestClient(ingest_app(publisher), headers=AUTH) as client:
        with pytest.raises(Refused) as refused:
            post_batches(client, bad, batch=3)
        assert (refused.value.accepted, refused.value.start) == (3, 3)
        post_batches(client, docs, batch=3)  # the file, fixed, posted again
    ids: list[Any] = _ids(publisher)
    assert len(ids) == 9, "ingest takes the repeats (its answer is idempotent by id)"
    assert len(set(ids)) == 6, "but no event has two ids: the projector applies each once"
    assert ids[:3] == ids[3:6]
