"""Writes seed-timeline.ndjson: the facts of the five seed articles as events.

Kept as code so the ids stay fixed and the file can be regenerated after a schema change:
    .venv/bin/python examples/build.py
Ids are UUIDv7 built from a fixed time plus the line number, so they sort in file order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

AP = {"publisher": "Associated Press", "title": "The Latest: US may send some asylum-seekers to El Salvador",
      "published_at": "2019-09-20"}
FOX = {"publisher": "Fox News", "title": "Trump administration to announce asylum deal with El Salvador",
       "published_at": "2019-09-20"}
BUZZFEED = {"publisher": "BuzzFeed News",
            "title": "US officials are confident El Salvador will take more than 2,000 immigrants",
            "published_at": "2020-03-10"}
CNN = {"publisher": "CNN", "title": "US getting closer to 'safe third country' agreement with Guatemala",
       "published_at": "2019-07-12"}
HILL = {"publisher": "The Hill", "title": "Trump administration reaches asylum deal with Honduras",
        "published_at": "2019-09-25"}

E: list[dict[str, Any]] = []


def add(event_type: str, subject: str, occurred: str, sources: list[dict[str, str]], confidence: str, summary: str,
        **data: Any) -> None:
    E.append({"type": event_type, "subject": subject, "occurred_at": occurred, "sources": sources,
              "confidence": confidence, "summary": summary, "data": data})


# --- Guatemala (CNN, July 2019; Fox and BuzzFeed later) -------------------------------------
add("AgreementProposed", "us-gt-aca-2019", "2019-06-30", [CNN], "confirmed",
    'In June, President Trump tweeted that Guatemala was "getting ready to sign a Safe-Third Agreement."',
    parties=["US", "GT"], title="Safe third country agreement", kind="stca")
add("NegotiationReported", "us-gt-aca-2019", "2019-07-11", [CNN], "reported",
    '"Every week it\'s closer," an administration official said; "ASAP," a DHS official said on Thursday; '
    "daily calls, some setbacks; Reuters first reported an agreement was imminent.",
    parties=["US", "GT"], note="US working to ensure sufficient protections for asylum claimants in Guatemala")
add("NegotiationReported", "us-gt-aca-2019", "2019-07-11", [CNN], "confirmed",
    "Guatemala's government said on Twitter that President Jimmy Morales plans to travel to Washington "
    '"on Monday" to discuss security, migration and the economy.',
    parties=["US", "GT"], note="presidential visit planned for 2019-07-15")
add("AgreementSigned", "us-gt-aca-2019", "2019-07-31", [FOX, BUZZFEED], "confirmed",
    'Fox News: the El Salvador pact "would be similar to that signed in July with Guatemala, yet to be fully '
    'implemented" (date: the latest day of "July").',
    parties=["US", "GT"])
add("AgreementInForce", "us-gt-aca-2019", "2019-11-30", [BUZZFEED], "confirmed",
    '"The Guatemala agreement was implemented late last year"; transfers ran "since November" '
    "(date: the latest day consistent with transfers in November).",
    effective_on="2019-11-30")

# --- Border figures and the asylum transit ban (Fox, The Hill) -------------------------------
add("StatisticReported", "us-southwest-border", "2019-09-20", [FOX], "confirmed",
    '"64,006 migrants were apprehended in August, a drop of 56 percent since May."',
    metric="southwest_border_apprehensions", value=64006, unit="people",
    period_start="2019-08-01", period_end="2019-08-31", region="U.S. southwest border")
add("StatisticReported", "us-southwest-border", "2019-09-20", [FOX], "confirmed",
    'Apprehensions in August were "a drop of 56 percent since May."',
    metric="southwest_border_apprehensions_change_since_may", value=-56, unit="percent",
    period_start="2019-05-01", period_end="2019-08-31", region="U.S. southwest border")
add("StatisticReported", "hn-border-force", "2019-09-15", [FOX], "reported",
    'A senior administration official told reporters "last week" that Honduras has "more than doubled its '
    'border force after the U.S. requested they triple it."',
    metric="honduras_border_force_growth", value=2, unit="times", approximate=True, region="Honduras")
add("StayDecided", "barr-v-east-bay-sanctuary-covenant", "2019-09-15", [FOX, HILL], "confirmed",
    'Fox News: the Supreme Court "last week" allowed the rule barring asylum for migrants who crossed other '
    'countries; The Hill: "upheld a rule" "this month" (date: the latest day of "last week").',
    court="Supreme Court of the United States", decision="granted", affects=["asylum-transit-ban"])

# --- El Salvador (AP, Fox: 2019-09-20) --------------------------------------------------------
add("AgreementProposed", "us-sv-aca-2019", "2019-09-20", [AP, FOX], "reported",
    'A senior official, speaking on condition of anonymity, said McAleenan will sign a "cooperative asylum '
    'agreement" with El Salvador on Friday; a senior DHS official confirmed it to Fox News.',
    parties=["US", "SV"], title="Asylum Cooperative Agreement", kind="aca")
add("NegotiationReported", "us-sv-aca-2019", "2019-09-20", [AP], "confirmed",
    '"A Salvadoran delegation has been in the United States meeting with officials."',
    parties=["US", "SV"], note="Salvadoran delegation in Washington")
add("AgreementSigned", "us-sv-aca-2019", "2019-09-20", [AP, BUZZFEED], "confirmed",
    "Acting DHS Secretary Kevin McAleenan and Foreign Minister Alexandra Hill Tinoco signed the agreement "
    'Friday; the draft says El Salvadorans are excluded and nothing happens "until both countries have taken '
    'the necessary legal actions and an implementation plan is in place."',
    parties=["US", "SV"],
    signatories=[{"name": "Kevin McAleenan", "role": "Acting Secretary of Homeland Security", "country": "US"},
                 {"name": "Alexandra Hill Tinoco", "role": "Minister of Foreign Affairs", "country": "SV"}],
    excluded_nationalities=["SV"],
    conditions=["both countries have taken the necessary legal actions", "an implementation plan is in place"])

# --- Honduras (The Hill: Wednesday 2019-09-25) ------------------------------------------------
add("AgreementSigned", "us-hn-aca-2019", "2019-09-25", [HILL, BUZZFEED], "confirmed",
    'The agreement, "signed Wednesday", is similar to those with El Salvador and Guatemala; a joint statement '
    "implied it had not taken effect and gave no date.",
    parties=["US", "HN"],
    conditions=["the U.S. and international organizations help expand Honduras's asylum capacity"])

# --- El Salvador, later (BuzzFeed 2020-03-10) --------------------------------------------------
add("NegotiationReported", "us-sv-aca-2019", "2019-12-31", [BUZZFEED], "confirmed",
    '"In December, Bukele told CBS\'s 60 Minutes that El Salvador was not ready for asylum-seekers from other '
    'countries" (date: the latest day of December).',
    parties=["US", "SV"], note="El Salvador not ready to receive asylum-seekers")
add("NegotiationReported", "us-sv-aca-2019", "2020-03-06", [BUZZFEED], "disputed",
    "A source says top officials, including acting DHS Secretary Chad Wolf, held a secret meeting in Miami with "
    'President Bukele "on Friday" to finalize a plan; a DHS spokesperson said there was no "secret meeting."',
    parties=["US", "SV"], note="plan to send asylum-seekers, including from Mexico, to El Salvador")
add("TransferTargetAnnounced", "us-sv-aca-2019", "2020-03-06", [BUZZFEED], "reported",
    'US officials were confident El Salvador "would take more than 2,000 immigrants who cross the southern '
    'border without authorization this year," a source said.',
    target=2000, by="2020-12-31", note="more than 2,000 this year")
add("DeadlineSet", "us-sv-aca-2019", "2020-03-06", [BUZZFEED], "reported",
    'The source said "the returns could take shape by the end of March."',
    due_at="2020-03-31T23:59:59Z", description="returns to El Salvador could begin", kind="implementation")

# --- Remain in Mexico in court (BuzzFeed 2020-03-10: "last week", "on Thursday") ---------------
add("CourtRulingIssued", "innovation-law-lab-v-wolf", "2020-03-08", [BUZZFEED], "confirmed",
    '"The 9th US Circuit Court of Appeals will block the Remain in Mexico policy ... on Thursday unless the '
    'Supreme Court steps in" (in California and Arizona; order date: no later than the stay request).',
    court="U.S. Court of Appeals for the Ninth Circuit", outcome="blocked", effective_at="2020-03-12",
    affects=["mpp"])
add("StayRequested", "innovation-law-lab-v-wolf", "2020-03-08", [BUZZFEED], "confirmed",
    '"DHS officials requested last week the high court stay the 9th Circuit\'s order to block the policy in '
    'California and Arizona" (date: the latest day of "last week").',
    requested_by="U.S. Department of Homeland Security", court="Supreme Court of the United States",
    affects=["mpp"])
add("NegotiationReported", "us-hn-aca-2019", "2020-03-08", [BUZZFEED], "reported",
    'DHS officials "last week also scheduled meetings with leading figures from Honduras and Guatemala to '
    'discuss plans to send more asylum-seekers" if Remain in Mexico is blocked, the source said.',
    parties=["US", "HN"], note="meetings scheduled on sending asylum-seekers to Honduras")
add("NegotiationReported", "us-gt-aca-2019", "2020-03-08", [BUZZFEED], "reported",
    'DHS officials "last week also scheduled meetings with leading figures from Honduras and Guatemala to '
    'discuss plans to send more asylum-seekers," the source said.',
    parties=["US", "GT"], note="meetings scheduled on sending more asylum-seekers to Guatemala")
add("TransferReported", "us-gt-aca-2019", "2020-03-10", [BUZZFEED], "confirmed",
    '"Since November, more than 800 asylum-seekers from El Salvador and Honduras, including families, have been '
    'sent to Guatemala," according to the Guatemalan government.',
    count=800, cumulative=True, approximate=True, period_start="2019-11-01", period_end="2020-03-10")
add("StatisticReported", "mpp", "2020-03-10", [BUZZFEED], "confirmed",
    'The Remain in Mexico policy "has led to upward of 60,000 people being returned to Mexico."',
    metric="mpp_returns_to_mexico", value=60000, unit="people", approximate=True)
add("StatisticReported", "us-southwest-border", "2020-03-10", [BUZZFEED], "confirmed",
    'DHS: "more than 71% of those apprehended at the southern border in the 2019 fiscal year were from '
    'Guatemala, Honduras, or El Salvador."',
    metric="northern_triangle_share_of_apprehensions", value=71, unit="percent", approximate=True,
    period_start="2018-10-01", period_end="2019-09-30", region="U.S. southwest border")
add("NegotiationReported", "us-sv-aca-2019", "2020-03-10", [BUZZFEED], "confirmed",
    '"Plans to send asylum-seekers to El Salvador and Honduras have yet to take shape."',
    parties=["US", "SV"], note="not yet implemented")
add("NegotiationReported", "us-hn-aca-2019", "2020-03-10", [BUZZFEED], "confirmed",
    '"Plans to send asylum-seekers to El Salvador and Honduras have yet to take shape."',
    parties=["US", "HN"], note="not yet implemented")


def uuid7(n: int) -> str:
    """A UUIDv7 for line n: a fixed millisecond time plus n, fixed random bits."""
    millis = 1_767_225_600_000 + n  # 2026-01-01T00:00:00Z
    value = (millis << 80) | (0x7 << 76) | (0xACC << 64) | (0x2 << 62) | (0x0A11CE << 32) | n
    return str(UUID(int=value))


def main() -> None:
    out = Path(__file__).with_name("seed-timeline.ndjson")
    lines = [json.dumps({"id": uuid7(n), **event}, ensure_ascii=False) for n, event in enumerate(E)]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} events to {out}")


if __name__ == "__main__":
    main()
