"""The query API's parameters (JSON and status pages): types and checks in one place, so every route answers alike."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from typing import Annotated
from uuid import UUID

from fastapi import Path, Query

from schemas.envelope import MAX_INSTANT, METRIC_SLUG, MIN_INSTANT, SLUG, SLUG_MAX, parse_moment
from services.platform.problems import invalid_parameter

MOMENT = r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2}))?$"
MOMENT_EXAMPLES = ["2020-03-06", "2020-03-06T12:00:00Z"]

Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
PageToken = Annotated[
    str | None, Query(max_length=1024, description="The `next` token of the previous page, as it was given.")
]
AsOf = Annotated[
    str | None,
    Query(
        max_length=64, pattern=MOMENT, examples=MOMENT_EXAMPLES,
        description="World date or time: the status from events that occurred up to then "
        f"(a date means the end of that day, UTC), between {MIN_INSTANT.date()} and {MAX_INSTANT.date()}.",
    ),
]
AsOfDate = Annotated[
    str | None,
    Query(description="Show the state on this date (the end of that day, UTC), e.g. 2020-03-05, "
          f"between {MIN_INSTANT.date()} and {MAX_INSTANT.date()}; anything else is answered by a page saying so.",
          examples=["2020-03-05"]),
]
KnownAt = Annotated[
    str | None,
    Query(max_length=64, pattern=MOMENT, examples=MOMENT_EXAMPLES,
          description="Recording time: only events recorded by then (a date means its end, UTC), "
          f"between {MIN_INSTANT.date()} and {MAX_INSTANT.date()}."),
]
SubjectFilter = Annotated[
    str | None, Query(max_length=SLUG_MAX, pattern=SLUG, description="An agreement or case id (a lowercase slug).")
]
AgreementId = Annotated[str, Path(max_length=SLUG_MAX, pattern=SLUG, examples=["us-gt-aca-2019"],
                                  description="An agreement id (a lowercase slug).")]
CaseId = Annotated[str, Path(max_length=SLUG_MAX, pattern=SLUG, examples=["innovation-law-lab-v-wolf"],
                             description="A case id (a lowercase slug).")]
EventId = Annotated[UUID, Path(examples=["016ba5ae-6c00-78af-89eb-1d681b5aa5b3"], description="An event id.")]
MetricFilter = Annotated[str | None, Query(max_length=SLUG_MAX, pattern=METRIC_SLUG, description="A metric slug.")]


def parse_bound(name: str, raw: str | None) -> datetime | None:
    """A query bound: a date means the end of that day (UTC); a time must carry its offset."""
    if raw is None or raw == "":
        return None
    try:
        moment = parse_moment(raw)
    except (ValueError, OverflowError) as exc:
        raise invalid_parameter(f"query.{name}", str(exc)) from None
    if isinstance(moment, datetime):
        return moment.astimezone(UTC)
    return datetime.combine(moment, time.max, tzinfo=UTC)  # the end of that day


def is_subject_id(text: str) -> bool:
    """Whether `text` can be an agreement or case id (the pages check before they query)."""
    return len(text) <= SLUG_MAX and re.fullmatch(SLUG, text) is not None
