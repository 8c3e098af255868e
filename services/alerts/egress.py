"""Egress safety: webhooks only ever reach public addresses, unless an operator says otherwise.

A URL whose host is, or resolves to, a private, loopback, link-local, multicast,
reserved or unspecified address is refused, at subscription time and again at every
delivery (DNS may change). The operator's allow-list (`ACCORDWATCH_WEBHOOK_ALLOW`) names
exceptions: a host name there may resolve anywhere; an IP address or network there
admits URLs whose host is a literal address inside it. A name that merely resolves into
an allowed network is still refused, so `localhost` is not admitted by allowing
127.0.0.1, and no DNS name can rebind its way onto an allowed address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressRefused(OSError):
    """A webhook URL or address the policy does not allow; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook URL, checked for shape."""

    url: str
    host: str
    port: int
    literal: IPAddress | None


def is_public(address: IPAddress) -> bool:
    """Whether an address is globally routable unicast."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


class EgressPolicy:
    """The allow-list and the checks made against it."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (e.strip() for e in allow):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        self.names = frozenset(names)
        self.networks = tuple(networks)

    def parse(self, url: str) -> Target:
        """Check a URL's shape: http(s), a host, no credentials."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise EgressRefused(f"not a valid URL: {exc}") from exc
        if parts.scheme not in ("http", "https"):
            raise EgressRefused("the URL must start with http:// or https://")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise EgressRefused("the URL has no host")
        if parts.username is not None or parts.password is not None:
            raise EgressRefused("credentials in the URL are not allowed; the signature authenticates us")
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        return Target(url, host, port or (443 if parts.scheme == "https" else 80), literal)

    def allows_address(self, host: str, address: IPAddress) -> bool:
        """Whether `host` may be reached at `address`."""
        if host in self.names or is_public(address):
            return True
        literal = _literal(host)
        return literal is not None and any(literal in network for network in self.networks)

    def check_address(self, host: str, address: IPAddress) -> None:
        """Refuse an address the policy does not allow for `host`."""
        if not self.allows_address(host, address):
            kind = _kind(address)
            what = f"{host} is" if _literal(host) is not None else f"{host} resolves to {address},"
            raise EgressRefused(
                f"{what} {'an' if kind[0] in 'aeiou' else 'a'} {kind} address; webhooks only go to public "
                "addresses unless ACCORDWATCH_WEBHOOK_ALLOW names the host"
            )

    async def check(self, url: str) -> Target:
        """Check a URL fully: its shape and every address its host resolves to."""
        target = self.parse(url)
        if target.literal is not None:
            self.check_address(target.host, target.literal)
            return target
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise EgressRefused(f"cannot resolve {target.host}: {exc.strerror or exc}") from exc
        for info in infos:
            self.check_address(target.host, ipaddress.ip_address(info[4][0]))
        return target

    def resolver(self) -> GuardedResolver:
        """An aiohttp resolver that enforces this policy at connection time."""
        return GuardedResolver(self)


class GuardedResolver(AbstractResolver):
    """Resolves with the default resolver, then refuses addresses the policy forbids."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self.inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        name = host.lower().rstrip(".")
        for result in results:
            self.policy.check_address(name, ipaddress.ip_address(result["host"]))
        return results

    async def close(self) -> None:
        await self.inner.close()


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _kind(address: Any) -> str:
    for attribute, word in (
        ("is_loopback", "loopback"), ("is_link_local", "link-local"), ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"), ("is_private", "private"), ("is_reserved", "reserved"),
    ):
        if getattr(address, attribute, False):
            return word
    return "non-public"
