"""Query parameters the JSON API and the status pages share: as-of and known-at bounds."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from schemas.envelope import parse_moment
from services.platform.problems import Problem


def parse_bound(name: str, raw: str | None) -> datetime | None:
    """A query bound: a date means the end of that day (UTC); a time must carry its offset."""
    if raw is None or raw == "":
        return None
    try:
        moment = parse_moment(raw)
    except ValueError as exc:
        raise Problem(
            422,
            "Invalid query parameter",
            f"{name}: {exc}",
            kind="invalid-request",
            errors=[{"field": f"query.{name}", "reason": str(exc)}],
        ) from None
    if isinstance(moment, datetime):
        return moment.astimezone(UTC)
    return datetime.combine(moment + timedelta(days=1), time.min, tzinfo=UTC) - timedelta(microseconds=1)
