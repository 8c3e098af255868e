"""Generator of examples/seed-timeline.ndjson: `python examples/build.py` rewrites it byte for byte.

Events are listed in world order (occurred_at, then logical order within a day).
Ids: UUIDv7 whose 48-bit millisecond timestamp is occurred_at (00:00 UTC) plus the line
index, so ids sort in file order; the 74 "random" bits are a SHA-256 of a fixed label, so
the file is reproducible byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from uuid import UUID

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("seed-timeline.ndjson")

# -- sources (only fields the Source model accepts; titles only where the seed file has one;
#    no urls: none of the seed files carries one) -------------------------------------------
CNN = {"publisher": "CNN", "published_at": "2019-07-11"}
FOX = {"publisher": "Fox News", "published_at": "2019-09-20"}
AP = {"publisher": "Associated Press",
      "title": "The Latest: US may send some asylum-seekers to El Salvador",
      "published_at": "2019-09-20"}
HILL = {"publisher": "The Hill", "title": "Trump administration reaches asylum deal with Honduras",
        "published_at": "2019-09-25"}
BUZZFEED = {"publisher": "BuzzFeed News", "published_at": "2020-03-10"}

ARTICLE = {id(CNN): "003 CNN", id(FOX): "001 Fox", id(AP): "000 AP", id(HILL): "004 Hill",
           id(BUZZFEED): "002 BuzzFeed"}

GT, SV, HN = "us-gt-aca-2019", "us-sv-aca-2019", "us-hn-aca-2019"
MPP_CASE = "innovation-law-lab-v-wolf"
BAN_CASE = "barr-v-east-bay-sanctuary-covenant"
BORDER = "us-southwest-border"
SCOTUS = "Supreme Court of the United States"
NINTH = "U.S. Court of Appeals for the Ninth Circuit"

E: list[dict[str, Any]] = []


def add(event_type: str, subject: str, occurred: str, sources: list[dict[str, str]], confidence: str,
        summary: str, **data: Any) -> None:
    E.append({"type": event_type, "subject": subject, "occurred_at": occurred, "sources": sources,
              "confidence": confidence, "summary": summary, "data": data})


# ---------------------------------------------------------------- 2019-06 / 07: Guatemala
add("AgreementProposed", GT, "2019-06-30", [CNN], "confirmed",
    'President Trump tweeted "in June" that Guatemala was "getting ready to sign a Safe-Third '
    'Agreement" (date: the last day of June).',
    parties=["US", "GT"], title="Safe Third Country agreement", kind="stca")
add("NegotiationReported", GT, "2019-07-11", [CNN], "reported",
    'Anonymous U.S. officials said talks on a "safe third country" agreement with Guatemala were '
    'near a deal ("Every week it\'s closer"; "ASAP," a DHS official said on Thursday), with almost '
    "daily calls, some setbacks and work on protections for asylum claimants in Guatemala.",
    parties=["US", "GT"],
    note='"has been a lot of progress" but also some setbacks; "will is there on both sides"; '
         "Guatemala's upcoming runoff election adds pressure; Reuters first reported that an "
         "agreement was imminent.")
add("NegotiationReported", GT, "2019-07-11", [CNN], "confirmed",
    "Guatemala's government said on Twitter that President Jimmy Morales plans to travel to "
    'Washington "on Monday" (2019-07-15) to discuss security, migration and the economy, and the push '
    'for an agreement "comes days before" his visit.',
    parties=["US", "GT"], note="presidential visit to Washington planned for Monday 2019-07-15")
add("AgreementSigned", GT, "2019-07-31", [FOX, BUZZFEED, HILL], "confirmed",
    'The Guatemala pact was "signed in July" (Fox News), one of the agreements with all three '
    'countries "signed last year after negotiations led by then-DHS Secretary Kevin McAleenan" '
    "(BuzzFeed News) (date: the last day of July).",
    parties=["US", "GT"])

# ---------------------------------------------------------------- 2019-08 / 09
add("StatisticReported", BORDER, "2019-08-31", [FOX], "confirmed",
    'Officials\' figures: "64,006 migrants were apprehended in August, a drop of 56 percent since May."',
    metric="southwest_border_apprehensions", value=64006, unit="people",
    period_start="2019-08-01", period_end="2019-08-31", region="U.S. southern border")
add("StatisticReported", BORDER, "2019-08-31", [FOX], "confirmed",
    'August apprehensions at the southern border were "a drop of 56 percent since May."',
    metric="southwest_border_apprehensions_change_since_may", value=-56, unit="percent",
    period_start="2019-05-01", period_end="2019-08-31", region="U.S. southern border")
add("StayDecided", BAN_CASE, "2019-09-15", [FOX, HILL], "confirmed",
    'The Supreme Court "last week" "allowed the administration\'s rule banning migrants who had '
    'crossed through other countries from claiming asylum in the U.S." (Fox News; The Hill: '
    '"this month upheld a rule") (date: the last day of "last week").',
    court=SCOTUS, decision="granted", affects=["asylum-transit-ban"])
add("StatisticReported", "hn-border-force", "2019-09-15", [FOX], "reported",
    'A senior administration official told reporters "last week" that Honduras "has so far more than '
    'doubled its border force after the U.S. requested they triple it" (date: the last day of "last week").',
    metric="border_force_growth_factor", value=2, unit="multiple of earlier size", approximate=True,
    region="Honduras")

# ---------------------------------------------------------------- 2019-09-20: El Salvador
add("AgreementProposed", SV, "2019-09-20", [AP, FOX], "reported",
    'A senior administration official, speaking on condition of anonymity, said McAleenan "will sign '
    'a \'cooperative asylum agreement\' with El Salvador on Friday," which a senior DHS official '
    "confirmed to Fox News.",
    parties=["US", "SV"], title="Asylum Cooperative Agreement", kind="aca")
add("NegotiationReported", SV, "2019-09-20", [AP], "confirmed",
    '"A Salvadoran delegation has been in the United States meeting with officials."',
    parties=["US", "SV"], note="Salvadoran delegation meeting U.S. officials in the United States")
add("NegotiationReported", GT, "2019-09-20", [FOX], "confirmed",
    'Fox News describes the Guatemala pact as "signed in July" but "yet to be fully implemented."',
    parties=["US", "GT"], note="signed, not yet fully implemented")
add("AgreementSigned", SV, "2019-09-20", [AP, BUZZFEED, HILL], "confirmed",
    "Acting Homeland Security Secretary Kevin McAleenan and Foreign Minister Alexandra Hill Tinoco "
    'signed the agreement "Friday"; the unsigned draft AP obtained excludes Salvadorans and lets the '
    'U.S. send asylum-seekers only once "both countries have taken the necessary legal actions and '
    'an implementation plan is in place."',
    parties=["US", "SV"],
    signatories=[{"name": "Kevin McAleenan", "role": "Acting Secretary of Homeland Security", "country": "US"},
                 {"name": "Alexandra Hill Tinoco", "role": "Minister of Foreign Affairs", "country": "SV"}],
    excluded_nationalities=["SV"],
    conditions=["both countries have taken the necessary legal actions",
                "an implementation plan is in place"])

# ---------------------------------------------------------------- 2019-09-25: Honduras
add("AgreementSigned", HN, "2019-09-25", [HILL, BUZZFEED], "confirmed",
    'The U.S.-Honduras agreement, "signed Wednesday," is "similar to agreements previously reached '
    'with the governments of El Salvador and Guatemala"; a joint statement implied it "hadn\'t taken '
    'effect" and gave no effective date, and the U.S. and international organizations will help Honduras '
    '"expand its asylum capacity."',
    parties=["US", "HN"])

# ---------------------------------------------------------------- FY2019 figure
add("StatisticReported", BORDER, "2019-09-30", [BUZZFEED], "confirmed",
    'DHS officials have said "more than 71% of those apprehended at the southern border in the 2019 '
    'fiscal year were from Guatemala, Honduras, or El Salvador."',
    metric="northern_triangle_share_of_apprehensions", value=71, unit="percent", approximate=True,
    period_start="2018-10-01", period_end="2019-09-30", region="U.S. southern border")

# ---------------------------------------------------------------- late 2019
add("AgreementInForce", GT, "2019-11-30", [BUZZFEED], "confirmed",
    '"The Guatemala agreement was implemented late last year," with transfers "since November" '
    "(date: the last day of November, the latest consistent with transfers that month).",
    effective_on="2019-11-30")
add("NegotiationReported", SV, "2019-12-31", [BUZZFEED], "confirmed",
    '"In December, Bukele told CBS\'s 60 Minutes that El Salvador was not ready for asylum-seekers '
    'from other countries" (date: the last day of December).',
    parties=["US", "SV"], note="President Bukele: El Salvador not ready for asylum-seekers from other countries")

# ---------------------------------------------------------------- 2020-03: El Salvador, MPP
add("NegotiationReported", SV, "2020-03-06", [BUZZFEED], "disputed",
    'A source said top officials including acting DHS Secretary Chad Wolf held "a secret meeting in '
    'Miami" with President Nayib Bukele "on Friday" to finalize a plan to send asylum-seekers, '
    'including those from Mexico, to El Salvador; a DHS spokesperson said there was no "secret meeting."',
    parties=["US", "SV"],
    note='DHS: "senior officials from these governments meet constantly away from the bright lights '
         'of a press conference"')
add("TransferTargetAnnounced", SV, "2020-03-06", [BUZZFEED], "reported",
    "After the Miami meeting U.S. officials were confident El Salvador would take \"more than 2,000 "
    'immigrants who cross the southern border without authorization this year," a source said.',
    target=2000, by="2020-12-31", note='"more than 2,000" "this year" (anonymous source)')
add("DeadlineSet", SV, "2020-03-06", [BUZZFEED], "reported",
    'U.S. officials expected that "the returns could take shape by the end of March," a source said.',
    due_at="2020-03-31T23:59:59-04:00",
    description="returns of asylum-seekers to El Salvador could begin (\"by the end of March\")",
    kind="implementation")
add("CourtRulingIssued", MPP_CASE, "2020-03-08", [BUZZFEED], "confirmed",
    'The Ninth Circuit "will block the Remain in Mexico policy — formally called the Migration '
    'Protection Protocols — on Thursday unless the Supreme Court steps in," in California and Arizona '
    '(the order\'s date is not given: dated no later than the stay request of "last week").',
    court=NINTH, outcome="blocked", effective_at="2020-03-12", regions=["US-AZ", "US-CA"], affects=["mpp"])
add("StayRequested", MPP_CASE, "2020-03-08", [BUZZFEED], "confirmed",
    '"DHS officials requested last week the high court stay the 9th Circuit\'s order to block the '
    'policy in California and Arizona" (date: the last day of "last week").',
    requested_by="U.S. Department of Homeland Security", court=SCOTUS, affects=["mpp"])
add("NegotiationReported", HN, "2020-03-08", [BUZZFEED], "reported",
    'A source said DHS officials "last week also scheduled meetings with leading figures from Honduras '
    'and Guatemala to discuss plans to send more asylum-seekers" there if Remain in Mexico is blocked.',
    parties=["US", "HN"], note="meetings scheduled with Honduran leaders (contingency for MPP being blocked)")
add("NegotiationReported", GT, "2020-03-08", [BUZZFEED], "reported",
    'A source said DHS officials "last week also scheduled meetings with leading figures from Honduras '
    'and Guatemala to discuss plans to send more asylum-seekers" there if Remain in Mexico is blocked.',
    parties=["US", "GT"], note="meetings scheduled with Guatemalan leaders (contingency for MPP being blocked)")
add("TransferReported", GT, "2020-03-10", [BUZZFEED], "confirmed",
    '"Since November, more than 800 asylum-seekers from El Salvador and Honduras, including families, '
    'have been sent to Guatemala," according to Guatemalan government figures.',
    count=800, cumulative=True, approximate=True, period_start="2019-11-01", period_end="2020-03-10")
add("StatisticReported", "mpp", "2020-03-10", [BUZZFEED], "confirmed",
    'The Remain in Mexico policy "has led to upward of 60,000 people being returned to Mexico."',
    metric="mpp_returns_to_mexico", value=60000, unit="people", approximate=True, period_end="2020-03-10")
add("NegotiationReported", SV, "2020-03-10", [BUZZFEED], "confirmed",
    'As of the article\'s date, "plans to send asylum-seekers to El Salvador and Honduras have yet to take shape."',
    parties=["US", "SV"], note="no transfers yet; implementation not begun")
add("NegotiationReported", HN, "2020-03-10", [BUZZFEED], "confirmed",
    'As of the article\'s date, "plans to send asylum-seekers to El Salvador and Honduras have yet to take shape."',
    parties=["US", "HN"], note="no transfers yet; implementation not begun")


def uuid7(occurred: str, n: int, label: str) -> str:
    """UUIDv7: 48-bit ms timestamp (occurred_at 00:00 UTC + n), version 7, variant 10."""
    millis = int(datetime.combine(date.fromisoformat(occurred), time.min, tzinfo=UTC).timestamp() * 1000) + n
    digest = int.from_bytes(hashlib.sha256(f"accordwatch-seed:{n}:{label}".encode()).digest()[:10], "big")
    rand_a = digest & 0xFFF
    rand_b = (digest >> 12) & ((1 << 62) - 1)
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return str(UUID(int=value))


def main() -> None:
    lines = []
    for n, ev in enumerate(E):
        doc = {"id": uuid7(ev["occurred_at"], n, f"{ev['type']}:{ev['subject']}"), **ev}
        lines.append(json.dumps(doc, ensure_ascii=False))
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} events to {OUT}")
    for n, ev in enumerate(E, 1):
        arts = ", ".join(ARTICLE[id(s)] for s in ev["sources"])
        print(f"{n:2} {ev['occurred_at']} {ev['type']:24} {ev['subject']:36} {ev['confidence']:9} {arts}")


if __name__ == "__main__":
    main()
