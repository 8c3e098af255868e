"""Opaque page tokens: versioned, signed, and bound to the listing and filters that issued them.

A token is `base64url(JSON payload + 12-byte HMAC-SHA256)`. The payload says the token
format's version, which listing issued it, a digest of that listing's filters, and the
position to continue from. A token that is not base64, was cut short, was edited, comes from
another listing or from the same listing with other filters, is refused as a 422 naming the
parameter; a position a token carries is typed and range-checked again when it is read.
Tokens carry no authority (whoever holds a read key may read every page), so the key only has
to make edits detectable; set `ACCORDWATCH_PAGE_TOKEN_KEY` so that nobody outside can mint one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Final

import orjson

from services.platform.problems import Problem, invalid_parameter

VERSION: Final = 1
MAX_TOKEN_CHARS: Final = 1024
MAX_OFFSET: Final = 1_000_000_000
_TAG_BYTES = 12
_DEFAULT_KEY = b"accordwatch page tokens v1"


def _digest(filters: Mapping[str, Any]) -> str:
    canonical = orjson.dumps({k: filters[k] for k in sorted(filters)}, default=str)
    return hashlib.sha256(canonical).hexdigest()[:16]


class PageTokens:
    """Issues and reads the page tokens of one service."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = hashlib.sha256(key or _DEFAULT_KEY).digest()

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG_BYTES]

    def issue(self, listing: str, filters: Mapping[str, Any], position: Mapping[str, Any]) -> str:
        """A token to continue `listing` (with these filters) from `position`."""
        payload = orjson.dumps({"v": VERSION, "l": listing, "f": _digest(filters), "p": dict(position)})
        return base64.urlsafe_b64encode(payload + self._tag(payload)).decode().rstrip("=")

    def read(self, token: str | None, listing: str, filters: Mapping[str, Any], *,
             parameter: str = "page_token") -> dict[str, Any] | None:
        """The position a token carries, or None for no token; a 422 naming `parameter` for a bad one."""
        if not token:
            return None
        refused = invalid_parameter(f"query.{parameter}", "not a page token this listing gave with these "
                                    "filters (tokens are opaque: pass the `next` of the previous page as it is)")
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise refused
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise refused from None
        payload, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
        if len(raw) <= _TAG_BYTES or not hmac.compare_digest(tag, self._tag(payload)):
            raise refused
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise refused from None
        if (not isinstance(doc, dict) or doc.get("v") != VERSION or doc.get("l") != listing
                or doc.get("f") != _digest(filters) or not isinstance(doc.get("p"), dict)):
            raise refused
        position: dict[str, Any] = doc["p"]
        return position


def position_text(
    position: Mapping[str, Any] | None, name: str, parameter: str, *, max_length: int = 400
) -> str | None:
    """A text position (a keyset `after`) from a token, checked."""
    if position is None:
        return None
    value = position.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise _bad_position(parameter)
    return value


def position_offset(position: Mapping[str, Any] | None, parameter: str) -> int:
    """An offset position from a token, checked (0 when there is no token)."""
    if position is None:
        return 0
    value = position.get("offset")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_OFFSET:
        raise _bad_position(parameter)
    return value


def _bad_position(parameter: str) -> Problem:
    return invalid_parameter(f"query.{parameter}", "the page token does not hold a position this listing takes")
