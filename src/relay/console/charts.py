"""The dashboard's chart as data for inline SVG: drawn by the server, so no chart library."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup

from relay.stats.repository import MinuteCount

HEIGHT = 100
# Stacked bottom to top; the colours are the stylesheet's classes of the same names.
OUTCOMES = ("succeeded", "failed", "pending")


@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    y: float
    height: float
    outcome: str
    count: int


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    totals: dict[str, int]
    start: datetime
    end: datetime

    def svg_bars(self) -> Markup:
        """The bars as SVG elements. A day has up to 4,320 of them: written here in one pass
        rather than by the template, whose escaping of every number cost more than the
        overview's queries. Only numbers and the fixed outcome names go in."""
        return Markup(  # noqa: S704 (numbers and the names in OUTCOMES only)
            "".join(
                f'<rect class="{bar.outcome}" x="{bar.x:d}" y="{bar.y:g}" width="1" '
                f'height="{bar.height:g}"><title>{bar.count:d} {bar.outcome}</title></rect>'
                for bar in self.bars
            )
        )


def minute_chart(rows: list[MinuteCount], *, now: datetime, window: timedelta) -> Chart:
    minutes = int(window.total_seconds() // 60)
    # The last bar is the minute under way.
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    buckets: dict[int, dict[str, int]] = {}
    totals = dict.fromkeys(OUTCOMES, 0)
    for row in rows:
        index = int((row.minute - start).total_seconds() // 60)
        if not 0 <= index < minutes or row.status not in totals:
            continue
        buckets.setdefault(index, {})[row.status] = row.deliveries
        totals[row.status] += row.deliveries
    peak = max((sum(counts.values()) for counts in buckets.values()), default=0)
    bars = []
    for index, counts in sorted(buckets.items()):
        base = float(HEIGHT)
        for outcome in OUTCOMES:
            count = counts.get(outcome, 0)
            if not count:
                continue
            height = HEIGHT * count / peak
            base -= height
            bars.append(
                Bar(
                    x=index, y=round(base, 2), height=round(height, 2), outcome=outcome, count=count
                )
            )
    return Chart(
        width=minutes, height=HEIGHT, bars=bars, peak=peak, totals=totals, start=start, end=now
    )
