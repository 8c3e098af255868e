"""CloudEvents binary-mode mapping between events and Kafka records.

The record key is the subject (one subject's events stay in order on one partition),
the value is the event JSON, and the CloudEvents attributes travel as `ce_*` headers,
so any Kafka client can read the topic without this project's code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from schemas.envelope import Event, instant
from schemas.registry import UPCASTERS, InvalidEvent, NotJSON, Upcasters, parse_event_json

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/json"
_SPEC_VERSION: Final = SPEC_VERSION.encode()
_CONTENT_TYPE: Final = CONTENT_TYPE.encode()

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What goes onto the events topic for one event."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class UndecodableRecord(ValueError):
    """A record on the topic that is not an event of this contract; `reason` says why."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # low-cardinality: not_json, unknown_type, invalid, mismatch


def dataschema(event: Event) -> str:
    """The URN naming an event's type and schema version."""
    return f"urn:accordwatch:schema:{event.type}:v{event.schema_version}"


def to_record(event: Event, *, source: str) -> KafkaRecord:
    """Map a recorded event (id and recorded_at set) to a binary-mode CloudEvents record."""
    (record,) = to_records([event], source=source)
    return record


def to_records(events: Sequence[Event], *, source: str) -> list[KafkaRecord]:
    """`to_record` for many events: header values they share are encoded once."""
    shared_source = source.encode()
    encoded: dict[Any, bytes] = {}  # recorded_at, occurred_at, type and version -> their header bytes

    def once(key: Any, make: Callable[[], str]) -> bytes:
        found = encoded.get(key)
        if found is None:
            found = encoded[key] = make().encode()
        return found

    records = []
    for event in events:
        if event.id is None or event.recorded_at is None:
            raise ValueError("only a recorded event (with id and recorded_at) goes onto the topic")
        occurred, recorded = event.occurred_at, event.recorded_at
        subject = event.subject.encode()
        headers = [
            ("ce_specversion", _SPEC_VERSION),
            ("ce_id", str(event.id).encode()),
            ("ce_type", once(event.type, event.type.__str__)),
            ("ce_source", shared_source),
            ("ce_subject", subject),
            ("ce_time", once(("time", occurred), lambda: instant(occurred).isoformat())),  # noqa: B023
            ("ce_dataschema", once((event.type, event.schema_version), lambda: dataschema(event))),  # noqa: B023
            ("ce_recordedat", once(("recorded", recorded), recorded.isoformat)),
            ("content-type", _CONTENT_TYPE),
        ]
        value = type(event).__pydantic_serializer__.to_json(event, exclude_none=True)
        records.append(KafkaRecord(key=subject, value=value, headers=headers))
    return records


def from_record(
    key: bytes | None, value: bytes | None, headers: Headers, *, upcasters: Upcasters = UPCASTERS
) -> Event:
    """Decode a record back into an event, or raise `UndecodableRecord` with the reason."""
    if not value:
        raise UndecodableRecord("record has no value", "invalid")
    try:
        event = parse_event_json(value, upcasters=upcasters)
    except NotJSON as exc:
        raise UndecodableRecord(f"value is {exc.errors[0].reason}", "not_json") from None
    except InvalidEvent as exc:
        kind = "unknown_type" if any(e.field == "type" for e in exc.errors) else "invalid"
        raise UndecodableRecord(f"value is not a valid event: {exc}", kind) from None
    if event.id is None or event.recorded_at is None:
        raise UndecodableRecord("event on the topic lacks id or recorded_at", "invalid")
    for name, raw in headers:
        if name == "ce_id":
            if raw.decode(errors="replace") != str(event.id):
                raise UndecodableRecord("ce_id header does not match the event id", "mismatch")
            break
    if key is not None and key != event.subject.encode():
        raise UndecodableRecord("record key does not match the event subject", "mismatch")
    return event
