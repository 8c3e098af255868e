"""Two real litigation chains as events, and what a court watcher expects of them between the steps.

Dates are the courts' (from the orders and the dockets as reported); where a day had two
steps, times of day keep them in order. Expectations are reasoned from DESIGN 3.1's rules
with hindsight: everything decided by a date counts at that date, everything in effect by it.

Remain in Mexico (MPP), Innovation Law Lab v. Nielsen / McAleenan / Wolf, N.D. Cal. 19-cv-00807,
9th Cir. 19-15716, S. Ct. 19A960:
  2019-04-08  N.D. Cal. preliminary injunction, nationwide, to take effect 2019-04-12 5 p.m. PDT
  2019-04-10  the government asks the Ninth Circuit for a stay pending appeal
  2019-04-12  Ninth Circuit administrative stay (before the injunction takes effect)
  2019-05-07  Ninth Circuit stay pending appeal (granted)
  2020-02-28  Ninth Circuit affirms (morning); its stay pending appeal is lifted; the government
              asks for a stay pending certiorari; that evening an administrative stay
  2020-03-02  the government applies to the Supreme Court for a stay
  2020-03-04  Ninth Circuit grants the stay in part: stayed except in Arizona and California
              (the border states within the circuit), effective Thursday 2020-03-12
  2020-03-11  Supreme Court stays the injunction
Transit ban, East Bay Sanctuary Covenant v. Barr, N.D. Cal. 19-cv-04073, 9th Cir. 19-16487,
S. Ct. 19A230:
  2019-07-24  N.D. Cal. preliminary injunction, nationwide
  2019-08-16  Ninth Circuit stays it except within the Ninth Circuit
  2019-08-26  the government applies to the Supreme Court for a stay
  2019-09-09  N.D. Cal. restores the nationwide scope
  2019-09-10  Ninth Circuit stays that order again except within the circuit
  2019-09-11  Supreme Court stays both orders in full
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

MPP_CASE = "innovation-law-lab-v-wolf"
BAN_CASE = "east-bay-sanctuary-covenant-v-barr"
NDCAL = "U.S. District Court for the Northern District of California"
NINTH = "U.S. Court of Appeals for the Ninth Circuit"
SCOTUS = "Supreme Court of the United States"
NINTH_CIRCUIT = ["US-AK", "US-AZ", "US-CA", "US-GU", "US-HI", "US-ID", "US-MP", "US-MT", "US-NV", "US-OR", "US-WA"]
_NS = UUID("6f1d1e0c-7c43-4b35-9a4e-13c0a1a1d013")


def ids(prefix: str) -> dict[str, str]:
    """Stable event ids for one run of a chain (a prefix per run keeps runs apart on a shared topic)."""
    names = ["filed", "pi", "ask9", "admin1", "pending", "affirm", "lift", "ask9b", "admin2", "ask_sc", "partial",
             "scotus", "jul", "aug", "ask_sc_ban", "sep9", "sep10", "sep11", "filed_ban"]
    return {name: str(uuid5(_NS, f"{prefix}:{name}")) for name in names}


def _event(id_: str, type_: str, subject: str, at: str, court: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": id_, "type": type_, "subject": subject, "occurred_at": at,
            "sources": [{"publisher": court}], "confidence": "confirmed", "data": data}


def mpp_chain(prefix: str = "mpp", case: str = MPP_CASE, policy: str = "mpp") -> list[dict[str, Any]]:
    """The MPP litigation of 2019-2020, in the order it happened."""
    i = ids(prefix)
    mpp = [policy]
    return [
        _event(i["filed"], "LawsuitFiled", case, "2019-02-14", NDCAL,
               {"court": NDCAL, "title": "Innovation Law Lab v. Nielsen", "affects": mpp}),
        _event(i["pi"], "CourtRulingIssued", case, "2019-04-08", NDCAL,
               {"court": NDCAL, "outcome": "blocked", "effective_at": "2019-04-12T17:00:00-07:00", "affects": mpp}),
        _event(i["ask9"], "StayRequested", case, "2019-04-10", NINTH,
               {"requested_by": "U.S. Department of Homeland Security", "court": NINTH, "affects": mpp}),
        _event(i["admin1"], "StayDecided", case, "2019-04-12", NINTH,
               {"court": NINTH, "decision": "administrative", "rulings": [i["pi"]], "affects": mpp}),
        _event(i["pending"], "StayDecided", case, "2019-05-07", NINTH,
               {"court": NINTH, "decision": "granted", "rulings": [i["pi"]], "affects": mpp}),
        _event(i["affirm"], "CourtRulingIssued", case, "2020-02-28T09:00:00-08:00", NINTH,
               {"court": NINTH, "outcome": "upheld", "rulings": [i["pi"]], "affects": mpp}),
        _event(i["lift"], "StayDecided", case, "2020-02-28T09:00:00-08:00", NINTH,
               {"court": NINTH, "decision": "lifted", "rulings": [i["pi"]], "affects": mpp}),
        _event(i["ask9b"], "StayRequested", case, "2020-02-28T12:00:00-08:00", NINTH,
               {"requested_by": "U.S. Department of Homeland Security", "court": NINTH, "affects": mpp}),
        _event(i["admin2"], "StayDecided", case, "2020-02-28T20:00:00-08:00", NINTH,
               {"court": NINTH, "decision": "administrative", "rulings": [i["pi"]], "affects": mpp}),
        _event(i["ask_sc"], "StayRequested", case, "2020-03-02", SCOTUS,
               {"requested_by": "U.S. Department of Homeland Security", "court": SCOTUS, "affects": mpp}),
        _event(i["partial"], "StayDecided", case, "2020-03-04", NINTH,
               {"court": NINTH, "decision": "granted_in_part", "rulings": [i["pi"]], "effective_at": "2020-03-12",
                "remaining_regions": ["US-AZ", "US-CA"], "affects": mpp}),
        _event(i["scotus"], "StayDecided", case, "2020-03-11", SCOTUS,
               {"court": SCOTUS, "decision": "granted", "rulings": [i["pi"]], "affects": mpp}),
    ]


def ban_chain(prefix: str = "ban", case: str = BAN_CASE, policy: str = "asylum-transit-ban") -> list[dict[str, Any]]:
    """The transit-ban litigation of 2019, in the order it happened."""
    i = ids(prefix)
    ban = [policy]
    return [
        _event(i["filed_ban"], "LawsuitFiled", case, "2019-07-16", NDCAL,
               {"court": NDCAL, "title": "East Bay Sanctuary Covenant v. Barr", "affects": ban}),
        _event(i["jul"], "CourtRulingIssued", case, "2019-07-24", NDCAL,
               {"court": NDCAL, "outcome": "blocked", "affects": ban}),
        _event(i["aug"], "StayDecided", case, "2019-08-16", NINTH,
               {"court": NINTH, "decision": "granted_in_part", "rulings": [i["jul"]],
                "remaining_regions": NINTH_CIRCUIT, "affects": ban}),
        _event(i["ask_sc_ban"], "StayRequested", case, "2019-08-26", SCOTUS,
               {"requested_by": "U.S. Department of Justice", "court": SCOTUS, "affects": ban}),
        _event(i["sep9"], "CourtRulingIssued", case, "2019-09-09", NDCAL,
               {"court": NDCAL, "outcome": "blocked", "rulings": [i["jul"]], "affects": ban}),
        _event(i["sep10"], "StayDecided", case, "2019-09-10", NINTH,
               {"court": NINTH, "decision": "granted_in_part", "rulings": [i["sep9"]],
                "remaining_regions": NINTH_CIRCUIT, "affects": ban}),
        _event(i["sep11"], "StayDecided", case, "2019-09-11", SCOTUS,
               {"court": SCOTUS, "decision": "granted", "rulings": [i["jul"], i["sep9"]], "affects": ban}),
    ]


Expected = tuple[str, str, list[str], str | None, tuple[str, str, list[str]] | None, list[str]]
"""(as_of, status, blocked_in, since, next_change (at, status, blocked_in) or None, pending stay requests' courts)."""

MPP_EXPECTED: list[Expected] = [
    ("2019-04-09T12:00:00Z", "in_effect", [], None, ("2019-04-13T00:00:00+00:00", "blocked", []), []),
    ("2019-04-11T12:00:00Z", "in_effect", [], None, ("2019-04-13T00:00:00+00:00", "blocked", []), [NINTH]),
    ("2019-04-20T00:00:00Z", "in_effect", [], None, None, [NINTH]),
    ("2019-06-01T00:00:00Z", "in_effect", [], None, None, []),
    ("2020-02-28T18:00:00Z", "blocked", [], "2020-02-28T17:00:00+00:00", None, []),
    ("2020-02-28T21:00:00Z", "blocked", [], "2020-02-28T17:00:00+00:00", None, [NINTH]),
    ("2020-03-01T00:00:00Z", "in_effect", [], "2020-02-29T04:00:00+00:00", None, [NINTH]),
    ("2020-03-03T00:00:00Z", "in_effect", [], "2020-02-29T04:00:00+00:00", None, [NINTH, SCOTUS]),
    ("2020-03-09T12:00:00Z", "in_effect", [], "2020-02-29T04:00:00+00:00",
     ("2020-03-12T00:00:00+00:00", "partly_blocked", ["US-AZ", "US-CA"]), [SCOTUS]),
    ("2020-03-11T12:00:00Z", "in_effect", [], "2020-02-29T04:00:00+00:00", None, []),
    ("2020-03-13T00:00:00Z", "in_effect", [], "2020-02-29T04:00:00+00:00", None, []),
]

BAN_EXPECTED: list[Expected] = [
    ("2019-07-20T00:00:00Z", "in_effect", [], None, None, []),
    ("2019-08-01T00:00:00Z", "blocked", [], "2019-07-24T00:00:00+00:00", None, []),
    ("2019-08-20T00:00:00Z", "partly_blocked", NINTH_CIRCUIT, "2019-08-16T00:00:00+00:00", None, []),
    ("2019-08-30T00:00:00Z", "partly_blocked", NINTH_CIRCUIT, "2019-08-16T00:00:00+00:00", None, [SCOTUS]),
    ("2019-09-09T12:00:00Z", "blocked", [], "2019-09-09T00:00:00+00:00", None, [SCOTUS]),
    ("2019-09-10T12:00:00Z", "partly_blocked", NINTH_CIRCUIT, "2019-09-10T00:00:00+00:00", None, [SCOTUS]),
    ("2019-09-12T00:00:00Z", "in_effect", [], "2019-09-11T00:00:00+00:00", None, []),
]
