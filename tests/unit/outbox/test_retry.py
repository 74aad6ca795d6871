from __future__ import annotations

import random
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.outbox.retry import (
    DEFAULT_SCHEDULE,
    NOT_RETRIED,
    Decision,
    Outcome,
    decide_next,
    validate_schedule,
)

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
DEFAULT_DELAYS = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]


class NoJitter(random.Random):
    """Returns the middle of the jitter range and remembers the range it was asked for."""

    def __init__(self) -> None:
        super().__init__(0)
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return (a + b) / 2


def decide(
    status: int | None,
    *,
    attempts_made: int = 1,
    error: str | None = None,
    schedule: Sequence[float] | None = None,
    retry_after: str | None = None,
    rng: random.Random | None = None,
) -> Decision:
    return decide_next(
        status=status,
        error=error,
        attempts_made=attempts_made,
        schedule=schedule,
        retry_after=retry_after,
        now=NOW,
        rng=rng or NoJitter(),
    )


def delay_of(decision: Decision) -> float:
    assert decision.next_attempt_at is not None
    return (decision.next_attempt_at - NOW).total_seconds()


def test_default_schedule_is_the_documented_one() -> None:
    assert list(DEFAULT_SCHEDULE) == DEFAULT_DELAYS


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_succeeds(status: int) -> None:
    decision = decide(status, attempts_made=10)

    assert decision == Decision(Outcome.SUCCEEDED, None, f"succeeded ({status})")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_final_4xx_fail_at_once(status: int) -> None:
    decision = decide(status)

    assert decision == Decision(Outcome.FAILED, None, f"failed: {status} is not retried")


def test_410_means_gone() -> None:
    decision = decide(410, retry_after="10")

    assert decision == Decision(Outcome.GONE, None, "failed: 410 Gone; subscription disabled")


@pytest.mark.parametrize(
    "status",
    [
        *(100, 199, 300, 301, 302, 304, 307, 308),
        *(405, 408, 409, 413, 415, 418, 425, 429, 451, 499),
        *(500, 501, 502, 503, 504, 507, 599, 600, 999),
    ],
)
def test_every_other_status_is_retried(status: int) -> None:
    decision = decide(status)

    assert decision.outcome is Outcome.RETRY
    assert delay_of(decision) == 5


def test_retry_reason_names_time_attempt_and_cause() -> None:
    decision = decide(503)

    assert decision.reason == (
        "retry at 2026-11-22T10:00:05Z (attempt 2 of 10): 503 Service Unavailable"
    )


def test_unknown_status_is_named_by_its_number() -> None:
    assert decide(599).reason.endswith("(attempt 2 of 10): 599")


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("timeout: no complete answer within 10 s", "timeout: no complete answer within 10 s"),
        (
            "ConnectError: [Errno 111] Connection refused",
            "ConnectError: [Errno 111] Connection refused",
        ),
        (None, "no response"),
    ],
)
def test_no_answer_is_retried_with_the_error_as_cause(error: str | None, cause: str) -> None:
    decision = decide(None, error=error, attempts_made=3)

    assert decision.outcome is Outcome.RETRY
    assert delay_of(decision) == 1800
    assert decision.reason == f"retry at 2026-11-22T10:30:00Z (attempt 4 of 10): {cause}"


@pytest.mark.parametrize(("attempts_made", "delay"), list(enumerate(DEFAULT_DELAYS, start=1)))
def test_default_schedule_indexing(attempts_made: int, delay: float) -> None:
    decision = decide(500, attempts_made=attempts_made)

    assert delay_of(decision) == delay
    assert f"(attempt {attempts_made + 1} of 10)" in decision.reason


@pytest.mark.parametrize("status", [None, 500, 429])
def test_tenth_attempt_exhausts_the_default_schedule(status: int | None) -> None:
    decision = decide(status, attempts_made=10, error="timeout", retry_after="5")

    assert decision == Decision(
        Outcome.FAILED, None, "failed: retry schedule exhausted after 10 attempts"
    )


@given(st.integers(0, 2**32), st.integers(1, 9))
def test_jitter_stays_within_20_percent(seed: int, attempts_made: int) -> None:
    base = DEFAULT_DELAYS[attempts_made - 1]

    delay = delay_of(decide(502, attempts_made=attempts_made, rng=random.Random(seed)))

    assert base * 0.8 <= delay <= base * 1.2


def test_jitter_spreads_retries_and_is_reproducible_with_a_seed() -> None:
    delays = [delay_of(decide(502, rng=random.Random(seed))) for seed in range(20)]
    again = [delay_of(decide(502, rng=random.Random(seed))) for seed in range(20)]

    assert delays == again
    assert len(set(delays)) == 20


def test_jitter_is_drawn_from_plus_minus_20_percent() -> None:
    rng = NoJitter()

    decide(500, rng=rng)

    assert rng.ranges == [(0.8, 1.2)]


def test_without_an_rng_the_module_random_is_used() -> None:
    decision = decide_next(
        status=500, error=None, attempts_made=1, schedule=None, retry_after=None, now=NOW
    )

    assert 4 <= delay_of(decision) <= 6


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [
        ("120", 120),
        (" 120 ", 120),
        ("2.5", 2.5),
        ("0.5", 1),
        ("86399.75", 86399.75),
        ("1", 1),
        ("0", 1),
        ("86400", 86400),
        ("86401", 86400),
        ("99999999999999999999", 86400),
        ("9" * 5000, 86400),
        (format_datetime(NOW + timedelta(minutes=2), usegmt=True), 120),
        ("Sun, 22 Nov 2026 10:02:00 GMT", 120),
        ("Sun, 22 Nov 2026 11:02:00 +0100", 120),
        ("Sun, 22 Nov 2026 10:02:00 -0000", 120),
        ("Sun, 22 Nov 2026 09:00:00 GMT", 1),
        ("Tue, 22 Dec 2026 10:00:00 GMT", 86400),
    ],
)
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_overrides_the_delay_clamped_to_1s_24h(
    status: int, retry_after: str, delay: float
) -> None:
    rng = NoJitter()

    decision = decide(status, attempts_made=4, retry_after=retry_after, rng=rng)

    assert decision.outcome is Outcome.RETRY
    assert delay_of(decision) == delay
    assert rng.ranges == []


@pytest.mark.parametrize(
    "retry_after",
    [
        "",
        "soon",
        "-5",
        "1.",
        ".5",
        "1e3",
        "1,5",
        "12abc",
        "Sun, 99 Nov 2026 10:02:00 GMT",
        "Sun, 22 Nov 99999 10:02",
    ],
)
def test_unparseable_retry_after_is_ignored(retry_after: str) -> None:
    assert delay_of(decide(429, attempts_made=2, retry_after=retry_after)) == 300


@pytest.mark.parametrize("status", [500, 502, 408, None])
def test_retry_after_counts_only_on_429_and_503(status: int | None) -> None:
    assert delay_of(decide(status, attempts_made=2, retry_after="7")) == 300


@given(st.text(max_size=40))
def test_any_retry_after_yields_a_retry_within_bounds(retry_after: str) -> None:
    decision = decide(429, retry_after=retry_after)

    assert decision.outcome is Outcome.RETRY
    assert 1 <= delay_of(decision) <= 86400


def test_custom_schedule_replaces_the_default() -> None:
    schedule = [10.0, 20.0]

    first = decide(500, attempts_made=1, schedule=schedule)
    second = decide(500, attempts_made=2, schedule=schedule)
    third = decide(500, attempts_made=3, schedule=schedule)

    assert delay_of(first) == 10
    assert first.reason.startswith("retry at 2026-11-22T10:00:10Z (attempt 2 of 3)")
    assert delay_of(second) == 20
    assert third == Decision(
        Outcome.FAILED, None, "failed: retry schedule exhausted after 3 attempts"
    )


@given(st.integers(0, 2**32))
def test_custom_schedule_is_jittered_too(seed: int) -> None:
    delay = delay_of(decide(500, schedule=[100.0], rng=random.Random(seed)))

    assert 80 <= delay <= 120


def test_attempts_made_must_count_the_attempt_just_made() -> None:
    with pytest.raises(ValueError, match="attempts_made counts the attempt just made"):
        decide(500, attempts_made=0)


@pytest.mark.parametrize(
    "schedule",
    [[1], [604800], [1, 2.5, 604800], [60] * 20, [5, 300, 1800]],
)
def test_validate_schedule_accepts_1_to_20_delays_of_1s_to_7_days(
    schedule: list[float],
) -> None:
    validated = validate_schedule(schedule)

    assert validated == schedule
    assert all(type(delay) is float for delay in validated)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ([], "give between 1 and 20 delays (seconds to wait before each retry), got 0"),
        ([60] * 21, "give between 1 and 20 delays (seconds to wait before each retry), got 21"),
        ([0.5], "delay 1 is 0.5; each delay must be between 1 s and 604800 s (7 days)"),
        ([10, 0], "delay 2 is 0; each delay must be between 1 s"),
        ([10, -5], "delay 2 is -5;"),
        ([604801], "delay 1 is 604801;"),
        ([float("nan")], "delay 1 is nan;"),
        ([float("inf")], "delay 1 is inf;"),
        ([True], "delay 1 is True;"),
        (["60"], "delay 1 is '60';"),
    ],
)
def test_validate_schedule_rejects_with_the_bounds(schedule: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_schedule(schedule)


def test_every_status_is_decided_as_the_delivery_docs_table_says() -> None:
    """docs/delivery.md's retry table and the code are one table: its "failed at once" row is
    NOT_RETRIED, and every status from 100 to 599 gets the decision its row names."""
    docs = (Path(__file__).resolve().parents[3] / "docs" / "delivery.md").read_text()
    rows = [line.split("|")[1:3] for line in docs.splitlines() if line.count("|") == 3]
    [failed_row] = [answer for answer, what in rows if what.strip().startswith("failed at once")]
    assert {int(code) for code in re.findall(r"\d{3}", failed_row)} == NOT_RETRIED
    [retried_row] = [answer for answer, _ in rows if answer.strip().startswith("every other 4xx")]
    for status in range(100, 600):
        outcome = decide(status).outcome
        if 200 <= status < 300:
            assert outcome is Outcome.SUCCEEDED, status
        elif status == 410:
            assert outcome is Outcome.GONE
        elif status in NOT_RETRIED:
            assert outcome is Outcome.FAILED, status
        else:
            assert outcome is Outcome.RETRY, status
            if 400 <= status < 500 and status in HTTPStatus._value2member_map_:
                assert str(status) in retried_row, status
