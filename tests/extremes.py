"""Extreme values for every field of every event type, generated from the types' JSON Schemas.

`cases()` walks each type's generated schema (`schemas.generate.json_schema`), so a field added
later is covered without touching this file. For every field it makes documents with values at
its bounds (`valid=True`: ingest must accept them, the fold and both databases must hold them)
and just past them (`valid=False`: ingest must refuse them, naming the field): times at the
range's edges in every offset form, integers at their limits and beyond 64 bits, the longest
texts in 4-byte characters, every kind of control character, lists with the most items,
dictionaries with the most keys, nulls where a field cannot be null, and missing required
fields. `maximal()` makes one event of a type with every field at its largest at once.

The walk understands the node kinds the contract uses; `unbounded()` lists any string, number
or list that declares no bound, so a field nobody bounded fails a test instead of escaping it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson
import pycountry
import uuid_utils

from schemas.envelope import CONTROL_PATTERNS, MAX_INSTANT, MIN_INSTANT
from schemas.generate import json_schema
from schemas.registry import EVENT_TYPES
from tests.samples import event

Path = tuple[str | int, ...]
Node = dict[str, Any]

COUNTRY = "^[A-Z]{2}$"
COUNTRIES = sorted(c.alpha_2 for c in pycountry.countries)
REGION = "^[A-Z]{2}-[A-Z0-9]{1,3}$"
REGIONS = sorted(s.code for s in pycountry.subdivisions)
NIL_UUID = "00000000-0000-0000-0000-000000000000"
MAX_UUID = "ffffffff-ffff-ffff-ffff-ffffffffffff"
WIDE = "\U0001d11e"  # 𝄞: one character, four bytes of UTF-8, two UTF-16 units
FORMAT_CHARACTERS = "\u202eab\u2028c\ufeff\U0001f469\u200d\U0001f467"
"""Not controls (Unicode category Cf/Zl): allowed, and every database holds them."""

MOMENTS_INSIDE = [
    str(MIN_INSTANT.date()), str(MAX_INSTANT.date()),
    "1000-01-01T00:00:00Z", "1000-01-01T23:59:00+23:59", "0999-12-31T23:30:00-01:00",
    "8999-12-31T23:59:59.999999Z", "8999-12-31T00:00:00-23:59", "2019-09-20T10:00:00-00:00",
    "2019-09-20 10:00:00+05:30",
]
MOMENTS_OUTSIDE = [
    "0999-12-31", "9000-01-01", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59",
    "1000-01-01T00:00:00+00:01", "8999-12-31T23:59:59-00:01", "2016-12-31T23:59:60Z",
    "2019-09-20T10:00:00+05:30:15", "2019-09-20T10:00:00", "20 September 2019", "", 20190920,
]
TIMES_INSIDE = [m for m in MOMENTS_INSIDE if len(m) > 10]
TIMES_OUTSIDE = [*MOMENTS_OUTSIDE, "2019-09-20"]
CONTROLS = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]
LINE_BREAKS = ["\t", "\n", "\r"]
BIG_INTS = [2**31, 2**63, 2**64, -(2**63) - 1]
LARGEST_FLOAT = 1.7976931348623157e308


@dataclass(frozen=True)
class Case:
    """One document: `value` at `path` of a valid event of `event_type`, and whether it is valid."""

    event_type: str
    path: Path
    label: str
    doc: dict[str, Any] = field(repr=False)
    valid: bool

    @property
    def field(self) -> str:
        """The field's name as ingest's errors spell it (data.signatories[0].name)."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out

    @property
    def name(self) -> str:
        return f"{self.event_type} {self.field or '(event)'}: {self.label}"

    def named_by(self, error_field: str) -> bool:
        """Whether an error's field is this case's field or lies inside it."""
        return error_field == self.field or error_field.startswith(
            (f"{self.field}.", f"{self.field}[", f"{self.field} "))


# -- reading the schema ----------------------------------------------------------------------


class Walker:
    """Cases for one event type, from its JSON Schema."""

    def __init__(self, event_type: str, used_ids: set[str]) -> None:
        self.event_type = event_type
        self.schema = _schema(event_type)
        self.defs: dict[str, Node] = self.schema.get("$defs", {})
        self.used_ids = used_ids

    def unwrap(self, node: Node) -> tuple[list[Node], bool]:
        """The node's alternatives other than null (after $ref), and whether null is allowed."""
        if "$ref" in node:
            return self.unwrap(self.defs[node["$ref"].rsplit("/", 1)[-1]])
        if "anyOf" in node and not _is_moment(node):
            options: list[Node] = []
            nullable = False
            for option in node["anyOf"]:
                inner, null = self.unwrap(option)
                options.extend(inner)
                nullable = nullable or null
            return options, nullable
        if node.get("type") == "null":
            return [], True
        return [node], False

    # -- typical (valid, unremarkable) values ----------------------------------------------

    def typical(self, node: Node, count: int = 1) -> list[Any]:
        """`count` distinct valid values of the node (while distinct ones exist)."""
        options, _ = self.unwrap(node)
        node = options[0]
        kind = kind_of(node)
        if kind == "const":
            return [node["const"]] * count
        if kind == "enum":
            return [node["enum"][i % len(node["enum"])] for i in range(count)]
        if kind == "moment":
            return [f"2019-09-{10 + i % 18:02d}" for i in range(count)]
        if kind == "time":
            return [f"2019-09-{10 + i % 18:02d}T10:00:00Z" for i in range(count)]
        if kind == "uuid":
            return [str(uuid.uuid4()) for _ in range(count)]
        if kind == "url":
            return [f"https://example.org/{i}" for i in range(count)]
        if kind == "country":
            start = COUNTRIES.index("SV")
            return [COUNTRIES[(start + i) % len(COUNTRIES)] for i in range(count)]
        if kind == "region":
            start = REGIONS.index("US-AZ")
            return [REGIONS[(start + i) % len(REGIONS)] for i in range(count)]
        if kind == "text":
            return [f"text {i}" for i in range(count)]
        if kind == "slug":
            return [f"a{i}" for i in range(count)]
        if kind == "integer":
            low = max(node.get("minimum", 0), 1)
            return [min(low + i, node.get("maximum", low + i)) for i in range(count)]
        if kind == "number":
            return [1.5 + i for i in range(count)]
        if kind == "boolean":
            return [i % 2 == 0 for i in range(count)]
        if kind == "array":
            return [self.typical(node["items"], node.get("minItems", 0)) for _ in range(count)]
        if kind == "dict":
            return [{} for _ in range(count)]
        return [self.typical_object(node) for _ in range(count)]

    def typical_object(self, node: Node) -> dict[str, Any]:
        required = set(node.get("required", ()))
        out = {name: self.typical(prop)[0] for name, prop in node["properties"].items() if name in required}
        for name, prop in node["properties"].items():
            if len(out) >= node.get("minProperties", 0):
                break
            out.setdefault(name, self.typical(prop)[0])
        return out

    # -- extremes ------------------------------------------------------------------------------

    def walk(self, node: Node, path: Path) -> Iterator[tuple[Path, str, Any, bool]]:
        """(path below this node, label, the node's whole value, valid) for every extreme."""
        options, nullable = self.unwrap(node)
        if options and kind_of(options[0]) == "const":
            return
        yield (), "null", None, nullable
        if len(options) == 1:
            yield from self.walk_one(options[0], path)
            return
        # Several rules (a correction's field that types define differently): a value valid by
        # any of them is valid; refused only what no rule accepts.
        for option in options:
            for sub, label, value, valid in self.walk_one(option, path):
                if valid:
                    yield sub, label, value, True
        yield (), "an object where no rule takes one", {"unexpected": "object"}, False

    def walk_one(self, node: Node, path: Path) -> Iterator[tuple[Path, str, Any, bool]]:
        kind = kind_of(node)
        if kind == "object":
            yield from self.walk_object(node, path)
        elif kind == "array":
            yield from self.walk_array(node, path)
        elif kind == "dict":
            yield from self.walk_dict(node, path)
        else:
            for label, value, valid in self.leaves(node, kind, path):
                yield (), label, value, valid

    def walk_object(self, node: Node, path: Path) -> Iterator[tuple[Path, str, Any, bool]]:
        base = self.typical_object(node)
        required = set(node.get("required", ()))
        for name, prop in node["properties"].items():
            if name in required:
                yield (name,), "missing", {k: v for k, v in base.items() if k != name}, False
            for sub, label, value, valid in self.walk(prop, (*path, name)):
                yield (name, *sub), label, {**base, name: value}, valid

    def walk_array(self, node: Node, path: Path) -> Iterator[tuple[Path, str, Any, bool]]:
        items = node["items"]
        low, high = node.get("minItems", 0), node.get("maxItems")
        if high is not None:
            yield (), f"{high} items, the most", self.typical(items, high), True
            yield (), f"{high + 1} items", self.typical(items, high + 1), False
        if low > 0:
            yield (), f"{low - 1} items", self.typical(items, low - 1), False
        others = self.typical(items, max(low, 1) + 1)
        for sub, label, value, valid in self.walk(items, (*path, 0)):
            rest = [o for o in others if o != value][: max(low, 1) - 1]
            yield (0, *sub), label, [value, *rest], valid

    def walk_dict(self, node: Node, path: Path) -> Iterator[tuple[Path, str, Any, bool]]:
        ((key_pattern, values),) = node["patternProperties"].items()
        key_node = {"type": "string", "pattern": key_pattern}
        most = node.get("maxProperties")
        keys = self.typical(key_node, len(COUNTRIES) if key_pattern == COUNTRY else (most or 3))
        if most is not None:
            keys = list(dict.fromkeys(keys))[:most]
        top = self.maximal(values)
        yield (), f"{len(keys)} keys, each {top!r}", dict.fromkeys(keys, top), True
        if most is not None and len(set(keys)) > most:
            yield (), f"{most + 1} keys", dict.fromkeys(keys[: most + 1], top), False
        for label, key, valid in self.leaves(key_node, kind_of(key_node), path):
            if isinstance(key, str) and key:
                yield (), f"key {label}", {key: self.typical(values)[0]}, valid
        key = keys[0]
        for sub, label, value, valid in self.walk(values, (*path, key)):
            yield (key, *sub), label, {key: value}, valid

    def leaves(self, node: Node, kind: str, path: Path) -> Iterator[tuple[str, Any, bool]]:
        """(label, value, valid) for a node without parts."""
        if path == ("schema_version",):
            # Its range is 1..the type's version: any other number names no known version.
            yield "the current version", EVENT_TYPES[self.event_type].SCHEMA_VERSION, True
            for value in (0, EVENT_TYPES[self.event_type].SCHEMA_VERSION + 1, node["maximum"], 2**63):
                yield f"version {value}", value, False
            return
        if kind == "enum":
            for value in node["enum"]:
                yield repr(value), value, True
            yield "not one of the values", "not-a-value", False
        elif kind == "moment":
            yield from ((f"moment {v!r}", v, True) for v in MOMENTS_INSIDE)
            yield from ((f"moment {v!r}", v, False) for v in MOMENTS_OUTSIDE)
        elif kind == "time":
            yield from ((f"time {v!r}", v, True) for v in TIMES_INSIDE)
            yield from ((f"time {v!r}", v, False) for v in TIMES_OUTSIDE)
        elif kind == "uuid":
            yield from self.uuids(path)
        elif kind == "url":
            yield from _urls(node["maxLength"])
        elif kind == "country":
            yield from (("first code", COUNTRIES[0], True), ("last code", COUNTRIES[-1], True),
                        ("unassigned ZZ", "ZZ", False), ("lowercase", "sv", False), ("alpha-3", "USA", False),
                        ("NUL", "S\x00", False))
        elif kind == "region":
            longest = max(REGIONS, key=len)
            yield from (("first code", REGIONS[0], True), ("last code", REGIONS[-1], True),
                        (f"longest {longest}", longest, True), ("unassigned US-ZZ", "US-ZZ", False),
                        ("lowercase", "us-az", False), ("a country", "US", False), ("NUL", "US-A\x00", False))
        elif kind == "text":
            yield from _texts(node, lines=CONTROL_PATTERNS[node["pattern"]])
        elif kind == "slug":
            yield from _slugs(node)
        elif kind == "integer":
            low, high = node["minimum"], node["maximum"]
            yield from ((f"minimum {low}", low, True), (f"maximum {high}", high, True))
            yield from ((f"{low - 1}", low - 1, False), (f"{high + 1}", high + 1, False))
            yield from ((f"{v}", v, False) for v in BIG_INTS if not low <= v <= high)
            yield "a fraction", 1.5, False
        elif kind == "number":
            for value in (LARGEST_FLOAT, -LARGEST_FLOAT, 5e-324, -5e-324, -0.0, 0, 2**53 + 1, 10**300):
                yield f"number {value!r}", value, True
            yield "a string", "lots", False
        elif kind == "boolean":
            yield from (("true", True, True), ("false", False, True), ("'maybe'", "maybe", False))
        else:
            raise AssertionError(f"{self.event_type}: no extremes for a {kind} at {path}: {node}")

    def uuids(self, path: Path) -> Iterator[tuple[str, Any, bool]]:
        for label, value in (("nil", NIL_UUID), ("max", MAX_UUID), ("no hyphens", uuid.uuid4().hex),
                             ("uppercase", str(uuid.uuid4()).upper())):
            if path == ("id",):  # an event id is taken once: a second event with it is a duplicate
                if value in self.used_ids:
                    continue
                self.used_ids.add(value)
            yield f"uuid {label}", value, True
        yield from (("not a uuid", "not-a-uuid", False), ("short", NIL_UUID[:-1], False), ("empty", "", False))

    # -- largest ------------------------------------------------------------------------------

    def maximal(self, node: Node, char: str = WIDE) -> Any:
        """The node's largest valid value: longest texts of `char`, most items, most keys, top numbers."""
        options, _ = self.unwrap(node)
        node = options[0]
        kind = kind_of(node)
        if kind == "object":
            return {name: self.maximal(prop, char) for name, prop in node["properties"].items()
                    if kind_of(self.unwrap(prop)[0][0]) != "const" or name in node.get("required", ())}
        if kind == "array":
            high = node.get("maxItems", 1)
            item = node["items"]
            if kind_of(self.unwrap(item)[0][0]) in ("country", "region", "slug", "uuid"):
                return self.typical(item, high)  # items of these kinds must often be distinct
            return [self.maximal(item, char) for _ in range(high)]
        if kind == "dict":
            ((key_pattern, values),) = node["patternProperties"].items()
            keys = COUNTRIES if key_pattern == COUNTRY else self.typical({"type": "string", "pattern": key_pattern})
            return dict.fromkeys(keys[: node.get("maxProperties", 1)], self.maximal(values, char))
        if kind == "text":
            return char * node["maxLength"]
        if kind == "slug":
            return "a" * node.get("maxLength", 1)
        if kind == "url":
            return _longest_url(node["maxLength"])
        if kind == "integer":
            return node["maximum"]
        if kind == "number":
            return LARGEST_FLOAT
        if kind == "moment":
            return "8999-12-31T00:00:00-23:59"
        if kind == "time":
            return "8999-12-31T23:59:59.999999Z"
        return self.typical(node)[0]


@cache
def _schema(event_type: str) -> Node:
    return json_schema(event_type)  # read only: callers must not change it


def kind_of(node: Node) -> str:
    """What a schema node is: const, enum, moment, time, uuid, url, country, text, slug, integer, ..."""
    if "const" in node:
        return "const"
    if "enum" in node:
        return "enum"
    if _is_moment(node):
        return "moment"
    kind = node.get("type")
    if kind == "string":
        pattern = node.get("pattern")
        return {"date-time": "time", "uuid": "uuid", "uri": "url"}.get(node.get("format", ""), (
            "country" if pattern == COUNTRY else "region" if pattern == REGION
            else "text" if pattern in CONTROL_PATTERNS else "slug" if pattern else "string"))
    if kind == "object":
        return "object" if "properties" in node else "dict"
    return str(kind)


def _is_moment(node: Node) -> bool:
    formats = {option.get("format") for option in node.get("anyOf", ())}
    return formats == {"date", "date-time"}


def _texts(node: Node, *, lines: bool) -> Iterator[tuple[str, Any, bool]]:
    longest, shortest = node["maxLength"], node.get("minLength", 0)
    yield f"{longest} ASCII characters", "a" * longest, True
    yield f"{longest} four-byte characters", WIDE * longest, True
    yield f"{longest} two-byte characters", "\u00e9" * longest, True
    yield "padded (stripped)", "  padded  ", True
    yield "format characters (RTL override, line separator, BOM, ZWJ emoji)", FORMAT_CHARACTERS, True
    yield "the shortest", "a" * max(shortest, 1), True
    if shortest == 0:
        yield "empty", "", True
    else:
        yield "empty", "", False
        yield "only spaces", "   ", False
    yield f"{longest + 1} characters", "a" * (longest + 1), False
    yield f"{longest + 1} four-byte characters", WIDE * (longest + 1), False
    for char in CONTROLS:
        yield f"inner U+{ord(char):04X}", f"a{char}b", False
    for char in LINE_BREAKS:
        yield f"inner U+{ord(char):04X}", f"line{char}line", lines
    if lines:
        yield "paragraphs", "first line\r\nsecond\n\n\tindented", True


def _slugs(node: Node) -> Iterator[tuple[str, Any, bool]]:
    longest = node.get("maxLength")
    yield "one character", "a", True
    if longest is not None:
        yield f"{longest} characters", "a" * longest, True
        yield f"{longest + 1} characters", "a" * (longest + 1), False
    for label, value in (("uppercase", "A"), ("a space", "a b"), ("NUL", "a\x00"), ("empty", ""),
                         ("leading hyphen", "-a"), ("non-ASCII", "\u00e9")):
        yield label, value, False


def _longest_url(length: int) -> str:
    head = "https://example.org/"
    return head + "a" * (length - len(head))


def _urls(longest: int) -> Iterator[tuple[str, Any, bool]]:
    yield f"{longest} characters", _longest_url(longest), True
    yield "international", "https://b\u00fccher.example/\u00fc?q=\u00e9#fragment", True
    yield "IP and port", "http://127.0.0.1:65535/x", True
    yield "padded (stripped)", "  https://example.org/x  ", True
    yield f"{longest + 1} characters", _longest_url(longest + 1), False
    for label, value in (("a space", "https://example.org/a b"), ("NUL", "https://example.org/a\x00b"),
                         ("line feed", "https://example.org/a\nb"), ("C1 control", "https://example.org/a\x85b"),
                         ("ftp", "ftp://example.org/"), ("no host", "https://"), ("javascript", "javascript:alert(1)"),
                         ("relative", "/relative"), ("bad IPv6", "http://[::1")):
        yield label, value, False


# -- cases -------------------------------------------------------------------------------------

Companion = dict[str, Any] | Callable[[Any], dict[str, Any]]
COMPANIONS: dict[tuple[str, Path], Companion] = {
    # Other fields a value needs to be valid at all, by the type's cross-field rules (given the value, or
    # as a function of it).
    ("TransferReported", ("data", "nationalities")): {"approximate": True},
    ("StayDecided", ("data", "decision")): lambda decision: (
        {"decision": decision, "remaining_regions": ["US-AZ"]} if decision == "granted_in_part" else {}),
    ("StayDecided", ("data", "remaining_regions")): lambda regions: (
        {"decision": "granted_in_part", "remaining_regions": regions} if regions else {}),
}


def companions(event_type: str, path: Path, data: Any) -> dict[str, Any]:
    """What a value at `path` of an event's data needs beside it (see COMPANIONS)."""
    out: dict[str, Any] = {}
    for (kind, prefix), extra in COMPANIONS.items():
        if kind == event_type and path[: len(prefix)] == prefix:
            if callable(extra):
                value = data.get(prefix[1]) if isinstance(data, dict) and len(prefix) > 1 else None
                out.update(extra(value))
            else:
                out.update(extra)
    return out


def minimal(event_type: str) -> dict[str, Any]:
    """The sample event of a type with only its required data fields and one bare source."""
    doc = event(event_type)
    required = set(_schema(event_type)["$defs"][f"{event_type}Data"].get("required", ()))
    doc["data"] = {k: v for k, v in doc["data"].items() if k in required}
    doc["sources"] = [{"publisher": doc["sources"][0]["publisher"]}]
    return doc


def cases(event_types: list[str] | None = None) -> list[Case]:
    """Every extreme of every field of every event type (or of those named)."""
    used_ids: set[str] = set()
    out = []
    for event_type in event_types or sorted(EVENT_TYPES):
        walker = Walker(event_type, used_ids)
        base = minimal(event_type)
        for name, prop in walker.schema["properties"].items():
            for sub, label, value, valid in walker.walk(prop, (name,)):
                doc = deepcopy(base)
                doc[name] = value
                path = (name, *sub)
                if isinstance(doc.get("data"), dict):
                    doc["data"].update(companions(event_type, path, doc["data"]))
                out.append(Case(event_type, path, label, doc, valid))
            if name in walker.schema.get("required", ()):
                doc = {k: v for k, v in deepcopy(base).items() if k != name}
                out.append(Case(event_type, (name,), "missing", doc, False))
    return out


def maximal(event_type: str, *, limit: int) -> dict[str, Any]:
    """An event of the type with every field at its largest, as wide as fits `limit` bytes of JSON."""
    walker = Walker(event_type, set())
    for char in (WIDE, "\u00e9", "a"):
        doc = {**walker.maximal(walker.schema, char), "type": event_type, "id": str(uuid_utils.uuid7()),
               "schema_version": EVENT_TYPES[event_type].SCHEMA_VERSION}
        for name in list(doc["data"]):
            doc["data"].update(companions(event_type, ("data", name), doc["data"]))
        if len(orjson.dumps(doc)) <= limit:
            return doc
    raise AssertionError(f"even an ASCII maximal {event_type} is over {limit} bytes")


def unbounded() -> list[str]:
    """Fields that declare no bound: strings without a length, integers without a range, lists without a size."""
    found = []

    def visit(walker: Walker, node: Node, where: str, seen: frozenset[str]) -> None:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                visit(walker, walker.defs[name], where, seen | {name})
            return
        kind = kind_of(node) if "anyOf" not in node or _is_moment(node) else "union"
        if kind in ("moment", "time"):
            if not all({"formatMinimum", "formatMaximum"} <= set(option) for option in node.get("anyOf", [node])):
                found.append(f"{where}: a time without formatMinimum and formatMaximum")
            return
        for option in node.get("anyOf", ()):
            visit(walker, option, where, seen)
        if kind == "string" or (kind in ("text", "slug") and "maxLength" not in node):
            found.append(f"{where}: a string without maxLength")
        if kind == "integer" and not {"minimum", "maximum"} <= set(node):
            found.append(f"{where}: an integer without minimum and maximum")
        if kind == "array":
            if "maxItems" not in node:
                found.append(f"{where}: a list without maxItems")
            visit(walker, node["items"], f"{where}[]", seen)
        if kind == "dict":
            if "maxProperties" not in node:
                found.append(f"{where}: an object without maxProperties")
            for value in node["patternProperties"].values():
                visit(walker, value, f"{where}{{}}", seen)
        if kind == "object":
            for name, prop in node["properties"].items():
                visit(walker, prop, f"{where}.{name}", seen)

    for event_type in sorted(EVENT_TYPES):
        walker = Walker(event_type, set())
        visit(walker, walker.schema, event_type, frozenset())
    return found
