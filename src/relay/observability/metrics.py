"""The relay's Prometheus metrics, one registry per app (or per worker process).

Counters live in the process that does the work: the API process counts ingest, a dispatcher
counts attempts (`relay serve` runs both in one process). Code doing the work finds its
registry through a context variable: the app binds its own for every request and for the
dispatcher it starts; anything unbound (a `relay worker`) counts in the process default.

`relay serve --workers N` runs N such processes on one port. prometheus-client's multiprocess
mode (PROMETHEUS_MULTIPROC_DIR, set by the parent before its children start) then keeps each
process's counters in files of that directory, and a scrape, whichever process answers it, sums
them all. The queue's gauges are read from the database at scrape time, once, and never summed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

# Seconds. Attempts are bounded by the delivery timeout (15 s by default); latency also spans
# retries, so its buckets reach into hours.
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)

# prometheus-client's own variable: when it is set, every counter created afterwards keeps its
# value in a file of this directory, one file per process.
MULTIPROCESS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

BREAKER_STATES = ("closed", "open", "disabled")
_BREAKER_STATE_OF = {"active": "closed", "degraded": "open", "disabled": "disabled"}


@dataclass(frozen=True, slots=True)
class PendingBacklog:
    subscription_id: str
    pending: int
    oldest_age_seconds: float


@dataclass(frozen=True, slots=True)
class SubscriptionBreaker:
    subscription_id: str
    state: str


def status_class(status_code: int | None) -> str:
    """2xx, 4xx, 5xx... by the first digit; `network` when no answer came back."""
    return "network" if status_code is None else f"{status_code // 100}xx"


class Metrics:
    """Every metric object of one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.inbound_requests = Counter(
            "relay_inbound_requests",
            "Webhook requests received from vendors, by source slug, vendor and verdict "
            "(accepted, duplicate, ping, rejected, invalid, rate_limited).",
            ["source", "vendor", "verdict"],
            registry=self.registry,
        )
        self.events = Counter(
            "relay_events",
            "Events stored (new, not duplicates), by unified event type.",
            ["type"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "relay_delivery_attempts",
            "Delivery attempts made, by outcome (succeeded, pending = will retry, failed = "
            "gave up) and status class (2xx, 3xx, 4xx, 5xx, network).",
            ["outcome", "status_class"],
            registry=self.registry,
        )
        self.attempt_duration = Histogram(
            "relay_delivery_attempt_duration_seconds",
            "Time from sending a delivery request to the subscriber's answer or the error.",
            buckets=ATTEMPT_BUCKETS,
            registry=self.registry,
        )
        self.latency = Histogram(
            "relay_delivery_latency_seconds",
            "Time from the relay receiving an event to a subscriber answering 2xx for it, "
            "retries included.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def inbound_request(self, *, source: str, vendor: str, verdict: str) -> None:
        self.inbound_requests.labels(source=source, vendor=vendor, verdict=verdict).inc()

    def stored_events(self, types: Iterable[str]) -> None:
        for event_type in types:
            self.events.labels(type=event_type).inc()

    def attempt(
        self,
        *,
        outcome: str,
        status_code: int | None,
        duration_ms: int,
        received_at: datetime,
        finished_at: datetime,
    ) -> None:
        self.attempts.labels(outcome=outcome, status_class=status_class(status_code)).inc()
        self.attempt_duration.observe(duration_ms / 1000)
        if outcome == "succeeded":
            self.latency.observe(max((finished_at - received_at).total_seconds(), 0.0))

    def render(
        self, backlog: Sequence[PendingBacklog], breakers: Sequence[SubscriptionBreaker]
    ) -> bytes:
        """The exposition text: the counters (of every process of this `relay serve`), then
        the gauges from a fresh read of the database."""
        scrape = CollectorRegistry()
        directory = multiprocess_directory()
        if directory is None:
            scrape.register(self.registry)
        else:
            MultiProcessCollector(scrape, path=directory)  # type: ignore[no-untyped-call]
        scrape.register(QueueGauges(backlog, breakers))
        return generate_latest(scrape)


def multiprocess_directory() -> str | None:
    """Where the processes of this `relay serve` keep their counters, if they share them; the
    same test prometheus-client makes when it creates a counter."""
    return os.environ.get(MULTIPROCESS_DIRECTORY_VARIABLE) or None


class QueueGauges(Collector):
    """The queue's gauges, from one read of the database made for this scrape."""

    def __init__(
        self, backlog: Sequence[PendingBacklog], breakers: Sequence[SubscriptionBreaker]
    ) -> None:
        self.backlog = backlog
        self.breakers = breakers

    def collect(self) -> Iterable[Metric]:
        pending = GaugeMetricFamily(
            "relay_pending_deliveries",
            "Deliveries waiting to be sent (due, scheduled for a retry or held by a breaker).",
            labels=["subscription_id"],
        )
        oldest = GaugeMetricFamily(
            "relay_oldest_pending_delivery_age_seconds",
            "Age of the oldest pending delivery of the subscription.",
            labels=["subscription_id"],
        )
        for item in self.backlog:
            pending.add_metric([item.subscription_id], item.pending)
            oldest.add_metric([item.subscription_id], item.oldest_age_seconds)
        breaker = GaugeMetricFamily(
            "relay_subscription_breaker_state",
            "1 for the subscription's current circuit breaker state (closed, open, disabled).",
            labels=["subscription_id", "state"],
        )
        for subscription in self.breakers:
            current = _BREAKER_STATE_OF.get(subscription.state, subscription.state)
            for state in BREAKER_STATES:
                breaker.add_metric(
                    [subscription.subscription_id, state], 1 if state == current else 0
                )
        return [pending, oldest, breaker]


_process_default = Metrics()
_bound: ContextVar[Metrics | None] = ContextVar("relay_metrics", default=None)


def current() -> Metrics:
    return _bound.get() or _process_default


def process_default() -> Metrics:
    return _process_default


def bind(metrics: Metrics) -> None:
    """Counts what this context, and the tasks it starts from now on, do into `metrics`."""
    _bound.set(metrics)


@contextmanager
def bound(metrics: Metrics) -> Iterator[None]:
    token = _bound.set(metrics)
    try:
        yield
    finally:
        _bound.reset(token)


class MetricsMiddleware:
    """Binds the app's registry for each request (servers run requests in their own tasks)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with bound(self.metrics):
            await self.app(scope, receive, send)
