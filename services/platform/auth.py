"""Bearer API keys with scopes; only SHA-256 hashes of keys are kept."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from services.platform.problems import Problem
from services.platform.settings import CommonSettings

Scope = Literal["events:write", "read", "subscriptions:admin"]
ALL_SCOPES: Final[frozenset[str]] = frozenset({"events:write", "read", "subscriptions:admin"})
KEY_PREFIX: Final = "aw_"


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key (keys are long random tokens, so a fast hash suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeyEntry(BaseModel):
    """One configured key: its name, the hash of the secret and its scopes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: frozenset[Scope]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request."""

    name: str
    scopes: frozenset[str]


class Keyring:
    """Looks keys up by hash; built once per process."""

    def __init__(self, entries: Iterable[ApiKeyEntry]) -> None:
        self._by_hash: Mapping[str, Principal] = {
            e.sha256: Principal(e.name, frozenset(e.scopes)) for e in entries
        }

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> Keyring:
        """Keys from the keys file, plus the dev key (every scope) when set."""
        entries: list[ApiKeyEntry] = []
        if settings.api_keys_file is not None:
            raw = json.loads(settings.api_keys_file.read_text())
            entries.extend(ApiKeyEntry.model_validate(item) for item in raw)
        if settings.dev_key is not None:
            entries.append(
                ApiKeyEntry(
                    name="dev",
                    sha256=hash_key(settings.dev_key.get_secret_value()),
                    scopes=ALL_SCOPES,
                )
            )
        return cls(entries)

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, key: str) -> Principal | None:
        """The principal a key belongs to, if any."""
        return self._by_hash.get(hash_key(key))


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401, "Unauthorized", detail, kind="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="accordwatch"'},
    )


def authorize(request: Request, scope: Scope) -> Principal:
    """The principal of a request's bearer key, if the key is known and has `scope` (else 401/403)."""
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("send an API key: Authorization: Bearer <key>")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <key>'")
    return _grant(request, token.strip(), scope)


def _grant(request: Request, key: str, scope: Scope) -> Principal:
    keyring: Keyring = request.app.state.keyring
    principal = keyring.authenticate(key)
    if principal is None:
        raise _unauthorized("unknown API key")
    if scope not in principal.scopes:
        raise Problem(
            403, "Forbidden", f"the key {principal.name!r} lacks the scope {scope!r}",
            kind="forbidden", required_scope=scope,
        )
    request.state.principal = principal
    return principal


def require(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the request carries a known key with `scope` (see `authorize`)."""

    async def dependency(request: Request) -> Principal:
        return authorize(request, scope)

    return dependency


def _basic_password(token: str) -> str | None:
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep and password else None


def require_unless_public(scope: Scope) -> Callable[[Request], Awaitable[Principal | None]]:
    """For pages and feeds: anyone when the operator made them public, else a key with `scope`.

    Browsers and calendar or feed readers cannot always send a bearer header, so the key is
    also taken as the password of HTTP Basic authentication (any user name).
    """

    async def dependency(request: Request) -> Principal | None:
        settings: CommonSettings = request.app.state.settings
        if settings.public_status:
            return None
        kind, _, token = (request.headers.get("authorization") or "").partition(" ")
        try:
            if kind.lower() == "basic":
                key = _basic_password(token)
                if key is None:
                    raise _unauthorized("send the API key as the password of Basic authentication")
                return _grant(request, key, scope)
            return authorize(request, scope)
        except Problem as exc:
            if exc.status != 401:
                raise
            # Browsers and calendar apps ask for a user name and password on this challenge.
            raise Problem(401, exc.title, exc.problem_detail, kind=exc.kind, **exc.extensions,
                          headers={"WWW-Authenticate": 'Basic realm="accordwatch", charset="UTF-8"'}) from None

    return dependency
