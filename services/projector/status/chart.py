"""Transfers over time against the target, laid out for an SVG drawn on the server (no script)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

from services.domain.agreements import month_of
from services.domain.state import AgreementPart

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 36, 16, 36


@dataclass(frozen=True, slots=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True, slots=True)
class MonthRow:
    """One month of the data table beside the chart."""

    month: str
    count: int
    cumulative: int
    approximate: bool


@dataclass(frozen=True, slots=True)
class Chart:
    """Coordinates and labels of the chart; the template only draws them."""

    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    line: str
    dots: list[tuple[float, float]]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    target_y: float | None
    target_label: str | None
    target_by_x: float | None
    description: str
    rows: list[MonthRow]


def _month_index(month: str) -> int:
    year, mon = month.split("-")
    return int(year) * 12 + int(mon) - 1


def _month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _nice_step(top: float, ticks: int = 4) -> int:
    raw = max(top / ticks, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    return int(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _day(moment: date | datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.date().isoformat() if isinstance(moment, datetime) else moment.isoformat()


def transfers_chart(a: AgreementPart) -> Chart | None:
    """The cumulative transfers per month and the announced target; None when there is neither."""
    monthly = {month: sum(b.count for b in buckets.values()) for month, buckets in a.months.items()}
    approximate = {month: any(b.approximate for b in buckets.values()) for month, buckets in a.months.items()}
    if not monthly and a.transfer_target is None:
        return None
    anchors = [_month_index(m) for m in monthly]
    anchors.extend(_month_index(month_of(m)) for m in (a.in_force_on, a.signed_on, a.transfer_target_by) if m)
    first, last = min(anchors), max(anchors)
    if first == last:
        first, last = first - 1, last + 1

    rows: list[MonthRow] = []
    running = 0
    for index in range(first, last + 1):
        month = _month_name(index)
        if month in monthly:
            running += monthly[month]
            rows.append(MonthRow(month, monthly[month], running, approximate[month]))
    top = max([running, *(r.cumulative for r in rows), a.transfer_target or 0, 1])
    step = _nice_step(top * 1.1)
    y_max = step * math.ceil(top * 1.1 / step)

    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(index: float) -> float:
        return round(LEFT + (index - first) / (last - first) * plot_w, 1)

    def y(value: float) -> float:
        return round(TOP + plot_h - value / y_max * plot_h, 1)

    # A step line: flat at the running total until the month whose report raises it.
    path = [f"M{x(first)},{y(0)}"]
    dots: list[tuple[float, float]] = []
    for row in rows:
        at = x(_month_index(row.month))
        path.append(f"H{at}V{y(row.cumulative)}")
        dots.append((at, y(row.cumulative)))
    if not rows or _month_index(rows[-1].month) < last:
        path.append(f"H{x(last)}")

    every = max(1, math.ceil((last - first + 1) / 7))
    x_ticks = [Tick(x(i), _month_name(i)) for i in range(first, last + 1, every)]
    y_ticks = [Tick(y(v), f"{v:,}") for v in range(0, y_max + 1, step)]

    target_label = None
    target_y = None
    target_by_x = None
    if a.transfer_target is not None:
        target_y = y(a.transfer_target)
        by = _day(a.transfer_target_by)
        target_label = f"target {a.transfer_target:,}" + (f" by {by}" if by else "")
        if a.transfer_target_by is not None:
            target_by_x = x(_month_index(month_of(a.transfer_target_by)))
    total = f"{a.transfers_total:,}" + (" (approximate)" if a.transfers_approximate else "")
    description = (
        f"Cumulative transfers per month from {_month_name(first)} to {_month_name(last)}: {total} in all"
        + (f", against a {target_label}." if target_label else ".")
    )
    return Chart(
        width=WIDTH, height=HEIGHT, plot_left=LEFT, plot_right=WIDTH - RIGHT, plot_top=TOP,
        plot_bottom=TOP + plot_h, line="".join(path), dots=dots, x_ticks=x_ticks, y_ticks=y_ticks,
        target_y=target_y, target_label=target_label, target_by_x=target_by_x, description=description, rows=rows,
    )
