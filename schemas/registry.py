"""The catalogue of event types, upcasting of old versions, and validation with clear errors.

`parse_event` is the one door into the contract: raw JSON (bytes or decoded) in, a frozen
event out, or `InvalidEvent` listing every problem by field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union

import orjson
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from schemas.envelope import CONTROL_PATTERNS, Event, control_character
from schemas.events import EVENT_CLASSES

EVENT_TYPES: Mapping[str, type[Event]] = {
    cls.model_fields["type"].annotation.__args__[0]: cls  # type: ignore[union-attr]
    for cls in EVENT_CLASSES
}

AnyEvent = Annotated[Union[*EVENT_CLASSES], Field(discriminator="type")]  # type: ignore[valid-type]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(AnyEvent)
EVENTS_ADAPTER: TypeAdapter[list[Event]] = TypeAdapter(list[AnyEvent])




class _EventsObject(BaseModel):
    """A batch document: its events under "events" (other keys are ignored)."""

    events: list[AnyEvent]

RawEvent = dict[str, Any]
_LONG_NUMBER = re.compile(rb"\d{19}")
Upcaster = Callable[[RawEvent], RawEvent]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of an event (`index` is its place in a batch)."""

    field: str
    reason: str
    index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The problem+json `errors` entry."""
        out: dict[str, Any] = {"field": self.field, "reason": self.reason}
        if self.index is not None:
            out["index"] = self.index
        return out


class InvalidEvent(ValueError):
    """An event that does not satisfy the contract; `errors` names every bad field."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in self.errors))


class Upcasters:
    """Named functions that lift a raw event of version N of its type to version N + 1."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register `fn(raw) -> raw` lifting `event_type` from `from_version` to the next."""

        def decorate(fn: Upcaster) -> Upcaster:
            key = (event_type, from_version)
            if key in self._steps:
                raise ValueError(f"an upcaster for {event_type} v{from_version} already exists")
            self._steps[key] = fn
            return fn

        return decorate

    @property
    def empty(self) -> bool:
        """Whether no step is registered (then every version on the wire is current)."""
        return not self._steps

    def upcast(self, raw: RawEvent) -> RawEvent:
        """Apply every step from the event's version to the newest one registered."""
        event_type = raw.get("type")
        version = raw.get("schema_version")  # absent: the sender speaks the current version
        if not isinstance(event_type, str) or not isinstance(version, int):
            return raw
        while (step := self._steps.get((event_type, version))) is not None:
            raw = {**step(raw), "schema_version": version + 1}
            version += 1
        return raw


UPCASTERS = Upcasters()
"""The project's upcasters: every version ever written to the topic reads as the current one."""


def _data(raw: RawEvent) -> dict[str, Any] | None:
    data = raw.get("data")
    return dict(data) if isinstance(data, dict) else None


@UPCASTERS.register("CourtRulingIssued", 1)
def upcast_court_ruling_issued_v1_v2(raw: RawEvent) -> RawEvent:
    """v1 rulings named no regions and no earlier rulings: nationwide, reviewing none.

    So a v1 `vacated` blocks what it affects (a vacatur of the policy itself), as v1 meant.
    """
    data = _data(raw)
    if data is None:
        return raw  # validation names the problem
    data.setdefault("regions", [])
    data.setdefault("rulings", [])
    return {**raw, "data": data}


@UPCASTERS.register("StayDecided", 1)
def upcast_stay_decided_v1_v2(raw: RawEvent) -> RawEvent:
    """v1 decisions (granted, denied, administrative) took effect when made, everywhere.

    They name no rulings, so they concern the documented default (see `StayDecidedData.rulings`).
    """
    data = _data(raw)
    if data is None:
        return raw
    data.setdefault("rulings", [])
    data.setdefault("remaining_regions", [])
    return {**raw, "data": data}


def parse_event(obj: Any, *, upcasters: Upcasters = UPCASTERS, index: int | None = None) -> Event:
    """Validate a decoded JSON object as an event of the current schema version."""
    if isinstance(obj, dict):
        obj = upcasters.upcast(obj)
    try:
        event = EVENT_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise InvalidEvent(describe(exc, index=index)) from None
    return _current_version(event, index)


def _current_version(event: Event, index: int | None) -> Event:
    current = type(event).SCHEMA_VERSION
    if event.schema_version != current:
        raise InvalidEvent(
            [
                FieldError(
                    "schema_version",
                    f"{event.type} has no upcaster from version {event.schema_version} "
                    f"to the current version {current}",
                    index,
                )
            ]
        )
    return event


class NotJSON(InvalidEvent):
    """A document that is not JSON at all."""


def parse_event_json(raw: bytes | str, *, upcasters: Upcasters = UPCASTERS) -> Event:
    """Decode and validate one JSON document as an event (`NotJSON` if it is not JSON).

    pydantic parses the bytes itself, without building the intermediate dict (the projector
    decodes every record through here); only a document of an older version, or one that does
    not validate, goes the slower way through the upcasters.
    """
    try:
        event = EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False)
        if problems and problems[0]["type"] == "json_invalid":
            raise NotJSON([FieldError("", f"not valid JSON: {problems[0]['msg']}")]) from None
        if upcasters.empty:
            raise InvalidEvent(describe(exc)) from None
        return _upcast_and_parse(raw, upcasters, exc)
    if event.schema_version != type(event).SCHEMA_VERSION and not upcasters.empty:
        return _upcast_and_parse(raw, upcasters, None)
    return _current_version(event, None)


def _upcast_and_parse(raw: bytes | str, upcasters: Upcasters, failed: ValidationError | None) -> Event:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if failed is not None:  # pydantic read what orjson will not (NaN, 1e309): judge it by pydantic's errors
            raise InvalidEvent(describe(failed)) from None
        raise NotJSON([FieldError("", f"not valid JSON: {exc}")]) from None
    return parse_event(obj, upcasters=upcasters)


def parse_events_json(
    raw: bytes, *, wrapped: bool = False, upcasters: Upcasters = UPCASTERS
) -> list[Event] | None:
    """Validate a JSON array of events (`wrapped`: an object with it under "events") in one pass.

    The events, or None unless every one is a valid event of its current version. A
    shortcut only, for documents already known to be JSON: on None, `parse_event` on each
    decoded item judges and names the problems (tests hold that whatever this accepts,
    `parse_event` accepts as the same event). Documents of an older version (the upcasters lift
    them) and documents with numbers of 19 or more digits take that slower way too: orjson
    reads integers beyond 64 bits as floats, pydantic's own JSON parser reads them exactly.
    """
    if _LONG_NUMBER.search(raw):
        return None
    try:
        events: list[Event] = (_EventsObject.model_validate_json(raw).events if wrapped
                                else EVENTS_ADAPTER.validate_json(raw))
    except ValidationError:
        return None
    if any(event.schema_version != type(event).SCHEMA_VERSION for event in events):
        return None
    return events


def describe(exc: ValidationError, *, index: int | None = None) -> list[FieldError]:
    """Turn pydantic's errors into one `FieldError` per problem, named by dotted path."""
    out: list[FieldError] = []
    errors = exc.errors(include_url=False)
    # A list with a bad item is also "too short" by the items left after validation: name the item only.
    with_bad_items = {tuple(err["loc"][:i]) for err in errors for i, part in enumerate(err["loc"])
                      if isinstance(part, int)}
    for err in errors:
        loc = list(err["loc"])
        kind = err["type"]
        if kind == "too_short" and tuple(loc) in with_bad_items:
            continue
        ctx = err.get("ctx") or {}
        if kind == "union_tag_invalid":
            known = ", ".join(sorted(EVENT_TYPES))
            out.append(FieldError("type", f"unknown event type {ctx.get('tag')!r}; known: {known}", index))
            continue
        if kind == "union_tag_not_found":
            out.append(FieldError("type", "missing: every event names its type", index))
            continue
        if kind in ("model_attributes_type", "model_type", "dict_type") and not loc:
            out.append(FieldError("", "an event must be a JSON object", index))
            continue
        if loc and isinstance(loc[0], str) and loc[0] in EVENT_TYPES:
            loc = loc[1:]  # the discriminator tag pydantic puts first
        if loc == ["sources"] and kind == "too_short":
            out.append(FieldError("sources", "no sources: every event needs at least one", index))
            continue
        if kind == "string_pattern_mismatch" and ctx.get("pattern") in CONTROL_PATTERNS:
            lines = CONTROL_PATTERNS[ctx["pattern"]]
            reason = control_character(str(err["input"]), lines_allowed=lines) or "contains a control character"
            out.append(FieldError(_dotted(loc), reason, index))
            continue
        if kind == "extra_forbidden" and loc[-3:-1] == ["changes", "data"]:
            out.append(FieldError(_dotted(loc), "not a data field of any event type a correction can change", index))
            continue
        out.append(FieldError(_dotted(loc), _reason(err["msg"], kind), index))
    return out


def _dotted(loc: list[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        else:
            path += f".{part}" if path else str(part)
    return path


def _reason(msg: str, kind: str) -> str:
    if kind == "missing":
        return "missing: this field is required"
    if kind == "extra_forbidden":
        return "not a field of this event type"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def catalogue() -> list[dict[str, Any]]:
    """The event types with their description, version and required data fields."""
    entries = []
    for name, cls in sorted(EVENT_TYPES.items()):
        data_model = cls.model_fields["data"].annotation
        required = sorted(
            field
            for field, info in data_model.model_fields.items()  # type: ignore[union-attr]
            if info.is_required()
        )
        entries.append(
            {
                "type": name,
                "version": cls.SCHEMA_VERSION,
                "description": (cls.__doc__ or "").strip(),
                "required_data": required,
                "schema": f"/v1/schemas/{name}",
            }
        )
    return entries
