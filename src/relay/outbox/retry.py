"""What happens after one delivery attempt: done, tried again later, or given up.

How each answer is treated:

- 2xx: delivered.
- 400, 401, 403, 404, 422: failed at once. The subscriber read the request and turned it down
  (malformed, bad signature, no such endpoint, unprocessable), and the same bytes sent later get
  the same answer. RouteStripe, one of the vendors, treats the first four as final too.
- 410: the subscriber asks to be removed (Standard Webhooks); the subscription is disabled.
- Everything else is retried on the schedule: no answer at all (timeout, connection error, a
  destination refused by core/netguard.py), 408, 409, 425, 429, every 5xx, every 3xx
  (redirects are not followed, see sender.py) and the remaining 4xx such as 405, 413 or 415.
  Those usually come from a proxy, a gateway or a half-finished deploy in front of the
  receiver rather than from the receiver judging the event, and they go away once that is
  fixed; receivers built for Svix or other Standard Webhooks senders, which retry every non-2xx
  answer, expect that. A needless retry costs a few requests; a wrong give-up loses the event.

A schedule lists the delay before each retry: after attempt k fails, attempt k + 1 comes
`schedule[k - 1]` seconds later, so the default schedule makes 10 attempts over about three
days. Each delay gets +-20 % jitter so that deliveries failed together by one outage do not all
come back at the same instant. A `Retry-After` on 429 or 503 replaces the scheduled delay,
clamped to 1 s .. 24 h and without jitter since the subscriber named the time, but it never
adds attempts beyond the schedule.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import Enum
from http import HTTPStatus

MINUTE = 60.0
HOUR = 60 * MINUTE
DAY = 24 * HOUR

DEFAULT_SCHEDULE: tuple[float, ...] = (
    5.0,
    5 * MINUTE,
    30 * MINUTE,
    2 * HOUR,
    5 * HOUR,
    10 * HOUR,
    14 * HOUR,
    20 * HOUR,
    24 * HOUR,
)
JITTER = 0.2
MAX_SCHEDULE_ENTRIES = 20
MIN_DELAY = 1.0
MAX_SCHEDULED_DELAY = 7 * DAY
MAX_RETRY_AFTER = 24 * HOUR

NOT_RETRIED = frozenset({400, 401, 403, 404, 422})
_DELTA_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
GONE = 410
HONOURS_RETRY_AFTER = frozenset({429, 503})


class Outcome(Enum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    next_attempt_at: datetime | None
    reason: str


def validate_schedule(schedule: list[float]) -> list[float]:
    if not 1 <= len(schedule) <= MAX_SCHEDULE_ENTRIES:
        raise ValueError(
            f"give between 1 and {MAX_SCHEDULE_ENTRIES} delays (seconds to wait before each "
            f"retry), got {len(schedule)}"
        )
    for position, delay in enumerate(schedule, start=1):
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not MIN_DELAY <= delay <= MAX_SCHEDULED_DELAY
        ):
            raise ValueError(
                f"delay {position} is {delay!r}; each delay must be between {MIN_DELAY:g} s and "
                f"{MAX_SCHEDULED_DELAY:g} s (7 days)"
            )
    return [float(delay) for delay in schedule]


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """Reads a Retry-After header, delta-seconds or an HTTP date; None when it cannot be read."""
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        # Decimal seconds (`2.5`) are not in RFC 9110 but are sent, and their meaning is plain.
        seconds = float(text)
    else:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - now).total_seconds()
    return min(max(seconds, MIN_DELAY), MAX_RETRY_AFTER)


def _cause(status: int | None, error: str | None) -> str:
    if status is None:
        return error or "no response"
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decide_next(
    *,
    status: int | None,
    error: str | None,
    attempts_made: int,
    schedule: Sequence[float] | None,
    retry_after: str | None,
    now: datetime,
    rng: random.Random | None = None,
) -> Decision:
    """Decides after attempt number `attempts_made` (1 for the first); `now` is UTC-aware.

    `status` is None when no complete answer came back, and `error` then says why.
    """
    if attempts_made < 1:
        raise ValueError(
            f"attempts_made counts the attempt just made, so it is >= 1, not {attempts_made}"
        )
    if status is not None and 200 <= status < 300:
        return Decision(Outcome.SUCCEEDED, None, f"succeeded ({status})")
    if status == GONE:
        return Decision(Outcome.GONE, None, "failed: 410 Gone; subscription disabled")
    if status in NOT_RETRIED:
        return Decision(Outcome.FAILED, None, f"failed: {status} is not retried")
    delays = DEFAULT_SCHEDULE if schedule is None else schedule
    if attempts_made > len(delays):
        return Decision(
            Outcome.FAILED,
            None,
            f"failed: retry schedule exhausted after {attempts_made} attempts",
        )
    delay = retry_after_seconds(retry_after, now=now) if status in HONOURS_RETRY_AFTER else None
    if delay is None:
        uniform = rng.uniform if rng is not None else random.uniform
        delay = delays[attempts_made - 1] * uniform(1 - JITTER, 1 + JITTER)
    next_attempt_at = now + timedelta(seconds=delay)
    return Decision(
        Outcome.RETRY,
        next_attempt_at,
        f"retry at {_timestamp(next_attempt_at)} (attempt {attempts_made + 1} of "
        f"{len(delays) + 1}): {_cause(status, error)}",
    )
