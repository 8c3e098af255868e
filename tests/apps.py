"""The three FastAPI apps built in-process for tests, each over a store of its own, and a real server for them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from services.alerts.api import create_app as create_alerts_app
from services.alerts.migrate import upgrade as upgrade_alerts
from services.alerts.rules import load_rules
from services.alerts.sealing import new_sealing_key
from services.alerts.settings import AlertsSettings
from services.ingest.app import create_app as create_ingest_app
from services.ingest.settings import IngestSettings
from services.platform.db import make_engine
from services.projector.api import create_app as create_projector_app
from services.projector.readmodel.migrate import upgrade as upgrade_read_model
from services.projector.settings import ProjectorSettings
from tests.fakes import InMemoryPublisher

KEY = "aw_test-key-with-every-scope"
SEALING_KEY = new_sealing_key()
AUTH = {"Authorization": f"Bearer {KEY}"}


def ingest_app(publisher: InMemoryPublisher | None = None, **settings: Any) -> FastAPI:
    """Ingest over an in-memory publisher."""
    return create_ingest_app(IngestSettings(dev_key=KEY, **settings), publisher or InMemoryPublisher())


def projector_engine(tmp: Path) -> Engine:
    """A migrated, empty SQLite read model."""
    engine = make_engine(f"sqlite:///{tmp / 'readmodel.db'}", writer=True)
    upgrade_read_model(engine)
    return engine


def projector_app(engine: Engine, *, clock: Any = None, **settings: Any) -> FastAPI:
    """The query API over `engine`."""
    return create_projector_app(ProjectorSettings(dev_key=KEY, **settings), engine=engine, clock=clock)


def alerts_engine(tmp: Path) -> Engine:
    """A migrated, empty SQLite alert store."""
    engine = make_engine(f"sqlite:///{tmp / 'alerts.db'}")
    upgrade_alerts(engine)
    return engine


def alerts_settings(**settings: Any) -> AlertsSettings:
    """Alerts settings for tests: the test key, 127.0.0.1 allowed."""
    return AlertsSettings(dev_key=KEY, webhook_allow="127.0.0.1", webhook_secret_keys=SEALING_KEY, **settings)


def alerts_app(engine: Engine, *, clock: Any = None, settings: AlertsSettings | None = None,
               egress: Any = None) -> FastAPI:
    """The alerts API over `engine`, with the default rules."""
    config = settings or alerts_settings()
    return create_alerts_app(config, load_rules(config.rules_file), engine=engine, clock=clock, egress=egress)


def frozen(at: datetime) -> Any:
    """A clock that always says `at`."""
    return lambda: at


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port, on a thread; yields the base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the test server stopped"
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
