"""The edge every API shares: the body limit before the key and the parser, and the last-resort 500."""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import Counter

from services.platform.http import install_edges
from tests.apps import AUTH, alerts_app, alerts_engine, ingest_app, projector_app, projector_engine, served
from tests.fakes import InMemoryPublisher

MB = 1024 * 1024
EDGE_REQUESTS = Counter("accordwatch_test_edge_requests_total", "requests of the edge test app", ["route", "status"])


@pytest.fixture(params=["ingest", "projector", "alerts"])
def any_app(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[FastAPI, str, int]:
    """(app, a POST path of it, its body limit)."""
    if request.param == "ingest":
        return ingest_app(max_event_bytes=4096, max_batch_bytes=65536), "/v1/events/batch", 65536
    if request.param == "projector":
        return projector_app(projector_engine(tmp_path), max_body_bytes=16384), "/v1/agreements", 16384
    return alerts_app(alerts_engine(tmp_path)), "/v1/subscriptions", 65536


def test_a_declared_oversized_body_is_413_before_the_key_is_checked(any_app: tuple[FastAPI, str, int]) -> None:
    app, path, limit = any_app
    with TestClient(app) as client:
        response = client.post(path, content=b"{" + b" " * limit + b"}",
                               headers={"content-type": "application/json"})  # no key at all
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["limit_bytes"] == limit


def _chunks(limit: int) -> Iterator[bytes]:
    for _ in range(limit // 1024 + 100):
        yield b" " * 1024


@pytest.mark.parametrize("app_name", ["ingest", "alerts"])
def test_an_oversized_streamed_body_is_cut_off_with_413(app_name: str, tmp_path: Path) -> None:
    if app_name == "ingest":
        app, path, limit = ingest_app(max_event_bytes=4096, max_batch_bytes=65536), "/v1/events/batch", 65536
    else:
        app, path, limit = alerts_app(alerts_engine(tmp_path)), "/v1/subscriptions", 65536
    with TestClient(app) as client:
        response = client.post(path, content=_chunks(limit), headers={"content-type": "application/json", **AUTH})
    assert response.status_code == 413, response.text
    assert response.json()["title"] == "Request body too large"
    assert response.headers["connection"] == "close"


def test_an_answer_given_before_the_body_is_read_closes_the_connection(any_app: tuple[FastAPI, str, int]) -> None:
    """No key, a streamed body: whether the route refuses the key or the size first, the rest is never read."""
    app, path, limit = any_app
    with TestClient(app) as client:
        response = client.post(path, content=_chunks(limit), headers={"content-type": "application/json"})
    assert response.status_code in (401, 405, 413), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["connection"] == "close"


def _raw_post(base: str, path: str, head: dict[str, str], body_chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send a request head, then body chunks until the server answers; returns (answer, body bytes sent)."""
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sent = 0
    try:
        lines = [f"POST {path} HTTP/1.1", f"host: {url.hostname}", *(f"{k}: {v}" for k, v in head.items())]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        for chunk in body_chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered: stop sending
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer:
            got = sock.recv(65536)
            if not got:
                break
            answer += got
        return answer, sent
    finally:
        sock.close()


def test_an_unauthenticated_50_mb_post_to_subscriptions_is_cut_off_early(tmp_path: Path) -> None:
    """Regression: a 50 MB POST without a key was read whole, then answered 401."""
    with served(alerts_app(alerts_engine(tmp_path))) as base:
        declared, sent = _raw_post(base, "/v1/subscriptions",
                                   {"content-type": "application/json", "content-length": str(50 * MB)},
                                   (b" " * 65536 for _ in range(800)))
        assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
        assert sent < 8 * MB, f"{sent} bytes went out before the 413"

        def chunked() -> Iterator[bytes]:
            for _ in range(800):  # 50 MB in 64 KiB chunks, no Content-Length
                yield b"10000\r\n" + b" " * 65536 + b"\r\n"

        streamed, sent = _raw_post(base, "/v1/subscriptions",
                                   {"content-type": "application/json", "transfer-encoding": "chunked"}, chunked())
        assert streamed.startswith(b"HTTP/1.1 413"), streamed[:200]
        assert b"connection: close" in streamed.lower()
        assert sent < 8 * MB, f"{sent} bytes went out before the 413"


def _exploding_app() -> FastAPI:
    app = FastAPI()

    @app.get("/async")
    async def explode_async() -> None:
        raise RuntimeError("boom in a coroutine")

    @app.get("/sync")
    def explode_sync() -> None:
        raise ZeroDivisionError("boom on a thread")

    install_edges(app, counter=EDGE_REQUESTS, max_body_bytes=1024)
    return app


@pytest.mark.parametrize("path", ["/async", "/sync"])
def test_an_unexpected_exception_is_a_problem_500_whose_incident_is_in_the_log(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR), TestClient(_exploding_app()) as client:
        response = client.get(path)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/internal-error")
    assert problem["incident"] in problem["detail"]
    logged = [r for r in caplog.records if problem["incident"] in r.getMessage()]
    assert logged, "the error is logged under the incident id"
    assert logged[0].exc_info is not None, "with its traceback"
    assert EDGE_REQUESTS.labels(path, "500")._value.get() >= 1


def test_a_single_event_over_its_route_limit_is_413_and_publishes_nothing() -> None:
    publisher = InMemoryPublisher()
    with TestClient(ingest_app(publisher, max_event_bytes=4096, max_batch_bytes=65536)) as client:
        response = client.post("/v1/events", content=b"x" * 5000,
                               headers={"content-type": "application/json", **AUTH})
    assert response.status_code == 413
    assert response.json()["limit_bytes"] == 4096
    assert publisher.records == []
