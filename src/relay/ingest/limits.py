"""Inbound limits of the ingest: per-source rate limiting. (The limits every route shares, on
heads, bodies and connections, are in relay/core/serving.py.)

Rate limiting keeps one noisy vendor from starving the others. It is a token bucket per source,
held in the memory of each `relay serve` process: refilled at the source's
`rate_limit_per_second`, holding at most one second of it (at least one request). It costs no
database round trip, which matters because the point is to shed load cheaply; the price is that
N API processes behind a load balancer together admit up to N times the limit. The number of
buckets is bounded by the number of sources, not by the traffic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import State


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class SourceRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.buckets: dict[str, _Bucket] = {}

    def retry_after(self, source_id: str, rate: float | None) -> int:
        """Takes one request from the source's bucket. Returns 0 when it may pass, else the
        whole seconds (at least 1) after which a retry will be let through."""
        if not rate:
            return 0
        now = self.clock()
        capacity = max(1.0, rate)
        bucket = self.buckets.get(source_id)
        if bucket is None:
            bucket = self.buckets[source_id] = _Bucket(tokens=capacity, updated=now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / rate))


def limiter_of(state: State) -> SourceRateLimiter:
    """The app's limiter, created on first use so the app factory needs no knowledge of it."""
    limiter: SourceRateLimiter | None = getattr(state, "source_rate_limiter", None)
    if limiter is None:
        limiter = SourceRateLimiter()
        state.source_rate_limiter = limiter
    return limiter
