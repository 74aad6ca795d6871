"""The CLI client's pure parts: times, error reasons, and how tail turns polls into lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from relay.client.http import ApiError, RelayClient, parse_moment
from relay.client.tail import LOOKBACK, PAGE, Tail, attempt_line, event_line

NOW = datetime(2026, 2, 4, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("2h", NOW - timedelta(hours=2)),
        ("1d", NOW - timedelta(days=1)),
        ("2026-02-01T10:00:00Z", datetime(2026, 2, 1, 10, tzinfo=UTC)),
        ("2026-02-01T10:00:00", datetime(2026, 2, 1, 10, tzinfo=UTC)),
        ("2026-02-01T11:00:00+01:00", datetime(2026, 2, 1, 10, tzinfo=UTC)),
    ],
)
def test_moments_absolute_and_relative(given: str, expected: datetime) -> None:
    assert datetime.fromisoformat(parse_moment(given, now=NOW)) == expected


@pytest.mark.parametrize("given", ["yesterday", "5x", "-2h", ""])
def test_a_moment_that_is_not_one_says_which_forms_work(given: str) -> None:
    with pytest.raises(ApiError, match=r"ISO 8601 .* 30m, 2h, 1d"):
        parse_moment(given, now=NOW)


def client_answering(status: int, body: bytes, content_type: str = "application/json") -> Any:
    transport = httpx.MockTransport(
        lambda _request: httpx.Response(
            status, content=body, headers={"content-type": content_type}
        )
    )
    return RelayClient("http://relay.test/", "token", transport=transport)


def test_api_errors_carry_the_relays_message_and_status() -> None:
    client = client_answering(409, b'{"error": {"code": "conflict", "message": "still pending"}}')
    with pytest.raises(ApiError) as caught:
        client.get("/v1/x")
    assert str(caught.value) == "still pending (HTTP 409)"


def test_an_error_without_the_json_shape_still_gives_one_line() -> None:
    client = client_answering(502, b"<html>bad gateway</html>", "text/html")
    with pytest.raises(ApiError) as caught:
        client.get("/v1/x")
    assert str(caught.value) == "the relay answered HTTP 502 Bad Gateway"


def test_none_params_are_left_out_and_204_is_none() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    client = RelayClient("http://relay.test", "t0k", transport=httpx.MockTransport(answer))
    assert client.get("/v1/events", type=None, limit=5) is None
    assert str(seen[0].url) == "http://relay.test/v1/events?limit=5"
    assert seen[0].headers["authorization"] == "Bearer t0k"


class FakeActivity:
    """Answers GET /v1/activity from a script of (server_time, events, attempts)."""

    def __init__(self, answers: list[tuple[datetime, list[Any], list[Any]]]) -> None:
        self.answers = answers
        self.asked: list[dict[str, Any]] = []

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        assert path == "/v1/activity"
        self.asked.append(params)
        server_time, events, attempts = self.answers.pop(0)
        return {"server_time": server_time.isoformat(), "events": events, "attempts": attempts}


def event(n: int, at: datetime) -> dict[str, Any]:
    return {
        "id": f"evt_{n:026d}",
        "type": "order.created",
        "source": "rs",
        "subject_kind": "order",
        "subject_id": str(n),
        "received_at": at.isoformat(),
    }


def test_tail_shows_only_what_happens_after_it_started_and_each_thing_once() -> None:
    before, first, second = event(1, NOW - timedelta(seconds=2)), event(2, NOW), event(3, NOW)
    fake = FakeActivity(
        [
            (NOW, [], []),
            (NOW + timedelta(seconds=1), [before, first], []),
            # first again (the look-back overlaps), second committed late with an older time
            (NOW + timedelta(seconds=2), [before, first, second], []),
        ]
    )
    tail = Tail(fake, {"type": None})  # type: ignore[arg-type]
    assert [item["id"] for item in tail.poll()] == [first["id"]]
    assert [item["id"] for item in tail.poll()] == [second["id"]]
    assert fake.asked[2]["since"] == (NOW + timedelta(seconds=1) - LOOKBACK).isoformat()


def test_tail_after_a_full_page_continues_from_its_end() -> None:
    page = [event(n, NOW + timedelta(milliseconds=n)) for n in range(PAGE)]
    fake = FakeActivity([(NOW, [], []), (NOW + timedelta(minutes=5), page, []), (NOW, [], [])])
    tail = Tail(fake, {})  # type: ignore[arg-type]
    assert len(tail.poll()) == PAGE
    tail.poll()
    last = NOW + timedelta(milliseconds=PAGE - 1)
    assert fake.asked[2]["since"] == (last - LOOKBACK).isoformat()


def test_tail_lines_hold_time_type_source_ids_and_status() -> None:
    line = event_line(event(7, NOW))
    assert line.startswith("16:00:00.000  event ")
    assert "order.created" in line
    assert " rs " in line
    assert "evt_" in line
    attempt = {
        "id": "att_1",
        "event_id": "evt_1",
        "event_type": "order.created",
        "source": "rs",
        "subscription_id": "sub_1",
        "attempt_number": 2,
        "outcome": "pending",
        "response_status": None,
        "error_class": "ConnectError",
        "started_at": NOW.isoformat(),
        "duration_ms": 12,
    }
    assert attempt_line(attempt).endswith("evt_1  -> sub_1 #2 ConnectError 12ms")
