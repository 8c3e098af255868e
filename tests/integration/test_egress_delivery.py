"""Egress through the alerts API: every refused form at subscription, and again when the message goes out.

The resolver is a stub of our own port (`EgressPolicy.resolve`): it answers a public address
while the subscription is checked, and a private form when the delivery connects, as a DNS
name rebound between the two would. Nothing is ever connected to: refusals come first.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.alerts.egress import EgressPolicy, IPAddress
from tests.apps import AUTH, alerts_app, alerts_engine
from tests.unit.test_egress import LITERAL_HOSTS, NOT_PUBLIC

PUBLIC = ipaddress.ip_address("93.184.216.34")


class Rebinding:
    """A resolver stub: public at first, then whatever `later` says."""

    def __init__(self) -> None:
        self.later: IPAddress = PUBLIC
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls += 1
        return [PUBLIC] if self.calls == 1 else [self.later]


STUB = Rebinding()


@pytest.fixture
def stub() -> Rebinding:
    STUB.later, STUB.calls = PUBLIC, 0
    return STUB


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    engine = alerts_engine(tmp_path_factory.mktemp("egress"))
    with TestClient(alerts_app(engine, egress=EgressPolicy([], resolve=STUB)), headers=AUTH) as c:
        yield c
    engine.dispose()


@pytest.mark.parametrize("host", LITERAL_HOSTS)
def test_a_subscription_to_a_literal_address_that_is_not_public_is_422(client: TestClient, host: str) -> None:
    response = client.post("/v1/subscriptions", json={"url": f"http://{host}/hook"})
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["field"] == "body.url"
    assert "not a public address" in error["reason"]
    assert f"http://{host}/hook" not in {s["url"] for s in client.get("/v1/subscriptions").json()["items"]}


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_a_name_rebound_to_an_address_that_is_not_public_is_refused_at_delivery(
    client: TestClient, stub: Rebinding, address: str
) -> None:
    created = client.post("/v1/subscriptions", json={"url": "http://hooks.example.org/accordwatch"})
    assert created.status_code == 201, created.text  # the stub answered a public address
    stub.later = ipaddress.ip_address(address)
    ping = client.post(f"/v1/subscriptions/{created.json()['id']}/test")
    assert ping.status_code == 200, ping.text
    result = ping.json()
    assert result["status_code"] is None, "no request reached anything"
    assert "not a public address" in result["error"]
    assert address not in result["error"]
    assert stub.calls == 2, "checked at subscription, then again at connection"
