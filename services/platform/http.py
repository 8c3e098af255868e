"""HTTP glue every FastAPI service shares: the edge middleware, /metrics, uvicorn defaults."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.platform.limits import BodyLimit
from services.platform.problems import LastResort, install_problem_handlers


class RequestMetrics:
    """Pure ASGI middleware counting responses by route template and status."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.counter.labels(template, str(status)).inc()


def add_metrics_endpoint(app: FastAPI) -> None:
    """Serve the process's Prometheus registry at /metrics (collected on a worker thread, off the loop)."""

    @app.get("/metrics", include_in_schema=False)
    def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def install_edges(app: FastAPI, *, counter: Counter, max_body_bytes: int) -> None:
    """Problem+json for every error, the body limit and request metrics, in the order they must run.

    Outermost first: metrics count every answer (413s and 500s included); the body limit
    refuses an oversized body before routing, authentication or parsing; the last resort
    turns anything unexpected into a problem+json 500.
    """
    install_problem_handlers(app)
    app.add_middleware(LastResort)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(RequestMetrics, counter=counter)


def uvicorn_options(log_level: str, *, kafka_clients: bool) -> dict[str, Any]:
    """The httptools parser, quiet access logs, and uvloop unless the process runs aiokafka clients.

    Under uvloop a write to a closed transport raises RuntimeError where aiokafka catches
    only OSError (aio-libs/aiokafka#1038): its sender or fetcher task dies and the process
    stays up serving nothing. A process with aiokafka clients runs on asyncio's loop.
    """
    loop = "asyncio" if kafka_clients else "uvloop"
    return {"loop": loop, "http": "httptools", "log_level": log_level, "access_log": False}
