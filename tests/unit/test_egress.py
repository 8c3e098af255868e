"""Egress policy: which webhook URLs and addresses are refused, decided without connecting anywhere."""

from __future__ import annotations

import ipaddress

import pytest

from services.alerts.egress import EgressPolicy, EgressRefused

LOOPBACK_ONLY = EgressPolicy(["127.0.0.1"])


@pytest.mark.parametrize(("url", "words"), [
    ("http://10.0.0.1/", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[::1]:8080/", "loopback"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://224.0.0.1/", "multicast"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://127.0.0.2/", "loopback"),
    ("ftp://example.com/", "http:// or https://"),
    ("not a url", "http:// or https://"),
    ("http:///path", "no host"),
    ("https://user:pass@example.com/", "credentials"),
])
async def test_forbidden_urls_are_refused_with_a_reason(url: str, words: str) -> None:
    with pytest.raises(EgressRefused, match=words):
        await LOOPBACK_ONLY.check(url)  # literal addresses only: nothing is resolved, nothing connects


async def test_localhost_is_refused_although_127_0_0_1_is_allowed() -> None:
    with pytest.raises(EgressRefused, match="loopback"):
        await LOOPBACK_ONLY.check("http://localhost:8080/hook")


async def test_an_allow_listed_literal_address_is_admitted() -> None:
    target = await LOOPBACK_ONLY.check("http://127.0.0.1:8080/hook")
    assert (target.host, target.port) == ("127.0.0.1", 8080)


def test_an_allow_listed_name_may_resolve_anywhere_and_networks_admit_literals_only() -> None:
    policy = EgressPolicy(["hooks.internal", "10.20.0.0/16"])
    assert policy.allows_address("hooks.internal", ipaddress.ip_address("10.9.9.9"))
    assert policy.allows_address("10.20.3.4", ipaddress.ip_address("10.20.3.4"))
    assert not policy.allows_address("rebind.example", ipaddress.ip_address("10.20.3.4"))
    assert policy.allows_address("example.com", ipaddress.ip_address("93.184.216.34"))
