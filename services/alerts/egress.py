"""Egress safety: webhooks only ever reach public addresses, unless an operator says otherwise.

A URL whose host is, or resolves to, an address that is not globally routable unicast is
refused, at subscription time and again at every connection (DNS may change). That covers
private, loopback, link-local, multicast, reserved, unspecified and site-local (fec0::/10)
addresses, and every IPv6 form that embeds an IPv4 address: IPv4-mapped addresses are
judged by the address they map, while IPv4-compatible (::/96), NAT64 (64:ff9b::/96 and the
local-use 64:ff9b:1::/48), 6to4 (2002::/16), Teredo (2001::/32) and IPv4-translated forms are
refused whatever they embed: where they lead is decided by a translator we cannot see.

Hosts are judged in the form the HTTP client connects to: `127.1`, `2130706433`, `0x7f.1` and
`0177.0.0.1` are all 127.0.0.1 to the system's resolver (and aiohttp hands all-digit hosts to
it unchecked), so they are parsed the same way here. Names are resolved by this policy, and
the connection goes to exactly the addresses that passed (`GuardedResolver`); literal hosts
are connected to in their canonical form (`connect_url`).

The operator's allow-list (`ACCORDWATCH_WEBHOOK_ALLOW`) names exceptions: a host name there
may resolve anywhere; an IP address or network there admits URLs whose host is a literal
address inside it. A name that merely resolves into an allowed network is still refused, so
`localhost` is not admitted by allowing 127.0.0.1, and no DNS name can rebind its way onto an
allowed address. Refusals say "not a public address" and never what a name resolved to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolve = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Resolves a host name to its addresses (the system resolver by default; a stub in tests)."""

NEVER_GLOBAL_V6 = tuple(ipaddress.IPv6Network(n) for n in (
    "fec0::/10",  # site-local (deprecated, but routed inside sites)
    "::/96",  # IPv4-compatible
    "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
    "64:ff9b::/96",  # NAT64, well-known prefix
    "64:ff9b:1::/48",  # NAT64, local use
    "2002::/16",  # 6to4
    "2001::/32",  # Teredo
))
NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*$")
NOT_PUBLIC = ("not a public address; webhooks only go to public addresses unless ACCORDWATCH_WEBHOOK_ALLOW "
              "names the host")


class EgressRefused(OSError):
    """A webhook URL or address the policy does not allow; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook URL, checked for shape, with its host in canonical form."""

    url: str
    host: str
    port: int
    literal: IPAddress | None


def is_public(address: IPAddress) -> bool:
    """Whether an address is globally routable unicast (IPv4-mapped forms judged by what they map)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if any(address in network for network in NEVER_GLOBAL_V6):
            return False
    return address.is_global and not address.is_multicast


def host_address(host: str) -> IPAddress | None:
    """The address a URL host stands for if it is a literal, read as the system's resolver reads it."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if NUMERIC_HOST.match(host):
        try:  # inet_aton: the BSD forms 127.1, 2130706433, 0x7f.1, 0177.0.0.1
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise EgressRefused(f"{host} is not a valid host") from None
    return None


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for `host`."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


class EgressPolicy:
    """The allow-list and the checks made against it."""

    def __init__(self, allow: Iterable[str] = (), *, resolve: Resolve = system_resolve,
                 resolve_timeout_s: float = 5.0) -> None:
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
        self.resolve = resolve
        self.resolve_timeout_s = resolve_timeout_s

    def parse(self, url: str) -> Target:
        """Check a URL's shape: http(s), a host, no credentials; the host in canonical form."""
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
        literal = host_address(host)
        if literal is not None:
            host = str(literal)
        return Target(url, host, port or (443 if parts.scheme == "https" else 80), literal)

    def allows_address(self, host: str, address: IPAddress) -> bool:
        """Whether `host` may be reached at `address`."""
        if host in self.names or is_public(address):
            return True
        literal = _literal(host)
        return literal is not None and any(literal in network for network in self.networks)

    def check_address(self, host: str, address: IPAddress) -> None:
        """Refuse an address the policy does not allow for `host` (without saying what it is)."""
        if not self.allows_address(host, address):
            raise EgressRefused(f"{host}: {NOT_PUBLIC}")

    async def addresses(self, target: Target) -> list[IPAddress]:
        """The addresses a checked target may be connected to: all of them pass, or it is refused."""
        if target.literal is not None:
            self.check_address(target.host, target.literal)
            return [target.literal]
        try:
            async with asyncio.timeout(self.resolve_timeout_s):
                found = await self.resolve(target.host, target.port)
        except (OSError, TimeoutError) as exc:
            raise EgressRefused(f"cannot resolve {target.host}") from exc
        if not found:
            raise EgressRefused(f"cannot resolve {target.host}")
        for address in found:
            self.check_address(target.host, address)
        return found

    async def check(self, url: str) -> Target:
        """Check a URL fully: its shape and every address its host resolves to."""
        target = self.parse(url)
        await self.addresses(target)
        return target

    def resolver(self) -> GuardedResolver:
        """An aiohttp resolver that enforces this policy at connection time."""
        return GuardedResolver(self)


def connect_url(target: Target) -> tuple[str, dict[str, str]]:
    """The URL to request and extra headers: a literal host in the canonical form that was checked."""
    if target.literal is None:
        return target.url, {}
    url = URL(target.url)
    original = url.raw_host or ""
    canonical = url.with_host(target.host)
    if canonical.raw_host == original:
        return target.url, {}
    default = {"http": 80, "https": 443}.get(url.scheme)
    host_header = original if url.explicit_port is None or url.port == default else f"{original}:{url.port}"
    return str(canonical), {"host": host_header}


class GuardedResolver(AbstractResolver):
    """Resolves through the policy: the connection goes only to addresses that passed it."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = self.policy.parse(f"http://{host}:{port}/" if ":" not in host else f"http://[{host}]:{port}/")
        found = await self.policy.addresses(target)
        results = [
            ResolveResult(hostname=host, host=str(a), port=port,
                          family=socket.AF_INET6 if a.version == 6 else socket.AF_INET,
                          proto=0, flags=socket.AI_NUMERICHOST)
            for a in found if family in (0, socket.AF_UNSPEC) or family == (
                socket.AF_INET6 if a.version == 6 else socket.AF_INET)
        ]
        if not results:
            raise EgressRefused(f"cannot resolve {target.host}")
        return results

    async def close(self) -> None:
        return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
