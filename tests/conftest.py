"""Session fixtures: a real Kafka broker on free ports, and a running stack on top of it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import Engine, select

from services.platform.auth import new_key
from services.stack.broker import LocalBroker, TopicSpec, assemble, default_topics, ensure_topics, free_port
from services.stack.local import LocalStack, Ports


class Broker:
    """The session's broker plus helpers to make topics and read them back."""

    def __init__(self, broker: LocalBroker) -> None:
        self.local = broker

    @property
    def bootstrap(self) -> str:
        return self.local.bootstrap

    def topic(self, partitions: int = 6, prefix: str = "test") -> str:
        """A fresh topic of its own for one test (kept forever, like the events topic)."""
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        asyncio.run(ensure_topics(self.bootstrap, [TopicSpec(name, partitions, {"retention.ms": "-1"})]))
        return name

    def read_all(self, topic: str, *, expect: int | None = None, timeout: float = 30.0) -> list[Any]:
        """Every record on the topic, from offset 0 to the end (or until `expect` records)."""
        return asyncio.run(read_topic(self.bootstrap, topic, expect=expect, timeout=timeout))


async def read_topic(bootstrap: str, topic: str, *, expect: int | None = None, timeout: float = 30.0) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = await assigned(consumer, timeout)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            end = await consumer.end_offsets(tps)
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= end[tp] for tp in tps) and (expect is None or len(records) >= expect):
                break
            for batch in (await consumer.getmany(*tps, timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def assigned(consumer: AIOKafkaConsumer, timeout: float = 30.0) -> list[TopicPartition]:
    """The partitions a group-less subscription is given (every partition of the topic)."""
    deadline = time.monotonic() + timeout
    while not consumer.assignment():
        assert time.monotonic() < deadline, "no partitions assigned: does the topic exist?"
        await asyncio.sleep(0.05)
    return sorted(consumer.assignment())


@pytest.fixture(scope="session")
def kafka_libs() -> Path:
    return assemble()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory, kafka_libs: Path) -> Iterator[Broker]:
    """A real single-node KRaft broker for the whole session, on free ports."""
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"), port=free_port(), controller_port=free_port(),
                         libs=kafka_libs)
    broker.start()
    try:
        broker.wait_ready()
        asyncio.run(ensure_topics(broker.bootstrap, default_topics()))
        yield Broker(broker)
    finally:
        broker.stop()


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll until `predicate()` is truthy (and return it), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}; last: {last!r}")


class RunningStack:
    """A LocalStack on the session broker with clients for its APIs."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        headers = {"Authorization": f"Bearer {stack.dev_key}"}
        self.ingest = httpx.Client(base_url=stack.urls["ingest"], headers=headers, timeout=30)
        self.query = httpx.Client(base_url=stack.urls["projector"], headers=headers, timeout=30)
        self.alerts = httpx.Client(base_url=stack.urls["alerts"], headers=headers, timeout=30)

    @property
    def events_topic(self) -> str:
        return self.stack.extra_env["ACCORDWATCH_EVENTS_TOPIC"]

    @property
    def dlq_topic(self) -> str:
        return self.stack.extra_env["ACCORDWATCH_DLQ_TOPIC"]

    def post(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        """POST a batch and return its acknowledgements (asserting 202)."""
        response = self.ingest.post("/v1/events/batch", json={"events": list(events)})
        assert response.status_code == 202, response.text
        acks: list[dict[str, Any]] = response.json()["events"]
        return acks

    def close(self) -> None:
        self.ingest.close()
        self.query.close()
        self.alerts.close()
        self.stack.stop()


def make_stack(kafka: Broker, home: Path, *, database_url: str | None = None,
               services: tuple[str, ...] = ("ingest", "projector-worker", "projector-api"),
               topic: str | None = None, env: dict[str, str] | None = None) -> RunningStack:
    """Services of a test stack on the session broker, with topics and a database of its own."""
    ports = Ports.free()
    ports.kafka = kafka.local.port
    events = topic or kafka.topic()
    dlq = kafka.topic(partitions=1, prefix="dlq")
    stack = LocalStack(home=home, ports=ports, dev_key=new_key(), database_url=database_url, extra_env={
        "ACCORDWATCH_EVENTS_TOPIC": events, "ACCORDWATCH_DLQ_TOPIC": dlq,
        "ACCORDWATCH_PROJECTOR_GROUP": f"projector-{uuid.uuid4().hex[:8]}",
        "ACCORDWATCH_ALERTS_GROUP": f"alerts-{uuid.uuid4().hex[:8]}", **(env or {}),
    })
    stack.start(services)
    return RunningStack(stack)


@pytest.fixture(scope="session")
def stack(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """ingest + projector worker + query API on the session broker, SQLite read model."""
    running = make_stack(kafka, tmp_path_factory.mktemp("stack"))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server for the session (Debian's binaries, installed by setup)."""
    from services.stack.postgres import LocalPostgres

    server = LocalPostgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_stack(kafka: Broker, tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[RunningStack]:
    """The same services with the read model on the real PostgreSQL server."""
    url: str = postgres.create_database(f"stack_{uuid.uuid4().hex[:12]}")
    running = make_stack(kafka, tmp_path_factory.mktemp("pg-stack"), database_url=url)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_stack(request: pytest.FixtureRequest) -> RunningStack:
    """The e2e tests on both backends: the SQLite stack, then the PostgreSQL one."""
    running: RunningStack = request.getfixturevalue("stack" if request.param == "sqlite" else "pg_stack")
    return running


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same tests on both backends: a SQLite file, and a fresh database on the real server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'readmodel.db'}"
    server = request.getfixturevalue("postgres")
    url: str = server.create_database(f"t_{uuid.uuid4().hex[:12]}")
    return url


VOLATILE = {"generation", "updated_at", "partition", "offset", "parked_at"}


def dump_columns(table_name: str) -> list[str]:
    """The columns `dump_generation` keeps for a table, in its order."""
    from services.projector.readmodel.tables import Base

    return [c.name for c in Base.metadata.tables[table_name].c if c.name not in VOLATILE]


def dump_generation(engine: Engine, generation: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model row of a generation, without bookkeeping columns, in a stable order."""
    from services.projector.readmodel.tables import Base

    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if "generation" not in table.c or table.name == "projection_generation":
                continue
            columns = [c for c in table.c if c.name not in VOLATILE]
            rows = conn.execute(select(*columns).where(table.c.generation == generation)).all()
            out[table.name] = sorted(tuple(repr(v) for v in row) for row in rows)
    return out




EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "seed-timeline.ndjson"


def example_events() -> list[dict[str, Any]]:
    """The example timeline (examples/seed-timeline.ndjson), one dict per event."""
    import orjson

    return [orjson.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]
