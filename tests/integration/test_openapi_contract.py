"""Every route of every service documents its answers: a schema for each 2xx body, problem+json for each error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.apps import alerts_app, alerts_engine, ingest_app, projector_app, projector_engine

BODYLESS = {"204"}
PAGE_ERRORS = {"404", "422"}  # an HTML page answers these with an HTML page; its other problems are problem+json


def _app(name: str, tmp: Path) -> FastAPI:
    if name == "ingest":
        return ingest_app()
    if name == "projector":
        return projector_app(projector_engine(tmp))
    return alerts_app(alerts_engine(tmp))


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in spec["paths"].items() for method, op in item.items()]


@pytest.mark.parametrize("name", ["ingest", "projector", "alerts"])
def test_every_operation_documents_its_bodies_and_its_problems(name: str, tmp_path: Path) -> None:
    with TestClient(_app(name, tmp_path)) as client:
        spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"], "FastAPI's own 422 shape is never answered"
    assert "ProblemOut" in spec["components"]["schemas"]
    operations = _operations(spec)
    assert operations
    for method, path, op in operations:
        where = f"{name} {method} {path}"
        responses = op["responses"]
        successes = [s for s in responses if s.startswith("2")]
        assert successes, f"{where}: no 2xx documented"
        for status in successes:
            if status in BODYLESS:
                continue
            content = responses[status].get("content") or {}
            assert content, f"{where}: {status} has no documented body"
            for media, body in content.items():
                assert body.get("schema"), f"{where}: {status} {media} has no schema"
                if media == "application/json":
                    assert body["schema"] != {}, f"{where}: {status} is documented as any JSON"
        takes_input = bool(op.get("parameters") or op.get("requestBody"))
        takes_body = ("400", "413") if op.get("requestBody") else ()
        for status in ("401", "403", "500", *(("422",) if takes_input else ()), *takes_body):
            assert status in responses, f"{where}: {status} is not documented"
        page = "text/html" in responses[successes[0]].get("content", {})
        for status, response in responses.items():
            if page and status in PAGE_ERRORS:
                assert list(response.get("content", {})) == ["text/html"], f"{where}: {status} is a page too"
                continue
            if status.startswith(("4", "5")):
                assert list(response.get("content", {})) == ["application/problem+json"], f"{where}: {status}"
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ProblemOut"}, f"{where}: {status}"
