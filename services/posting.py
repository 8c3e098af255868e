"""How `accordwatch post` sends events: every id fixed before the first attempt, batches, retries.

An event posted without an id is given a UUIDv7 derived from its content: the 48-bit time
field is its `occurred_at` (in milliseconds since 1970, clamped to the field), the random
bits are a SHA-256 of the canonical JSON of the event and of how many identical events came
before it in the same input. So a retry sends the same ids (they are fixed before the first
attempt), and re-running the same file after a failure, or after fixing a bad line in it,
gives every event the id it had the first time: ingest accepts it again and the projector
and alerts apply each id once. Nothing is kept between runs, so it works from any machine.
Two events that are the same fact (the same JSON, in the same file, once each) get the same
id wherever they are posted from; an intentional repeat of an identical event in one file is
a separate event (its occurrence number differs).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import orjson

from schemas.envelope import instant, parse_moment

NAMESPACE = b"accordwatch post ids v1\x00"
RETRYABLE = frozenset({429, 502, 503, 504})
MAX_MS = 2**48 - 1


class Answer(Protocol):
    """What a batch POST answers (an httpx response)."""

    status_code: int

    @property
    def headers(self) -> Any: ...

    def json(self) -> Any: ...


class Poster(Protocol):
    """Something that POSTs JSON to ingest (an httpx client)."""

    def post(self, url: str, *, json: Any) -> Any: ...


class Refused(Exception):
    """The server refused a batch (a 4xx, or a 5xx after every retry); `accepted` came before it."""

    def __init__(self, response: Any, accepted: int, start: int) -> None:
        super().__init__(f"{response.status_code} at event {start}")
        self.response = response
        self.accepted = accepted
        self.start = start


def _millis(event: dict[str, Any]) -> int:
    try:
        moment = instant(parse_moment(event.get("occurred_at")))
    except (ValueError, OverflowError):
        return 0  # ingest will refuse the event and name the field; the id only has to be stable
    ms = int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
    return min(max(ms, 0), MAX_MS)


def content_id(event: dict[str, Any], occurrence: int) -> uuid.UUID:
    """A UUIDv7 for an event without one: time from occurred_at, random bits from its content."""
    digest = hashlib.sha256(NAMESPACE + orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
                            + occurrence.to_bytes(8, "big")).digest()
    rand = int.from_bytes(digest[:10], "big")  # 80 bits, of which 74 are used
    value = (_millis(event) << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64 | (0b10 << 62) | (rand & (2**62 - 1))
    return uuid.UUID(int=value)


def with_ids(events: Sequence[Any]) -> list[Any]:
    """The events, each without an id given its content-derived UUIDv7 (the others untouched)."""
    seen: Counter[bytes] = Counter()
    out: list[Any] = []
    for event in events:
        if isinstance(event, dict) and not event.get("id"):
            key = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
            event = {**event, "id": str(content_id(event, seen[key]))}
            seen[key] += 1
        out.append(event)
    return out


def _delay(response: Answer | None, attempt: int) -> float:
    retry_after: str = response.headers.get("retry-after", "") if response is not None else ""
    wait = float(retry_after) if retry_after.isdigit() else 0.5 * 2**attempt
    return min(wait, 30.0)


def post_batches(
    client: Poster, events: Sequence[Any], *, batch: int = 1000, retries: int = 5,
    on_batch: Callable[[int], None] | None = None, sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST the events in batches, each retried with the same ids while Kafka or the network is down.

    Returns how many were accepted; raises `Refused` at the first batch the server refuses.
    """
    events = with_ids(events)
    accepted = 0
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        for attempt in range(retries + 1):
            response: Answer | None = None
            try:
                response = client.post("/v1/events/batch", json={"events": chunk})
            except httpx.TransportError:
                if attempt == retries:
                    raise
            if response is not None and (response.status_code not in RETRYABLE or attempt == retries):
                break
            sleep(_delay(response, attempt))
        assert response is not None
        if response.status_code != 202:
            raise Refused(response, accepted, start)
        accepted += response.json()["accepted"]
        if on_batch is not None:
            on_batch(len(chunk))
    return accepted
