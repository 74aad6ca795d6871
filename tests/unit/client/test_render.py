"""Tables for people: an id is never wrapped, so it can be copied whole."""

from __future__ import annotations

import io

from rich.console import Console

from relay.client.commands import _SUBSCRIPTION_COLUMNS
from relay.client.render import table

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


def test_a_paused_subscription_says_paused() -> None:
    subscription = {
        "id": "sub_01M8TQKMY21DAW0FK6N0VHBMGD",
        "url": "https://example.com/hooks",
        "event_types": ["order.*"],
        "active": False,
        "state": "active",
        "consecutive_failures": 0,
    }
    out = io.StringIO()
    Console(file=out, width=160).print(table([subscription], _SUBSCRIPTION_COLUMNS))
    assert "paused" in out.getvalue()
    assert " active " not in out.getvalue()
