"""The transfers chart: a step line of the running total against the target, from the folded months."""

from __future__ import annotations

from datetime import date

from services.domain.state import AgreementPart, MonthBucket
from services.projector.status.chart import transfers_chart


def test_no_transfers_and_no_target_draws_no_chart() -> None:
    assert transfers_chart(AgreementPart(signed_on=date(2019, 9, 20))) is None


def test_running_total_climbs_month_by_month_and_the_target_sits_above_it() -> None:
    part = AgreementPart(
        signed_on=date(2019, 7, 31), transfer_target=2000, transfer_target_by=date(2020, 12, 31),
        transfers_total=900, transfers_approximate=True,
        months={"2019-11": {"HN": MonthBucket(count=100)}, "2020-03": {"SV": MonthBucket(count=800, approximate=True)}},
    )
    chart = transfers_chart(part)
    assert chart is not None
    assert [(r.month, r.count, r.cumulative, r.approximate) for r in chart.rows] == [
        ("2019-11", 100, 100, False), ("2020-03", 800, 900, True)]
    heights = [y for _, y in chart.dots]
    assert heights[0] > heights[1]  # SVG y grows downwards: the later total is higher up
    assert chart.target_y is not None
    assert chart.target_y < heights[1]
    assert chart.target_label == "target 2,000 by 2020-12-31"
    assert chart.x_ticks[0].label == "2019-07"
    assert chart.x_ticks[-1].at <= chart.plot_right
    assert "900 (approximate)" in chart.description
    assert chart.y_ticks[-1].label.replace(",", "").isdigit()
    assert int(chart.y_ticks[-1].label.replace(",", "")) >= 2000


def test_a_target_alone_is_drawn_with_a_flat_zero_line() -> None:
    chart = transfers_chart(AgreementPart(signed_on=date(2019, 9, 20), transfer_target=2000,
                                          transfer_target_by=date(2020, 12, 31)))
    assert chart is not None
    assert chart.rows == []
    assert chart.dots == []
    left, bottom, right = (float(v) for v in (chart.plot_left, chart.plot_bottom, chart.plot_right))
    assert chart.line == f"M{left},{bottom}H{right}"
