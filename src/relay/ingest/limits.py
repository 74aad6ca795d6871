"""Inbound limits: per-source rate limiting, and the HTTP server's guard on request heads.

Rate limiting keeps one noisy vendor from starving the others. It is a token bucket per source,
held in the memory of each `relay serve` process: refilled at the source's
`rate_limit_per_second`, holding at most one second of it (at least one request). It costs no
database round trip, which matters because the point is to shed load cheaply; the price is that
N API processes behind a load balancer together admit up to N times the limit. The number of
buckets is bounded by the number of sources, not by the traffic.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import State
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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


_HEAD_END = b"\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, plus the limits it lacks on the request head.

    uvicorn bounds neither how long a client may take to send its headers (a slow-loris client
    holds a connection forever by sending a byte now and then) nor how many headers it sends
    or how large they are. Here the line and headers must arrive within `head_timeout`, and are
    refused with 431 past `max_header_count` headers or `max_header_bytes` bytes, before the
    parser buffers them. The body is bounded by the ingest endpoint itself.
    """

    head_timeout: float = 10.0
    max_header_count: int = 100
    max_header_bytes: int = 32 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            end = data.find(_HEAD_END)
            self._head_bytes += len(data) if end < 0 else end
            if self._head_bytes > self.max_header_bytes:
                self._refuse(f"request headers are larger than {self.max_header_bytes} bytes")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0
        # The idle wait before a keep-alive request is uvicorn's keep-alive timeout; from the
        # first byte of the request on, the head must arrive within the head timeout.
        if self._head_timer is None:
            self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count <= self.max_header_count:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_timer()
        if self._header_count > self.max_header_count:
            self._refuse(f"more than {self.max_header_count} request headers")
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def _refuse(self, reason: str) -> None:
        self._disarm_head_timer()
        if self.transport.is_closing():
            return
        body = reason.encode()
        self.transport.write(
            _TOO_LARGE + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.transport.close()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(
    *, head_timeout: float, max_header_count: int, max_header_bytes: int
) -> type[GuardedHttpProtocol]:
    """A protocol class for `uvicorn.run(http=...)` carrying these limits."""
    return type(
        "RelayHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "head_timeout": head_timeout,
            "max_header_count": max_header_count,
            "max_header_bytes": max_header_bytes,
        },
    )
