"""The event envelope: the fields every accordwatch event carries, and the value types they use.

An event is an immutable, sourced fact. The envelope says what happened (`type`, `data`),
to what (`subject`), when in the world (`occurred_at`), when we learned it (`recorded_at`,
stamped by ingest), who says so (`sources`) and how sure we are (`confidence`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from functools import cache
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar
from urllib.parse import urlsplit
from uuid import UUID

import pycountry
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LEAP_RE = re.compile(r"[T ]\d{2}:\d{2}:60", re.IGNORECASE)
_MOMENT_HINT = "expected a date (YYYY-MM-DD) or an RFC 3339 time with an offset (2020-03-12T09:00:00Z)"

MIN_INSTANT: Final = datetime(1000, 1, 1, tzinfo=UTC)
"""The earliest instant the contract holds: every moment is at or after it, in UTC."""
MAX_INSTANT: Final = datetime(8999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
"""The latest instant the contract holds (the end of 8999-12-31, UTC).

About a thousand years inside Python's datetime range (years 1-9999) at both ends: converting
any accepted time to UTC (offsets reach 23:59), a date's end of day, reminders and lead times
never leave the range, and PostgreSQL (4713 BC - 294276 AD), SQLite's text timestamps,
JavaScript dates and RFC 3339 all hold every instant in it.
"""
_RANGE_HINT = f"between {MIN_INSTANT.date()} and {MAX_INSTANT.date()} (UTC)"


_M = TypeVar("_M", date, datetime)


def check_instant(value: _M) -> _M:
    """Refuse a date or aware time outside MIN_INSTANT..MAX_INSTANT (in UTC) or with a sub-minute offset."""
    if isinstance(value, datetime):
        offset = value.utcoffset()
        if offset is None:
            raise ValueError(f"time has no UTC offset; {_MOMENT_HINT}")
        if offset.seconds % 60 or offset.microseconds:
            raise ValueError(f"UTC offset {offset} is not a whole number of minutes (RFC 3339)")
    # Test the year before converting: a time near year 1 or 9999 cannot even be converted to UTC.
    if not MIN_INSTANT.year - 1 <= value.year <= MAX_INSTANT.year + 1 or not (
        MIN_INSTANT <= instant(value) <= MAX_INSTANT
    ):
        raise ValueError(f"{value.isoformat()} is out of range: moments must fall {_RANGE_HINT}")
    return value


def parse_moment(value: Any) -> date | datetime:
    """Parse a calendar date or an offset-aware RFC 3339 time inside the representable range."""
    if isinstance(value, date):  # a datetime too
        return check_instant(value)
    if not isinstance(value, str):
        raise ValueError(_MOMENT_HINT)
    text = value.strip()
    parsed: date | datetime
    try:
        if _DATE_RE.match(text):
            parsed = date.fromisoformat(text)
        elif "T" not in text.upper() and " " not in text:
            raise ValueError
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        leap = " (a leap second, :60, has no representation: use :59)" if _LEAP_RE.search(text) else ""
        raise ValueError(f"{value!r} is not a valid date or time{leap}; {_MOMENT_HINT}") from None
    if isinstance(parsed, datetime) and parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset; {_MOMENT_HINT}")
    return check_instant(parsed)


def format_moment(value: date | datetime) -> str:
    """Render a moment the way it was given: a date stays a date."""
    return value.isoformat()


def instant(value: date | datetime) -> datetime:
    """The UTC instant a moment stands for: a bare date is the start of that day, UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.combine(value, time.min, tzinfo=UTC)


# formatMinimum/formatMaximum: the range, machine-readable (ajv-formats reads these keywords).
_DATE_RANGE = {"formatMinimum": MIN_INSTANT.date().isoformat(), "formatMaximum": MAX_INSTANT.date().isoformat()}
_TIME_RANGE = {
    "formatMinimum": MIN_INSTANT.isoformat().replace("+00:00", "Z"),
    "formatMaximum": MAX_INSTANT.isoformat().replace("+00:00", "Z"),
}

Moment = Annotated[
    date | datetime,
    PlainValidator(parse_moment),
    PlainSerializer(format_moment, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date", **_DATE_RANGE},
                {"type": "string", "format": "date-time", **_TIME_RANGE},
            ],
            "description": "A date (YYYY-MM-DD, meaning the start of that day, UTC) "
            f"or an RFC 3339 time with an offset, {_RANGE_HINT}.",
        }
    ),
]


def _time_text(value: Any) -> Any:
    if isinstance(value, int | float):  # pydantic would take a number as seconds since 1970
        raise ValueError(f"{value!r} is a number; expected an RFC 3339 time with an offset (2020-03-12T09:00:00Z)")
    return value


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_time_text),
    AfterValidator(check_instant),
    WithJsonSchema(
        {"type": "string", "format": "date-time", **_TIME_RANGE,
         "description": f"An RFC 3339 time with an offset, {_RANGE_HINT}."}
    ),
]
"""An offset-aware time inside the representable range (a Moment that must be a time)."""


@cache
def _country_codes() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries)


def check_country(value: Any) -> str:
    """Accept an assigned ISO 3166-1 alpha-2 code, uppercase."""
    if not isinstance(value, str):
        raise ValueError("expected an ISO 3166-1 alpha-2 country code such as 'SV'")
    if value != value.upper() or len(value) != 2:
        raise ValueError(f"{value!r} is not an uppercase ISO 3166-1 alpha-2 code such as 'SV'")
    if value not in _country_codes():
        raise ValueError(f"{value!r} is not an assigned ISO 3166-1 alpha-2 country code")
    return value


Country = Annotated[
    str,
    PlainValidator(check_country),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-Z]{2}$",
            "description": "An assigned ISO 3166-1 alpha-2 country code, uppercase (US, GT, SV, HN).",
        }
    ),
]

@cache
def _region_codes() -> frozenset[str]:
    return frozenset(s.code for s in pycountry.subdivisions)


@cache
def subdivisions(country: str) -> frozenset[str]:
    """Every ISO 3166-2 code of a country (US: the 50 states, DC and the outlying areas)."""
    return frozenset(s.code for s in pycountry.subdivisions if s.country_code == country)


def check_region(value: Any) -> str:
    """Accept an assigned ISO 3166-2 subdivision code such as 'US-AZ', uppercase."""
    if not isinstance(value, str):
        raise ValueError("expected an ISO 3166-2 code such as 'US-AZ'")
    if value != value.upper():
        raise ValueError(f"{value!r} is not an uppercase ISO 3166-2 code such as 'US-AZ'")
    if value not in _region_codes():
        raise ValueError(f"{value!r} is not an assigned ISO 3166-2 subdivision code (e.g. US-AZ, US-CA)")
    return value


Region = Annotated[
    str,
    PlainValidator(check_region),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-Z]{2}-[A-Z0-9]{1,3}$",
            "minLength": 4,
            "maxLength": 6,
            "description": "An assigned ISO 3166-2 subdivision code, uppercase (US-AZ, US-CA).",
        }
    ),
]

SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
"""A subject (agreement or case) id, a nationality group, a key name: lowercase words joined by hyphens."""
SLUG_MAX = 120
METRIC_SLUG = r"^[a-z][a-z0-9_]*$"

Slug = Annotated[
    str,
    StringConstraints(pattern=SLUG, min_length=1, max_length=SLUG_MAX),
    Field(description="A lowercase slug, e.g. us-sv-aca-2019 or innovation-law-lab-v-wolf."),
]

MetricSlug = Annotated[
    str,
    StringConstraints(pattern=METRIC_SLUG, min_length=1, max_length=SLUG_MAX),
    Field(description="A metric name in snake case, e.g. southwest_border_apprehensions."),
]

# Text never carries control characters: NUL breaks PostgreSQL, the others break XML (Atom),
# terminals and logs. Free text (notes, reasons, descriptions, conditions, summaries) may
# keep its line structure (tab, line feed, carriage return); names, titles and other short
# texts are one line. Lone surrogates are refused by pydantic itself (not valid Unicode text).
ONE_LINE = r"^[^\x00-\x1f\x7f-\x9f]*$"
"""No C0 control (U+0000-U+001F), no DEL, no C1 control (U+0080-U+009F)."""
FREE_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
"""As ONE_LINE, but tab, line feed and carriage return are allowed."""
CONTROL_PATTERNS: Final = {ONE_LINE: False, FREE_TEXT: True}
"""Each control-character pattern, and whether it allows tab, line feed and carriage return."""

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000, pattern=FREE_TEXT)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300, pattern=ONE_LINE)]
Summary = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000, pattern=FREE_TEXT)]


def control_character(text: str, *, lines_allowed: bool) -> str | None:
    """Where `text` breaks its control-character rule, in words (None if it does not)."""
    for position, char in enumerate(text):
        code = ord(char)
        if (code < 0x20 and not (lines_allowed and char in "\t\n\r")) or 0x7F <= code <= 0x9F:
            allowed = "; tab and line breaks are allowed" if lines_allowed else "; this text is one line"
            return f"contains the control character U+{code:04X} at position {position}{allowed}"
    return None


MAX_URL_LENGTH: Final = 2048
_NOT_IN_URL = re.compile(r"[\x00-\x20\x7f-\x9f]")


def check_url(value: Any) -> str:
    """Accept an absolute http(s) URL of at most MAX_URL_LENGTH characters, without spaces or controls."""
    if not isinstance(value, str):
        raise ValueError("expected an absolute http(s) URL")
    url: str = value.strip()
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"the URL has {len(url)} characters; at most {MAX_URL_LENGTH} are allowed")
    if (bad := _NOT_IN_URL.search(url)) is not None:
        raise ValueError(f"a URL cannot contain U+{ord(bad.group()):04X} (at position {bad.start()}): "
                         "percent-encode spaces and control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an absolute http(s) URL")
    return url


Url = Annotated[
    str,
    PlainValidator(check_url),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https?://[^\\s]*$", "maxLength": MAX_URL_LENGTH}),
]

MAX_COUNT: Final = 1_000_000_000
"""The largest number of people one report may state (an eighth of the world's population).

Any count, target or per-nationality figure fits a 32-bit column; sums of them are kept by
the fold within MAX_FIGURE (services/domain/state.py) and stored in 64-bit columns.
"""
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]

Confidence = Literal["confirmed", "reported", "disputed"]


class Frozen(BaseModel):
    """Base for every contract model: immutable, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Source(Frozen):
    """Where a fact comes from: a news report, a court order, an official figure."""

    publisher: ShortText
    url: Url | None = None
    title: ShortText | None = None
    published_at: Moment | None = None


class EventData(Frozen):
    """Base for the `data` of an event type."""


class Event(Frozen):
    """The envelope every event carries; each event type narrows `type` and `data`."""

    SCHEMA_VERSION: ClassVar[int] = 1

    id: UUID | None = Field(
        default=None, description="Event id; the server assigns a UUIDv7 when absent."
    )
    type: str
    schema_version: int = Field(default=1, ge=1, le=1000, description="Version of this type's schema.")
    subject: Slug
    occurred_at: Moment = Field(description="When it happened in the world, not when we learned it.")
    recorded_at: Instant | None = Field(
        default=None, description="When accordwatch recorded it; stamped by ingest."
    )
    sources: tuple[Source, ...] = Field(min_length=1, max_length=50)
    confidence: Confidence = "confirmed"
    summary: Summary | None = None
    data: EventData

    @property
    def event_id(self) -> UUID:
        """The id of a recorded event (ingest always assigns one)."""
        if self.id is None:
            raise ValueError("event has no id yet; ingest assigns one")
        return self.id
