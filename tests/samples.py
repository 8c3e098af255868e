"""A valid example of every event type, for tests."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

SOURCE = {"publisher": "Associated Press", "url": "https://apnews.com/article/example",
          "title": "The Latest: US may send some asylum-seekers to El Salvador",
          "published_at": "2019-09-20T17:25:00-04:00"}

DATA: dict[str, tuple[str, dict[str, Any]]] = {
    "AgreementProposed": ("us-sv-aca-2019", {"parties": ["US", "SV"], "title": "Asylum Cooperative Agreement", "kind": "aca"}),
    "NegotiationReported": ("us-sv-aca-2019", {"parties": ["US", "SV"], "note": "delegation in Washington"}),
    "AgreementSigned": ("us-sv-aca-2019", {
        "parties": ["US", "SV"],
        "signatories": [{"name": "Kevin McAleenan", "role": "Acting Secretary of Homeland Security", "country": "US"},
                        {"name": "Alexandra Hill Tinoco", "role": "Minister of Foreign Affairs", "country": "SV"}],
        "excluded_nationalities": ["SV"],
        "conditions": ["both countries have taken the necessary legal actions", "an implementation plan is in place"],
    }),
    "LegalActionCompleted": ("us-gt-aca-2019", {"country": "US", "action": "interim final rule published"}),
    "ImplementationPlanAdopted": ("us-gt-aca-2019", {"eligible_nationalities": ["SV", "HN"]}),
    "AgreementInForce": ("us-gt-aca-2019", {"effective_on": "2019-11-21"}),
    "AgreementSuspended": ("us-gt-aca-2019", {"reason": "pandemic"}),
    "AgreementTerminated": ("us-gt-aca-2019", {"reason": "terminated by notice", "effective_on": "2021-02-06"}),
    "TransferReported": ("us-gt-aca-2019", {"count": 800, "cumulative": True, "approximate": True,
                                            "period_start": "2019-11-01", "period_end": "2020-03-10"}),
    "TransferTargetAnnounced": ("us-sv-aca-2019", {"target": 2000, "by": "2020-12-31"}),
    "StatisticReported": ("us-southwest-border", {"metric": "southwest_border_apprehensions", "value": 64006,
                                                  "unit": "people", "period_start": "2019-08-01", "period_end": "2019-08-31"}),
    "LawsuitFiled": ("innovation-law-lab-v-wolf", {"court": "N.D. Cal.", "title": "Innovation Law Lab v. Wolf", "affects": ["mpp"]}),
    "CourtRulingIssued": ("innovation-law-lab-v-wolf", {"court": "U.S. Court of Appeals for the Ninth Circuit", "outcome": "blocked",
                                                        "effective_at": "2020-03-12", "affects": ["mpp"]}),
    "StayRequested": ("innovation-law-lab-v-wolf", {"requested_by": "U.S. Department of Homeland Security",
                                                    "court": "Supreme Court of the United States", "affects": ["mpp"]}),
    "StayDecided": ("innovation-law-lab-v-wolf", {"court": "Supreme Court of the United States", "decision": "granted", "affects": ["mpp"]}),
    "DeadlineSet": ("innovation-law-lab-v-wolf", {"due_at": "2020-03-12T00:00:00-07:00", "description": "order takes effect", "kind": "ruling_effective"}),
    "EventRetracted": ("us-sv-aca-2019", {"event_id": "0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f60", "reason": "wrong agreement"}),
    "EventCorrected": ("us-sv-aca-2019", {"event_id": "0190f5c2-5a4e-7d3c-8a8b-1b2c3d4e5f60",
                                          "changes": {"occurred_at": "2019-09-20", "data": {"place": "Washington"}}}),
}


def event(event_type: str, **overrides: Any) -> dict[str, Any]:
    """A valid wire event of `event_type`; overrides replace top-level fields."""
    subject, data = DATA[event_type]
    doc: dict[str, Any] = {
        "type": event_type,
        "subject": subject,
        "occurred_at": "2019-09-20",
        "sources": [deepcopy(SOURCE)],
        "confidence": "confirmed",
        "data": deepcopy(data),
    }
    doc.update(overrides)
    return doc
