"""Ingest HTTP routes: validate, stamp, publish, and answer 202 only once Kafka acknowledged."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import orjson
import uuid_utils.compat as uuid7s
from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.cloudevents import KafkaRecord, to_records
from schemas.envelope import Event, Instant
from schemas.generate import SCHEMA_DIR
from schemas.registry import EVENT_TYPES, FieldError, InvalidEvent, catalogue, parse_event, parse_events_json
from services.ingest.metrics import EVENTS_ACCEPTED, REJECTIONS
from services.ingest.publisher import Ack, KafkaUnavailable, Publisher, RecordTooLarge
from services.ingest.settings import IngestSettings
from services.platform.auth import Principal, authorize, require
from services.platform.kafka import record_bytes
from services.platform.limits import too_large
from services.platform.problems import Problem, problem_responses

router = APIRouter()

Reader = Annotated[Principal, Depends(require("read"))]

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"})
EVENT_REF = {"$ref": "#/components/schemas/Event"}
RECORDED_AT = TypeAdapter(Instant)  # the contract's own rendering of recorded_at


class EventAcceptedOut(BaseModel):
    """Where Kafka stored an accepted event."""

    model_config = ConfigDict(extra="forbid")

    id: UUID
    partition: int
    offset: int
    recorded_at: datetime


class BatchEventOut(BaseModel):
    """Where Kafka stored one event of a batch."""

    model_config = ConfigDict(extra="forbid")

    id: UUID
    partition: int
    offset: int


class BatchAcceptedOut(BaseModel):
    """Every event of the batch, in order, with where Kafka stored it."""

    model_config = ConfigDict(extra="forbid")

    accepted: int
    events: list[BatchEventOut]


class EventTypeOut(BaseModel):
    """One event type of the catalogue."""

    model_config = ConfigDict(extra="forbid")

    type: str
    version: int
    description: str
    required_data: list[str] = Field(description="The `data` fields the type requires.")
    schema_: str = Field(alias="schema", description="Where its JSON Schema is.")


POSTING = problem_responses(400, 401, 403, 413, 415, 422, 503,
                            s503="Kafka unavailable: nothing was accepted; retry with the same ids")


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _settings(request: Request) -> IngestSettings:
    settings: IngestSettings = request.app.state.settings
    return settings


def _publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


def _reject(reason: str, problem: Problem) -> Problem:
    REJECTIONS.labels(reason).inc()
    return problem


def _media_type(request: Request, allowed: frozenset[str]) -> str:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in allowed:
        raise _reject(
            "unsupported_media_type",
            Problem(
                415, "Unsupported media type",
                f"send {' or '.join(sorted(allowed))}, not {media or 'no content type'}",
                kind="unsupported-media-type", field="content-type",
            ),
        )
    return media


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _reject("too_large", too_large(limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _reject("too_large", too_large(limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _records(events: list[Event], principal: Principal) -> list[KafkaRecord]:
    return to_records(events, source=f"accordwatch/ingest/{principal.name}")


def _oversized(records: list[KafkaRecord], limit: int) -> list[tuple[int, int]]:
    """(index, size) of every record over the per-event limit."""
    sizes = ((i, record_bytes(r.key, r.value, r.headers)) for i, r in enumerate(records))
    return [(i, size) for i, size in sizes if size > limit]


def _event_too_large(size: int, limit: int) -> Problem:
    return _reject(
        "too_large",
        Problem(413, "Event too large", f"the event's record is {size} bytes; the limit is {limit}",
                kind="too-large", limit_bytes=limit,
                errors=[{"field": "body", "reason": f"{size} bytes; the limit is {limit}"}]),
    )


def _size_errors(oversized: list[tuple[int, int]], indexes: list[int], limit: int) -> list[FieldError]:
    return [FieldError("event", f"the event's record is {size} bytes; the limit is {limit}", indexes[i])
            for i, size in oversized]


def _bad_json(detail: str, errors: list[dict[str, Any]] | None = None) -> Problem:
    return _reject(
        "bad_json", Problem(400, "Malformed JSON", detail, kind="bad-json", errors=errors or [])
    )


def _invalid(errors: list[FieldError], batch: bool) -> Problem:
    first = errors[0]
    where = f"event {first.index}: " if first.index is not None else ""
    extra: dict[str, Any] = {"errors": [e.as_dict() for e in errors]}
    if batch:
        extra["invalid_indexes"] = sorted({e.index for e in errors if e.index is not None})
    detail = f"{where}{first.field or 'body'}: {first.reason}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return _reject(
        "invalid_event",
        Problem(
            422, "Invalid batch: nothing was accepted" if batch else "Invalid event",
            detail, kind="invalid-event", **extra,
        ),
    )


def _stamp(events: list[Event], now: datetime) -> list[Event]:
    return [e.model_copy(update={"id": e.id or uuid7s.uuid7(), "recorded_at": now}) for e in events]


async def _publish(request: Request, events: list[Event], records: list[KafkaRecord]) -> list[Ack]:
    try:
        acks = await _publisher(request).publish(records)
    except RecordTooLarge as exc:
        raise _reject(
            "too_large",
            Problem(413, "Event too large", f"Kafka refuses event {exc.index} as too large; nothing was accepted",
                    kind="too-large", limit_bytes=exc.limit,
                    errors=[{"index": exc.index, "field": "event", "reason": str(exc)}]),
        ) from exc
    except KafkaUnavailable as exc:
        raise _reject(
            "kafka_unavailable",
            Problem(
                503, "Kafka unavailable",
                "the events were not acknowledged by Kafka; retry later with the same ids "
                "so that a retry never duplicates an event",
                kind="kafka-unavailable", headers={"Retry-After": "5"},
                ids=[str(e.id) for e in events], reason=str(exc),
            ),
        ) from exc
    EVENTS_ACCEPTED.inc(len(events))
    return acks


@router.post(
    "/v1/events",
    status_code=202,
    summary="Record one event",
    responses={202: {"model": EventAcceptedOut, "description": "Kafka acknowledged the event"}, **POSTING},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": EVENT_REF}}}},
)
async def post_event(request: Request) -> Response:
    """Validate one event, write it to Kafka, and answer its id, partition and offset."""
    # The key is checked here rather than by a dependency: FastAPI's dependency solving was
    # a seventh of this route's CPU time (the OpenAPI security is declared for the whole app).
    principal = authorize(request, "events:write")
    settings = _settings(request)
    _media_type(request, JSON_TYPES)
    body = await _body(request, settings.max_event_bytes)
    try:
        obj = orjson.loads(body)  # orjson decides what is JSON, as it always has
    except orjson.JSONDecodeError as exc:
        raise _bad_json(f"the body is not valid JSON: {exc}") from None
    fast = parse_events_json(b"[" + body + b"]")  # pydantic straight from the bytes
    try:
        event = fast[0] if fast is not None else parse_event(obj)  # else the document judges
    except InvalidEvent as exc:
        raise _invalid(exc.errors, batch=False) from None
    now = datetime.now(UTC)
    (stamped,) = _stamp([event], now)
    records = _records([stamped], principal)
    for _, size in _oversized(records, settings.max_event_bytes):
        raise _event_too_large(size, settings.max_event_bytes)
    (ack,) = await _publish(request, [stamped], records)
    return _json(
        {"id": str(stamped.id), "partition": ack.partition, "offset": ack.offset,
         "recorded_at": RECORDED_AT.dump_python(now, mode="json")},
        202,
    )


def _decode_batch(body: bytes, media: str) -> tuple[list[Any], list[bytes] | None]:
    """The decoded items, and for NDJSON the non-blank lines they came from."""
    if media in NDJSON_TYPES:
        items: list[Any] = []
        lines: list[bytes] = []
        errors: list[dict[str, Any]] = []
        for line_no, line in enumerate(body.splitlines()):
            if not line.strip():
                continue
            lines.append(line)
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                errors.append({"index": len(items), "line": line_no + 1, "reason": str(exc)})
                items.append(None)
        if errors:
            raise _bad_json(f"{len(errors)} line(s) are not valid JSON; nothing was accepted", errors)
        return items, lines
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad_json(f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        raise _invalid([FieldError("events", 'the body must be {"events": [...]}')], batch=True)
    events: list[Any] = doc["events"]
    return events, None


@router.post(
    "/v1/events/batch",
    status_code=202,
    summary="Record a batch of events, all or nothing",
    responses={202: {"model": BatchAcceptedOut, "description": "Kafka acknowledged every event"}, **POSTING},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "required": ["events"],
                               "properties": {"events": {"type": "array", "items": EVENT_REF}}}
                },
                "application/x-ndjson": {"schema": {"type": "string", "description": "one event per line"}},
            },
        }
    },
)
async def post_batch(request: Request) -> Response:
    """Validate every event first; if any is bad, reject the whole batch and list each bad index."""
    principal = authorize(request, "events:write")  # not a dependency: see post_event
    settings = _settings(request)
    media = _media_type(request, JSON_TYPES | NDJSON_TYPES)
    body = await _body(request, settings.max_batch_bytes)
    items, lines = _decode_batch(body, media)
    if len(items) > settings.max_batch_events:
        raise _reject(
            "too_large",
            Problem(413, "Batch too large", f"{len(items)} events; the limit is {settings.max_batch_events}",
                    kind="too-large", limit_events=settings.max_batch_events),
        )
    if not items:
        raise _invalid([FieldError("events", "the batch is empty")], batch=True)
    # One validation pass over the whole batch, from the bytes; only if it finds a problem
    # is each decoded item judged on its own, which names every bad index.
    fast = (parse_events_json(body, wrapped=True) if lines is None
            else parse_events_json(b"[" + b",".join(lines) + b"]"))
    if fast is not None and len({e.id for e in fast if e.id is not None}) == sum(e.id is not None for e in fast):
        events, indexes, errors = fast, list(range(len(fast))), list[FieldError]()
    else:
        events, indexes, errors = _validate_each(items)
    stamped = _stamp(events, datetime.now(UTC))
    records = _records(stamped, principal)
    errors.extend(_size_errors(_oversized(records, settings.max_event_bytes), indexes, settings.max_event_bytes))
    if errors:
        errors.sort(key=lambda e: e.index if e.index is not None else -1)
        raise _invalid(errors, batch=True)
    acks = await _publish(request, stamped, records)
    return _json(
        {
            "accepted": len(stamped),
            "events": [
                {"id": str(e.id), "partition": a.partition, "offset": a.offset}
                for e, a in zip(stamped, acks, strict=True)
            ],
        },
        202,
    )


def _validate_each(items: list[Any]) -> tuple[list[Event], list[int], list[FieldError]]:
    """Judge item by item: the valid events, their indexes, and every problem (bad fields, repeated ids)."""
    events: list[Event] = []
    indexes: list[int] = []
    errors: list[FieldError] = []
    seen: dict[UUID, int] = {}
    for index, item in enumerate(items):
        try:
            event = parse_event(item, index=index)
        except InvalidEvent as exc:
            errors.extend(exc.errors)
            continue
        if event.id is not None:
            if event.id in seen:
                errors.append(FieldError("id", f"the same id as event {seen[event.id]}", index))
            seen.setdefault(event.id, index)
        events.append(event)
        indexes.append(index)
    return events, indexes, errors


@router.get("/v1/schemas", summary="The event catalogue", response_model=list[EventTypeOut],
            responses=problem_responses(401, 403))
async def list_schemas(_: Reader) -> Response:
    """Every event type with its version, description and required data fields."""
    return _json(catalogue())


@router.get(
    "/v1/schemas/{event_type}", summary="The JSON Schema of one event type",
    responses={200: {"description": "The type's JSON Schema",
                     "content": {"application/schema+json": {"schema": {"type": "object"}}}},
               **problem_responses(401, 403, 404, 422, s404="Unknown event type")},
    response_class=Response,
)
async def get_schema(event_type: Annotated[str, PathParam(max_length=64)], _: Reader) -> Response:
    """The generated JSON Schema file of `event_type`."""
    if event_type not in EVENT_TYPES:
        raise Problem(404, "Unknown event type", f"{event_type!r} is not an event type; "
                      "GET /v1/schemas lists them", kind="not-found")
    path: Path = SCHEMA_DIR / f"{event_type}.schema.json"
    return Response(path.read_bytes(), media_type="application/schema+json")


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """Alive."""
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Response:
    """Ready when Kafka answers."""
    kafka = await _publisher(request).ready()
    return _json(
        {"status": "ready" if kafka else "unavailable", "checks": {"kafka": kafka}},
        200 if kafka else 503,
    )
