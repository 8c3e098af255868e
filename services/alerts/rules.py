"""Alert rules as data: the YAML file's model, and a loader whose errors name the line.

The rules file says which rules run, how severe each is, when deadline reminders go out
and when notices resolve by themselves. What each kind of rule means is code, in
`engine.py`; the file only configures it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

Severity = Literal["critical", "warning", "info"]
RuleKind = Literal[
    "stay-requested",
    "court-deadline",
    "ruling-issued",
    "agreement-status-changed",
    "transfers-without-force",
    "transfer-target-reached",
    "policy-status-changed",
]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: object) -> timedelta:
    """`90s`, `30m`, `72h`, `7d` (or a number of seconds) as a timedelta."""
    if isinstance(raw, timedelta):
        return raw
    if isinstance(raw, bool):
        raise ValueError("a duration such as 30m, 72h or 7d")
    if isinstance(raw, int | float):
        return timedelta(seconds=float(raw))
    if isinstance(raw, str) and (match := _DURATION.match(raw)):
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    raise ValueError(f"{raw!r} is not a duration such as 90s, 30m, 72h or 7d")


def format_duration(value: timedelta) -> str:
    """An exact spelling of a duration in hours, minutes or seconds: 72h, 30m, 90s."""
    seconds = value.total_seconds()
    for unit in ("h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Rule(BaseModel):
    """One configured rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    kind: RuleKind
    severity: Severity
    description: str = ""
    enabled: bool = True
    lead_times: tuple[Duration, ...] = ()
    resolve_after: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if self.lead_times and self.kind != "court-deadline":
            raise ValueError("lead_times only applies to kind court-deadline")
        if any(lead <= timedelta(0) for lead in self.lead_times):
            raise ValueError("lead_times must be positive")
        if len(set(self.lead_times)) != len(self.lead_times):
            raise ValueError("lead_times must not repeat")
        if self.resolve_after is not None and self.kind in ("stay-requested", "court-deadline"):
            raise ValueError(f"resolve_after does not apply to {self.kind}: it resolves on its own")
        if self.resolve_after is not None and self.resolve_after <= timedelta(0):
            raise ValueError("resolve_after must be positive")
        return self

    def stages(self) -> tuple[str, ...]:
        """Reminder stages of a deadline rule, earliest first, ending with `due`."""
        leads = sorted(self.lead_times, reverse=True)
        return (*(format_duration(lead) for lead in leads), "due")


class RuleSet(BaseModel):
    """The whole rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tracked_policies: frozenset[str] = frozenset()
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _unique(self) -> RuleSet:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} appears twice")
            seen.add(rule.id)
        return self

    @property
    def enabled(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.enabled)

    def by_id(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)


class RulesFileError(Exception):
    """The rules file cannot be used; the message names the file and line."""


def load_rules(path: Path) -> RuleSet:
    """Read and validate a rules file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesFileError(f"{path}: cannot read the rules file: {exc.strerror or exc}") from exc
    return parse_rules(text, str(path))


def parse_rules(text: str, name: str = "<rules>") -> RuleSet:
    """Validate rules from YAML text; errors read `file:line: where: what`."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise RulesFileError(f"{name}:{line}: not valid YAML: {exc.problem}") from exc
    if root is None:
        raise RulesFileError(f"{name}:1: the rules file is empty")
    data = yaml.safe_load(text)
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        line = _line_of(root, loc)
        where = ".".join(str(part) for part in loc) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise RulesFileError(f"{name}:{line}: {where}: {message}{more}") from exc


def _line_of(node: yaml.Node, loc: tuple[Any, ...]) -> int:
    """The line of the deepest YAML node on the error's path."""
    line = node.start_mark.line + 1
    for part in loc:
        child = next(_child(node, part), None)
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _child(node: yaml.Node, part: Any) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                yield value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        yield node.value[part]
