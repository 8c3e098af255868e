"""The status pages in a real browser against a running stack that holds the example timeline.

What the examples imply (examples/README.md): Guatemala in force since 2019-11-30 with ~800
transfers; El Salvador signed 2019-09-20 with a target of 2,000 by 2020-12-31; Honduras signed
2019-09-25 (nothing known before); the MPP case has a pending stay request at the Supreme Court
and the Ninth Circuit's order takes effect 2020-03-12.
"""

from __future__ import annotations

import pytest

from tests.conftest import RunningStack
from tests.readers.conftest import Visit

pytestmark = [pytest.mark.kafka, pytest.mark.stack, pytest.mark.browser]

GT, SV, HN = "us-gt-aca-2019", "us-sv-aca-2019", "us-hn-aca-2019"
MPP = "innovation-law-lab-v-wolf"
MAX_PAGE_BYTES = 200 * 1024


def _base(stack: RunningStack) -> str:
    return stack.stack.urls["projector"]


def _statuses(visit: Visit) -> dict[str, str]:
    """Each agreement row's status as the reader sees it ("in force", "not yet known")."""
    rows = visit.page.locator("#agreements tbody tr[data-agreement]")
    return {
        rows.nth(i).get_attribute("data-agreement") or "": rows.nth(i).locator("td[data-status] .badge").inner_text()
        for i in range(rows.count())
    }


def test_overview_lists_every_agreement_with_the_status_the_examples_imply(
    examples_stack: RunningStack, desktop: Visit
) -> None:
    desktop.goto(f"{_base(examples_stack)}/status")
    statuses = _statuses(desktop)
    assert statuses == {GT: "in force", SV: "signed", HN: "signed"}
    gt_row = desktop.page.locator(f"tr[data-agreement='{GT}']")
    assert "Guatemala" in gt_row.inner_text()
    assert "2019-11-30" in gt_row.inner_text()
    assert "800" in gt_row.inner_text()
    assert "approx" in gt_row.inner_text()
    assert "2,000 by 2020-12-31" in desktop.page.locator(f"tr[data-agreement='{SV}']").inner_text()
    mpp_row = desktop.page.locator(f"tr[data-case='{MPP}']")
    assert "stay requested" in mpp_row.inner_text()
    assert "U.S. Department of Homeland Security asked Supreme Court of the United States" in mpp_row.inner_text()
    assert desktop.page.locator("h1").count() == 1
    desktop.assert_clean()


def _policies(visit: Visit) -> dict[str, str]:
    """Each policy row's status as the reader sees it ("partly blocked")."""
    rows = visit.page.locator("#policies tbody tr[data-policy]")
    return {
        rows.nth(i).get_attribute("data-policy") or "": rows.nth(i).locator("td[data-status] .badge").inner_text()
        for i in range(rows.count())
    }


def test_overview_shows_each_policy_where_it_is_blocked_and_its_next_change(
    examples_stack: RunningStack, desktop: Visit
) -> None:
    # Now: the Ninth Circuit's order took effect on Thursday 2020-03-12 in Arizona and California;
    # DHS's request to the Supreme Court is still pending in the articles. (Other readers' tests add
    # cases of their own, dated today: they may add rows' details, not change these statuses.)
    desktop.goto(f"{_base(examples_stack)}/status")
    policies = _policies(desktop)
    assert policies["mpp"] == "partly blocked"
    assert policies["asylum-transit-ban"] == "in effect"
    mpp = desktop.page.locator("tr[data-policy='mpp']").inner_text()
    assert "Arizona (US-AZ), California (US-CA)" in mpp
    assert "U.S. Court of Appeals for the Ninth Circuit" in mpp
    assert "U.S. Department of Homeland Security asked Supreme Court of the United States" in mpp

    # On Tuesday 2020-03-10 it was in effect everywhere, with Thursday's change ahead.
    desktop.goto(f"{_base(examples_stack)}/status?as_of=2020-03-10")
    assert _policies(desktop) == {"mpp": "in effect", "asylum-transit-ban": "in effect"}
    upcoming = desktop.page.locator("tr[data-policy='mpp'] td.next-change").inner_text()
    assert "2020-03-12: partly blocked in Arizona (US-AZ), California (US-CA)" in upcoming
    assert "none scheduled" in desktop.page.locator("tr[data-policy='asylum-transit-ban'] td.next-change").inner_text()
    desktop.assert_clean()


def test_as_of_picker_shows_the_state_on_that_date_with_a_shareable_url(
    examples_stack: RunningStack, desktop: Visit
) -> None:
    page = desktop.page
    desktop.goto(f"{_base(examples_stack)}/status")
    page.get_by_label("Show the state on").fill("2019-09-24")
    with page.expect_navigation():
        page.get_by_role("button", name="Show").click()
    assert page.url.endswith("/status?as_of=2019-09-24")
    statuses = _statuses(desktop)
    assert statuses == {GT: "signed", SV: "signed", HN: "not yet known"}
    assert "As of 2019-09-24" in page.locator("#as-of-note").inner_text()

    # The link to an agreement keeps the date; its page shows the agreement as it stood then.
    page.get_by_role("link", name="Safe Third Country agreement").click()
    page.wait_for_load_state("networkidle")
    assert page.url.endswith(f"/status/agreements/{GT}?as_of=2019-09-24")
    assert "signed" in page.locator(".lead").inner_text()
    assert "later events not shown" in page.locator("#main").inner_text()

    # A shared URL opens straight on its date; the deadlines open then are listed with the time left.
    desktop.goto(f"{_base(examples_stack)}/status?as_of=2020-03-10")
    deadlines = page.locator("#deadlines-h + div table").inner_text()
    assert "returns of asylum-seekers to El Salvador could begin" in deadlines
    assert "in 21 days" in deadlines
    assert "ruling (blocked) takes effect" in deadlines
    assert "in 1 day" in deadlines
    assert page.get_by_label("Show the state on").input_value() == "2020-03-10"
    desktop.assert_clean()


def test_agreement_page_shows_its_timeline_with_sources_confidence_and_the_transfer_chart(
    examples_stack: RunningStack, desktop: Visit
) -> None:
    page = desktop.page
    desktop.goto(f"{_base(examples_stack)}/status/agreements/{SV}")
    timeline = page.locator("ol.timeline")
    assert timeline.locator("li.ev").count() == 8
    signed = timeline.locator("li.ev", has_text="AgreementSigned")
    sources = signed.locator("ul.sources").inner_text()
    assert "Associated Press" in sources
    assert "The Latest: US may send some asylum-seekers to El Salvador" in sources
    assert "The Hill" in sources
    assert "BuzzFeed News" in sources
    assert timeline.locator("li.ev", has_text="secret meeting").locator(".c-disputed").count() == 1
    chart = page.locator("figure.chart svg[role=img]")
    assert chart.count() == 1
    assert "target 2,000 by 2020-12-31" in chart.inner_html()
    assert "Kevin McAleenan" in page.locator("dl.facts").inner_text()

    desktop.goto(f"{_base(examples_stack)}/status/agreements/{GT}")
    assert "CNN" in page.locator("ol.timeline").inner_text()
    assert "800" in page.locator("figure.chart figcaption").inner_text()
    desktop.assert_clean()


def test_case_page_shows_rulings_stay_requests_and_deadlines(examples_stack: RunningStack, desktop: Visit) -> None:
    page = desktop.page
    desktop.goto(f"{_base(examples_stack)}/status/cases/{MPP}?as_of=2020-03-10")
    main = page.locator("#main").inner_text()
    assert "U.S. Court of Appeals for the Ninth Circuit" in main
    stays = page.locator("#stays-h + div table").inner_text()
    assert "U.S. Department of Homeland Security" in stays
    assert "pending" in stays
    deadlines = page.locator("#deadlines-h + div table").inner_text()
    assert "2020-03-12" in deadlines
    assert "open" in deadlines
    desktop.assert_clean()


def test_pages_read_without_javascript(examples_stack: RunningStack, no_script: Visit) -> None:
    page = no_script.page
    no_script.goto(f"{_base(examples_stack)}/status")
    assert page.locator("#agreements tbody tr[data-agreement]").count() == 3
    page.get_by_label("Show the state on").fill("2019-07-05")
    with page.expect_navigation():
        page.get_by_role("button", name="Show").click()
    assert _statuses(no_script) == {GT: "proposed", SV: "not yet known", HN: "not yet known"}
    no_script.assert_clean()


PAGES = {
    "overview": "/status",
    "overview-2020-03-10": "/status?as_of=2020-03-10",
    "agreement-gt": f"/status/agreements/{GT}",
    "agreement-sv-2020-03-10": f"/status/agreements/{SV}?as_of=2020-03-10",
    "agreement-hn-before-signing": f"/status/agreements/{HN}?as_of=2019-09-01",
    "case-mpp-2020-03-10": f"/status/cases/{MPP}?as_of=2020-03-10",
    "case-transit-ban": "/status/cases/barr-v-east-bay-sanctuary-covenant",
}
README_SHOTS = {"desktop-overview-2020-03-10", "desktop-agreement-sv-2020-03-10", "phone-overview-2020-03-10",
                "phone-case-mpp-2020-03-10"}
"""The screenshots the README shows (docs/screenshots/, refreshed with ACCORDWATCH_UPDATE_SCREENSHOTS=1)."""


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_every_page_is_accessible_light_and_fits_the_screen(
    examples_stack: RunningStack, request: pytest.FixtureRequest, width: str
) -> None:
    visit: Visit = request.getfixturevalue(width)
    weights = {}
    for name, path in PAGES.items():
        visit.goto(_base(examples_stack) + path)
        weights[name] = visit.weight()
        overflow = visit.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is {overflow}px wider than the {width} screen"
        visit.screenshot(f"{width}-{name}", readme=f"{width}-{name}" in README_SHOTS)
        assert visit.axe() == [], name
    assert max(weights.values()) < MAX_PAGE_BYTES, weights
    print(f"page weights ({width}, bytes incl. CSS and icon):", weights)
    visit.assert_clean()
