from __future__ import annotations

from datetime import UTC, datetime, timedelta

from relay.console.charts import HEIGHT, minute_chart
from relay.stats.repository import MinuteCount

NOW = datetime(2026, 12, 2, 10, 49, 40, tzinfo=UTC)


def test_the_minute_under_way_is_the_last_bar_and_the_oldest_minute_the_first() -> None:
    rows = [
        MinuteCount(minute=NOW.replace(second=0), status="failed", deliveries=3),
        MinuteCount(minute=NOW.replace(second=0), status="succeeded", deliveries=1),
        MinuteCount(
            minute=NOW.replace(second=0) - timedelta(minutes=1439), status="pending", deliveries=2
        ),
        # Older than the window: left out.
        MinuteCount(
            minute=NOW.replace(second=0) - timedelta(minutes=1440), status="failed", deliveries=9
        ),
    ]
    chart = minute_chart(rows, now=NOW, window=timedelta(hours=24))
    assert chart.width == 1440
    assert chart.totals == {"succeeded": 1, "failed": 3, "pending": 2}
    assert chart.peak == 4
    last = [bar for bar in chart.bars if bar.x == 1439]
    assert [(bar.outcome, bar.height) for bar in last] == [("succeeded", 25.0), ("failed", 75.0)]
    # Stacked: succeeded at the bottom, failed on top of it, reaching the top at the peak.
    assert last[0].y == HEIGHT - 25.0
    assert last[1].y == 0
    assert [(bar.x, bar.outcome) for bar in chart.bars if bar.x == 0] == [(0, "pending")]
