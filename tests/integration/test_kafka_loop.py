"""Why processes with aiokafka clients run on asyncio's loop: a broken connection must be a Kafka error.

aiokafka's connection catches only OSError around its socket write (aio-libs/aiokafka#1038).
asyncio's transport drops a write after close and aiokafka fails the request with
KafkaConnectionError, which its fetcher and sender handle; uvloop raises RuntimeError,
which escapes and kills the fetcher or sender task for good (issue 12c).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.admin import ApiVersionRequest

from services.platform.http import uvicorn_options
from tests.conftest import Broker

pytestmark = pytest.mark.kafka


async def send_on_a_dropped_connection(bootstrap: str) -> BaseException:
    """What a request raises when the broker's connection has just been dropped under aiokafka."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    conn = await create_conn(host, int(port), request_timeout_ms=10_000)
    try:
        conn._writer.transport.abort()  # the connection dropped, as when the broker is SIGKILLed
        await asyncio.sleep(0)  # the loop closes the transport; aiokafka has not noticed yet
        try:
            await conn.send(ApiVersionRequest())
        except BaseException as exc:  # what escapes is the point of the test
            return exc
        raise AssertionError("a request on a dropped connection succeeded")
    finally:
        conn.close()


def run_on(runner: Callable[[Coroutine[Any, Any, BaseException]], BaseException], bootstrap: str) -> BaseException:
    return runner(send_on_a_dropped_connection(bootstrap))


def test_a_dropped_connection_is_a_kafka_connection_error_on_asyncios_loop(kafka: Broker) -> None:
    assert isinstance(run_on(asyncio.run, kafka.bootstrap), KafkaConnectionError)


def test_uvloop_lets_a_dropped_connection_escape_aiokafka_as_runtime_error(kafka: Broker) -> None:
    error = run_on(uvloop.run, kafka.bootstrap)
    assert type(error) is RuntimeError  # not a KafkaError: aiokafka's fetcher/sender tasks die on it
    assert "closed" in str(error)


def test_http_services_with_kafka_clients_run_on_asyncios_loop() -> None:
    assert uvicorn_options("info", kafka_clients=True)["loop"] == "asyncio"
    assert uvicorn_options("info", kafka_clients=False)["loop"] == "uvloop"
    assert uvicorn_options("info", kafka_clients=True)["http"] == "httptools"
