"""The ingest service: `create_app(settings)` wires the Kafka publisher and the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from schemas.registry import EVENT_ADAPTER
from services.ingest.metrics import REQUESTS
from services.ingest.publisher import KafkaPublisher, Publisher
from services.ingest.routes import router
from services.ingest.settings import IngestSettings
from services.platform.auth import Keyring
from services.platform.http import add_metrics_endpoint, install_edges
from services.platform.openapi import install_contract


def create_app(settings: IngestSettings, publisher: Publisher | None = None) -> FastAPI:
    """Build the ingest app; tests may pass their own publisher."""
    publisher = publisher or KafkaPublisher(
        settings.kafka_bootstrap_servers,
        settings.events_topic,
        timeout_s=settings.produce_timeout_s,
        linger_ms=settings.linger_ms,
        max_request_bytes=settings.kafka_max_request_bytes,
        metadata_max_age_s=settings.kafka_metadata_max_age_s,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await publisher.start()
        try:
            yield
        finally:
            await publisher.stop()

    app = FastAPI(
        title="accordwatch ingest",
        version="1",
        summary="Records sourced events about asylum cooperative agreements into Kafka.",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry asked the global providers on every request (5% of a
        # single POST's CPU); this service exports Prometheus metrics instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.publisher = publisher
    app.state.keyring = Keyring.from_settings(settings)
    app.include_router(router)
    add_metrics_endpoint(app)
    install_edges(app, counter=REQUESTS, max_body_bytes=settings.max_body_bytes)
    install_contract(app, _event_components)
    return app


def _event_components() -> dict[str, Any]:
    """The event schemas, as components (the request bodies refer to `Event`)."""
    event_schema = EVENT_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = event_schema.pop("$defs", {})
    components["Event"] = event_schema
    return components


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings from the environment."""
    return create_app(IngestSettings())
