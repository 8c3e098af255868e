"""Realistic event streams for failure tests and benchmarks.

Many agreements and cases, each with a lifecycle, transfer reports (cumulative and
incremental, some arriving late with earlier dates), targets, rulings, stay requests and
figures, sourced like the seed articles. Deterministic for a seed; every event has an id.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from uuid import UUID

COUNTRIES = ["GT", "SV", "HN", "EC", "PY", "UG", "RW", "CR", "PA", "BZ", "MX", "CO"]
NATIONALITIES = ["HN", "SV", "GT", "NI", "CU", "VE", "EC"]
SOURCE = {"publisher": "Associated Press", "url": "https://apnews.com/article/accordwatch-workload",
          "title": "Workload", "published_at": "2020-01-01"}


def _id(rng: random.Random) -> str:
    # UUIDv7 layout (version 7, variant 10) from the seeded generator, so runs are repeatable.
    value = rng.getrandbits(128)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(UUID(int=value))


def _day(start: date, rng: random.Random, spread: int) -> str:
    return (start + timedelta(days=rng.randrange(spread))).isoformat()


def realistic_events(
    total: int, *, seed: int = 7, subjects: int = 200, late: float = 0.05
) -> Iterator[dict[str, Any]]:
    """`total` events over `subjects` agreements and cases (about one case per four agreements).

    News arrives mostly in the order things happen: each subject has its own clock that
    moves forward, and a fraction `late` of the events is backdated (reported weeks later),
    which makes the projector re-fold that subject.
    """
    rng = random.Random(seed)
    agreements = [f"us-{COUNTRIES[i % len(COUNTRIES)].lower()}-aca-{2019 + i // len(COUNTRIES)}"
                  for i in range(subjects)]
    cases = [f"case-{i}-v-dhs" for i in range(max(1, subjects // 4))]
    produced = 0
    base = date(2019, 7, 1)

    def ev(kind: str, subject: str, occurred: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
        nonlocal produced
        produced += 1
        return {"id": _id(rng), "type": kind, "subject": subject, "occurred_at": occurred,
                "sources": [SOURCE], "confidence": extra.pop("confidence", "confirmed"), "data": data, **extra}

    # Openings: every agreement signed, every case filed.
    for subject in agreements:
        partner = subject.split("-")[1].upper()
        if produced >= total:
            return
        yield ev("AgreementSigned", subject, _day(base, rng, 90), {"parties": ["US", partner],
                 "signatories": [{"name": "Kevin McAleenan", "role": "Acting Secretary", "country": "US"}]})
    for case in cases:
        if produced >= total:
            return
        yield ev("LawsuitFiled", case, _day(base, rng, 60), {"court": "N.D. Cal.", "title": case, "affects":
                 [rng.choice(agreements)]})
    clocks: dict[str, date] = {}

    while produced < total:
        roll = rng.random()
        subject = rng.choice(agreements)
        clock = clocks.get(subject, date(2019, 10, 1)) + timedelta(days=rng.randrange(0, 3))
        clocks[subject] = clock
        later = clock - timedelta(days=rng.randrange(15, 120)) if rng.random() < late else clock
        if roll < 0.55:
            cumulative = rng.random() < 0.3
            data: dict[str, Any] = {"count": rng.randrange(1, 400) if not cumulative else rng.randrange(100, 5000),
                                    "cumulative": cumulative, "approximate": rng.random() < 0.2}
            if rng.random() < 0.5:
                data["nationalities"] = {rng.choice(NATIONALITIES): data["count"]}
                data["approximate"] = False
            yield ev("TransferReported", subject, _day(later, rng, 1), data,
                     confidence=rng.choice(["confirmed", "reported"]))
        elif roll < 0.65:
            yield ev("StatisticReported", "us-southwest-border", _day(later, rng, 1),
                     {"metric": "southwest_border_apprehensions", "value": rng.randrange(20_000, 150_000),
                      "unit": "people"})
        elif roll < 0.72:
            yield ev("ImplementationPlanAdopted", subject, _day(later, rng, 1), {})
        elif roll < 0.78:
            yield ev("AgreementInForce", subject, _day(later, rng, 1), {"effective_on": _day(later, rng, 1)})
        elif roll < 0.81:
            yield ev("AgreementSuspended", subject, _day(later, rng, 1), {"reason": "pandemic"})
        elif roll < 0.84:
            yield ev("TransferTargetAnnounced", subject, _day(later, rng, 1),
                     {"target": rng.randrange(500, 5000), "by": "2020-12-31"})
        elif roll < 0.90:
            case = rng.choice(cases)
            clocks[case] = later = max(clocks.get(case, later), later) + timedelta(days=1)
            occurred = _day(later, rng, 1)
            yield ev("CourtRulingIssued", case, occurred, {
                "court": "U.S. Court of Appeals for the Ninth Circuit", "outcome": rng.choice(["blocked", "upheld"]),
                "effective_at": (date.fromisoformat(occurred) + timedelta(days=7)).isoformat(),
                "affects": [subject]})
        elif roll < 0.95:
            case = rng.choice(cases)
            clocks[case] = later = max(clocks.get(case, later), later) + timedelta(days=1)
            yield ev("StayRequested", case, _day(later, rng, 1), {
                "requested_by": "U.S. Department of Homeland Security",
                "court": "Supreme Court of the United States", "affects": [subject]}, confidence="reported")
        else:
            case = rng.choice(cases)
            clocks[case] = later = max(clocks.get(case, later), later) + timedelta(days=1)
            yield ev("StayDecided", case, _day(later, rng, 1), {
                "court": "Supreme Court of the United States", "decision": rng.choice(["granted", "denied"]),
                "affects": [subject]})
