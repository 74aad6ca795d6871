"""`relay tail`'s lines for people: outcomes coloured on a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from relay.client.tail import styled

ATTEMPT = {
    "kind": "attempt",
    "started_at": "2024-05-01T12:00:00.123000+00:00",
    "event_type": "order.created",
    "source": "rs",
    "event_id": "evt_01M8TQKMZD39Z56CK64ZHQWJCM",
    "subscription_id": "sub_01M8TQKMY21DAW0FK6N0VHBMGD",
    "attempt_number": 1,
    "response_status": 200,
    "error_class": None,
    "duration_ms": 12,
}


def _printed(item: dict[str, object], *, terminal: bool) -> str:
    out = io.StringIO()
    Console(file=out, force_terminal=terminal, color_system="standard" if terminal else None).print(
        styled(item), soft_wrap=True
    )
    return out.getvalue()


def test_outcomes_are_coloured_on_a_terminal_and_plain_off_it() -> None:
    succeeded = _printed({**ATTEMPT, "outcome": "succeeded"}, terminal=True)
    failed = _printed({**ATTEMPT, "outcome": "failed", "response_status": 500}, terminal=True)
    assert "\x1b[32msucceeded\x1b[0m" in succeeded
    assert "\x1b[31mfailed\x1b[0m" in failed
    plain = _printed({**ATTEMPT, "outcome": "succeeded"}, terminal=False)
    assert "\x1b[" not in plain
    assert plain.startswith("12:00:00.123  succeeded order.created")
