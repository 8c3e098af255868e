"""CloudEvents binary-mode mapping between events and Kafka records.

The record key is the subject (one subject's events stay in order on one partition),
the value is the event JSON, and the CloudEvents attributes travel as `ce_*` headers,
so any Kafka client can read the topic without this project's code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from schemas.envelope import Event, instant
from schemas.registry import UPCASTERS, InvalidEvent, NotJSON, Upcasters, parse_event_json

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/json"

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
    if event.id is None or event.recorded_at is None:
        raise ValueError("only a recorded event (with id and recorded_at) goes onto the topic")
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", str(event.id).encode()),
        ("ce_type", event.type.encode()),
        ("ce_source", source.encode()),
        ("ce_subject", event.subject.encode()),
        ("ce_time", instant(event.occurred_at).isoformat().encode()),
        ("ce_dataschema", dataschema(event).encode()),
        ("ce_recordedat", event.recorded_at.isoformat().encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    return KafkaRecord(
        key=event.subject.encode(),
        value=event.model_dump_json(exclude_none=True).encode(),
        headers=headers,
    )


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
