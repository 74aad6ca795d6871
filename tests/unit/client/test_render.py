"""Tables for people: an id is never wrapped, so it can be copied whole."""

from __future__ import annotations

import io
from typing import Any

import pytest
from pydantic import BaseModel
from rich.console import Console

from relay.client import commands
from relay.client.commands import _SUBSCRIPTION_COLUMNS, stats_tables
from relay.client.render import milliseconds, table
from relay.deliveries.schemas import DeliveryOut
from relay.events.schemas import EventListItem
from relay.ingest.endpoints import RequestLogOut
from relay.jobs.schemas import JobOut
from relay.sources.schemas import SourceOut
from relay.subscriptions.schemas import SubscriptionOut

IDS = [f"dlv_01M8TQKN9E3VSE4KX3N9MKHN{n:02d}" for n in range(3)]


def test_ids_are_never_wrapped_in_a_narrow_terminal() -> None:
    rows = [
        {"id": delivery, "event": "evt_01M8TQKMZD39Z56CK64ZHQWJCM", "note": "word " * 30}
        for delivery in IDS
    ]
    columns = (
        ("ID", lambda r: r["id"]),
        ("EVENT", lambda r: r["event"]),
        ("NOTE", lambda r: r["note"]),
    )
    for width in (70, 80, 100):
        out = io.StringIO()
        Console(file=out, width=width).print(table(rows, columns))
        text = out.getvalue()
        for delivery in IDS:
            assert delivery in text, (width, text)
        assert "evt_01M8TQKMZD39Z56CK64ZHQWJCM" in text


@pytest.mark.parametrize(
    ("columns", "model"),
    [
        (commands._SOURCE_COLUMNS, SourceOut),
        (commands._SUBSCRIPTION_COLUMNS, SubscriptionOut),
        (commands._EVENT_COLUMNS, EventListItem),
        (commands._REQUEST_COLUMNS, RequestLogOut),
        (commands._JOB_COLUMNS, JobOut),
        (commands._DELIVERY_COLUMNS, DeliveryOut),
    ],
)
def test_every_list_keeps_its_ids_whole_from_100_columns(
    columns: Any, model: type[BaseModel]
) -> None:
    # The rows are the API's own examples, so the table sees what the API answers.
    row = model.model_json_schema()["examples"][0]
    ids = [value for value in row.values() if isinstance(value, str) and value[3:4] == "_"]
    ids += [row["source"]["id"]] if model is EventListItem else []
    assert ids
    for width in (100, 120, 160):
        out = io.StringIO()
        Console(file=out, width=width).print(table([row, row], columns))
        shown = [value for value in ids if value in out.getvalue()]
        # Every id the table shows is whole: none is cut over two lines.
        for value in ids:
            head = value[:12]
            if head in out.getvalue():
                assert value in shown, (model.__name__, width, out.getvalue())
        assert row["id"] in shown, (model.__name__, width)


def test_a_subscription_shows_the_liveness_the_relay_gives() -> None:
    # The breaker's `state` says active; what the relay says it does is what the table shows.
    subscription = {
        "id": "sub_01M8TQKMY21DAW0FK6N0VHBMGD",
        "url": "https://example.com/hooks",
        "event_types": ["order.*"],
        "active": False,
        "state": "active",
        "liveness": "paused",
        "consecutive_failures": 0,
    }
    out = io.StringIO()
    Console(file=out, width=160).print(table([subscription], _SUBSCRIPTION_COLUMNS))
    assert "paused" in out.getvalue()
    assert " active " not in out.getvalue()


def _window(latency_p50_ms: float | None, latency_p99_ms: float | None) -> dict[str, object]:
    return {
        "received": 1234,
        "delivered": 1200,
        "failed": 4,
        "pending": 30,
        "latency_p50_ms": latency_p50_ms,
        "latency_p99_ms": latency_p99_ms,
    }


def _subscription(
    subscription_id: str, url: str, *, state: str = "active", active: bool = True
) -> dict[str, object]:
    deleted = url.endswith("/gone")
    return {
        "subscription_id": subscription_id,
        "url": url,
        "state": state,
        "active": active,
        "deleted": deleted,
        "liveness": "deleted" if deleted else state if active else "paused",
        "pending_now": 3,
        "last_hour": _window(12.4, 1412.0),
        "last_day": _window(396904.059, None),
    }


def test_stats_show_units_urls_and_states_with_headers_whole() -> None:
    numbers = {
        "generated_at": "2024-05-01T12:00:00+00:00",
        "overall": {
            "pending_now": 12,
            "last_hour": _window(12.4, 1412.0),
            "last_day": _window(396904.059, None),
        },
        "subscriptions": [
            _subscription("sub_01M8TQKMY21DAW0FK6N0VHBMG1", "https://a.example.com/hooks"),
            _subscription(
                "sub_01M8TQKMY21DAW0FK6N0VHBMG2", "https://b.example.com/h", active=False
            ),
            _subscription(
                "sub_01M8TQKMY21DAW0FK6N0VHBMG3", "https://c.example.com/h", state="degraded"
            ),
            _subscription(
                "sub_01M8TQKMY21DAW0FK6N0VHBMG4", "https://d.example.com/h", state="disabled"
            ),
            _subscription("sub_01M8TQKMY21DAW0FK6N0VHBMG5", "https://e.example.com/gone"),
        ],
    }
    for width in (100, 120, 160):
        out = io.StringIO()
        printer = Console(file=out, width=width)
        for part in stats_tables(numbers):
            printer.print(part)
        text = out.getvalue()
        for header in ("PENDING NOW", "DELIVERED", "P50", "P99", "RECEIVED", "FAILED"):
            assert header in text, (width, text)
        for n in range(1, 6):
            assert f"sub_01M8TQKMY21DAW0FK6N0VHBMG{n}" in text, (width, text)
        assert "396904" not in text
        for shown in ("12 ms", "1.4 s", "6.6 min", "1,234"):
            assert shown in text, (width, shown, text)
        for state in ("paused", "degraded", "disabled", "deleted"):
            assert state in text, (width, text)
    assert "https://a.example.com/hooks" in text


def test_durations_read_as_people_say_them() -> None:
    assert [milliseconds(value) for value in (None, 0.4, 12.4, 999, 1412, 12_500, 396_904)] == [
        "-",
        "0 ms",
        "12 ms",
        "999 ms",
        "1.4 s",
        "12 s",
        "6.6 min",
    ]
    assert milliseconds(2.5 * 3_600_000) == "2.5 h"
