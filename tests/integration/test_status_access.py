"""The status pages in process over a read model holding the examples: access, bad dates, unknown ids."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from schemas.registry import parse_event
from services.platform.auth import new_key
from services.platform.db import make_engine
from services.projector.api import create_app
from services.projector.readmodel.migrate import upgrade
from services.projector.readmodel.store import Consumed, ReadModelStore
from services.projector.settings import ProjectorSettings
from tests.conftest import example_events

KEY = new_key()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path: Path = tmp_path_factory.mktemp("status") / "readmodel.db"
    db = make_engine(f"sqlite:///{path}", writer=True)
    upgrade(db)
    items = [Consumed("t", 0, i, parse_event({**doc, "recorded_at": "2020-03-11T00:00:00Z"}))
             for i, doc in enumerate(example_events())]
    ReadModelStore(db).apply(items)
    yield db
    db.dispose()


def _client(engine: Engine, *, public: bool) -> TestClient:
    settings = ProjectorSettings(public_status=public, dev_key=KEY, database_url=str(engine.url))
    return TestClient(create_app(settings, engine=engine))


def test_status_needs_the_read_scope_unless_public(engine: Engine) -> None:
    with _client(engine, public=False) as client:
        refused = client.get("/status")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic realm=")
        assert client.get("/status", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        basic = base64.b64encode(f"reader:{KEY}".encode()).decode()
        assert client.get("/status", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        wrong = base64.b64encode(b"reader:aw_not-a-key").decode()
        assert client.get("/status", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
        assert client.get("/v1/agreements").status_code == 401  # the JSON API is not opened by it
    with _client(engine, public=True) as client:
        page = client.get("/status")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert client.get("/v1/agreements").status_code == 401


def test_a_bad_as_of_is_answered_with_a_page_naming_the_field(engine: Engine) -> None:
    with _client(engine, public=True) as client:
        response = client.get("/status", params={"as_of": "2020-02-30"})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert "as_of:" in response.text
    assert "2020-02-30" in response.text


def test_unknown_agreements_and_cases_are_404_pages(engine: Engine) -> None:
    with _client(engine, public=True) as client:
        assert client.get("/status/agreements/innovation-law-lab-v-wolf").status_code == 404
        assert client.get("/status/cases/us-gt-aca-2019").status_code == 404
        missing = client.get("/status/agreements/nope")
        assert missing.status_code == 404
        assert "No agreement &#39;nope&#39; is known" in missing.text


def test_subject_links_lead_to_the_agreement_or_case_page_keeping_the_date(engine: Engine) -> None:
    with _client(engine, public=True) as client:
        found = client.get("/status/subjects/innovation-law-lab-v-wolf", params={"as_of": "2020-03-10"},
                           follow_redirects=False)
        assert found.status_code == 307
        assert found.headers["location"] == "/status/cases/innovation-law-lab-v-wolf?as_of=2020-03-10"
        assert client.get("/status/subjects/us-gt-aca-2019", follow_redirects=False).headers["location"] == (
            "/status/agreements/us-gt-aca-2019")


def test_status_pages_document_their_media_type(engine: Engine) -> None:
    with _client(engine, public=True) as client:
        spec = client.get("/openapi.json").json()
    assert "text/html" in spec["paths"]["/status"]["get"]["responses"]["200"]["content"]
    assert "text/html" in spec["paths"]["/status/agreements/{agreement_id}"]["get"]["responses"]["200"]["content"]
