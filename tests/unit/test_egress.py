"""Egress policy: which webhook URLs and addresses are refused, decided without connecting anywhere."""

from __future__ import annotations

import ipaddress

import pytest

from services.alerts.egress import EgressPolicy, EgressRefused, IPAddress, connect_url, is_public

LOOPBACK_ONLY = EgressPolicy(["127.0.0.1"])
NOTHING_ALLOWED = EgressPolicy([])

NOT_PUBLIC = [
    "10.0.0.1", "169.254.169.254", "::1", "::ffff:10.0.0.1", "224.0.0.1", "0.0.0.0", "127.0.0.2", "100.64.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:5db8:d822::",  # 6to4 of a public address: refused all the same
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:0:7f00:1",  # IPv4-translated
    "fec0::1",  # site-local
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "fe80::1", "fc00::1", "ff02::1", "::",
]
"""Addresses no webhook may reach, literal or resolved."""

LITERAL_HOSTS = [f"[{a}]" if ":" in a else a for a in NOT_PUBLIC] + [
    "127.1", "2130706433", "0x7f.1", "0177.0.0.1", "0x7f000001", "127.0.0.1.", "10.1", "0xa9.0xfe.0xa9.0xfe",
]
"""URL hosts that are literal addresses, in every form the system's resolver reads as one."""


@pytest.mark.parametrize("host", LITERAL_HOSTS)
async def test_a_literal_host_that_is_not_public_is_refused(host: str) -> None:
    with pytest.raises(EgressRefused, match="not a public address"):
        await NOTHING_ALLOWED.check(f"http://{host}:8080/hook")  # literal: nothing is resolved, nothing connects


@pytest.mark.parametrize("address", NOT_PUBLIC)
async def test_a_name_resolving_to_an_address_that_is_not_public_is_refused_without_saying_it(address: str) -> None:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address(address)]

    policy = EgressPolicy([], resolve=resolve)
    with pytest.raises(EgressRefused, match="not a public address") as refused:
        await policy.check("https://hooks.example.org/accordwatch")
    assert address not in str(refused.value)
    assert "93.184" not in str(refused.value)


@pytest.mark.parametrize(("url", "words"), [
    ("ftp://example.com/", "http:// or https://"),
    ("not a url", "http:// or https://"),
    ("http:///path", "no host"),
    ("https://user:pass@example.com/", "credentials"),
    ("http://1.2.3.4.5/", "not a valid host"),
])
async def test_malformed_urls_are_refused_with_a_reason(url: str, words: str) -> None:
    with pytest.raises(EgressRefused, match=words):
        await LOOPBACK_ONLY.check(url)


async def test_a_name_that_does_not_resolve_is_refused_quickly() -> None:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        raise OSError("no such host")

    with pytest.raises(EgressRefused, match=r"cannot resolve hooks\.example"):
        await EgressPolicy([], resolve=resolve).check("http://hooks.example/")


async def test_localhost_is_refused_although_127_0_0_1_is_allowed() -> None:
    with pytest.raises(EgressRefused, match="not a public address"):
        await LOOPBACK_ONLY.check("http://localhost:8080/hook")


async def test_an_allow_listed_literal_address_is_admitted_in_every_spelling() -> None:
    for host in ("127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1"):
        target = await LOOPBACK_ONLY.check(f"http://{host}:8080/hook")
        assert (target.host, target.port) == ("127.0.0.1", 8080)


def test_a_literal_is_requested_in_the_canonical_form_that_was_checked() -> None:
    target = LOOPBACK_ONLY.parse("http://0x7f.1:8080/hook?x=1")
    assert connect_url(target) == ("http://127.0.0.1:8080/hook?x=1", {"host": "0x7f.1:8080"})
    plain = LOOPBACK_ONLY.parse("http://127.0.0.1:8080/hook")
    assert connect_url(plain) == ("http://127.0.0.1:8080/hook", {})


def test_an_allow_listed_name_may_resolve_anywhere_and_networks_admit_literals_only() -> None:
    policy = EgressPolicy(["hooks.internal", "10.20.0.0/16"])
    assert policy.allows_address("hooks.internal", ipaddress.ip_address("10.9.9.9"))
    assert policy.allows_address("10.20.3.4", ipaddress.ip_address("10.20.3.4"))
    assert not policy.allows_address("rebind.example", ipaddress.ip_address("10.20.3.4"))
    assert policy.allows_address("example.com", ipaddress.ip_address("93.184.216.34"))


def test_public_addresses_pass() -> None:
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34", "1.1.1.1"):
        assert is_public(ipaddress.ip_address(address)), address
