"""Replay and recovery: what they mean, checked at the request, and one batch of each job.

Replaying an event makes new deliveries of it (new delivery ids, the same event and so the
same `webhook-id`) to the subscriptions that match it now. Recovering re-queues a
subscription's failed deliveries as they are, or makes its pending ones that wait for a retry
due now. Both large kinds run as jobs: `JobRunner`
claims them and calls `run_batch` until a batch comes back short.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from relay.core.errors import Conflict, Invalid, NotFound
from relay.core.ids import new_id
from relay.deliveries.repository import DeliveryRepository
from relay.events.repository import EventRepository
from relay.events.taxonomy import EVENT_TYPES
from relay.jobs.models import Job, JobKind, JobStatus
from relay.jobs.repository import EventWindow, JobRepository
from relay.jobs.schemas import BulkReplayIn, RecoverIn
from relay.outbox import health, transitions
from relay.outbox.models import Delivery
from relay.outbox.states import ENDS_PENDING_DELIVERIES, DeliveryStatus, Liveness
from relay.sources.repository import SourceRepository
from relay.subscriptions.fanout import plan_deliveries
from relay.subscriptions.matching import wants
from relay.subscriptions.models import Subscription
from relay.subscriptions.repository import SubscriptionRepository
from relay.vendors.registry import VENDORS

# Passes over a recovery's window: the first requeues all it can, the others only what was
# locked by another transaction when the pass came by.
MAX_RECOVER_PASSES = 5


class JobFailed(Exception):
    """A job cannot go on (its subscription was deleted or disabled meanwhile)."""


def _why_not_live(subscription: Subscription) -> str | None:
    """Why a subscription takes no new deliveries; None when it does (a paused one does:
    they wait for its resume)."""
    state = subscription.liveness
    if state in ENDS_PENDING_DELIVERIES:
        return (
            f"is {state.value} ({subscription.state_reason or 'by an admin'}): switch it back "
            'on with PATCH {"active": true} first'
        )
    return None


def _check_window(since: datetime, until: datetime | None) -> None:
    if until is not None and until <= since:
        raise Invalid(
            f"until ({until.isoformat()}) must be later than since ({since.isoformat()})",
            details=[{"field": "until", "message": "must be later than since"}],
        )


def _known_event_types() -> set[str]:
    types = set(EVENT_TYPES)
    for vendor in VENDORS.values():
        types.update(vendor.event_types.values())
    return types


def _instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class JobService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.jobs = JobRepository(session)
        self.events = EventRepository(session)
        self.subscriptions = SubscriptionRepository(session)
        self.sources = SourceRepository(session)

    async def get(self, job_id: str) -> Job:
        job = await self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job with id '{job_id}'")
        return job

    async def list(
        self, *, kind: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Sequence[Job]:
        return await self.jobs.list(kind=kind, status=status, limit=limit, cursor=cursor)

    async def replay_event(
        self, event_id: str, subscription_ids: Sequence[str] | None, *, now: datetime
    ) -> Sequence[Delivery]:
        """New deliveries of one event to every live subscription that matches it now, or to
        the named ones (each must exist, be live and match, else nothing is queued)."""
        event = await self.events.get(event_id)
        if event is None:
            raise NotFound(f"no event with id '{event_id}'")
        envelope = orjson.loads(event.envelope)
        chosen: Sequence[Subscription]
        if subscription_ids is None:
            chosen = await self.subscriptions.live()
        else:
            chosen = await self._named_for_event(subscription_ids, envelope)
        return await transitions.add_planned(
            self.session, plan_deliveries(chosen, [envelope]), now=now
        )

    async def _named_for_event(
        self, subscription_ids: Sequence[str], envelope: dict[str, Any]
    ) -> Sequence[Subscription]:
        chosen: list[Subscription] = []
        problems: list[dict[str, str]] = []
        for subscription_id in dict.fromkeys(subscription_ids):
            subscription = await self.subscriptions.get(subscription_id)
            if subscription is None:
                problems.append({"subscription_id": subscription_id, "reason": "does not exist"})
            elif (reason := _why_not_live(subscription)) is not None:
                problems.append({"subscription_id": subscription_id, "reason": reason})
            elif not wants(subscription, envelope):
                problems.append(
                    {
                        "subscription_id": subscription_id,
                        "reason": f"does not match this {envelope['type']} event (its event "
                        "types, vendors, sources or filter exclude it)",
                    }
                )
            else:
                chosen.append(subscription)
        if problems:
            summary = "; ".join(f"'{p['subscription_id']}' {p['reason']}" for p in problems)
            raise Invalid(f"cannot replay to subscription {summary}", details=problems)
        return chosen

    async def start_recover(
        self, subscription_id: str, request: RecoverIn, *, now: datetime
    ) -> Job:
        subscription = await self.subscriptions.get(subscription_id)
        if subscription is None:
            raise NotFound(f"no subscription with id '{subscription_id}'")
        if (reason := _why_not_live(subscription)) is not None:
            raise Conflict(f"subscription '{subscription_id}' {reason}")
        _check_window(request.since, request.until)
        # Recovering a failing subscription says it is fixed: probe it now, not at the next
        # probe time, so that its breaker closes as soon as it answers.
        await health.probe_now(self.session, subscription_id, now=now)
        params = {
            "subscription_id": subscription_id,
            "status": request.status,
            "since": request.since.isoformat(),
            "until": (request.until or now).isoformat(),
        }
        return await self._queue(JobKind.RECOVER, params, now=now)

    async def start_replay(self, request: BulkReplayIn, *, now: datetime) -> Job:
        _check_window(request.since, request.until)
        if request.type is not None and request.type not in _known_event_types():
            raise Invalid(f"type: unknown event type '{request.type}'; see GET /v1/event-types")
        if request.vendor is not None and request.vendor not in VENDORS:
            raise Invalid(
                f"vendor: unknown vendor '{request.vendor}'; use {', '.join(sorted(VENDORS))}"
            )
        if request.source is not None and await self.sources.get(request.source) is None:
            raise Invalid(f"source: no source with id '{request.source}'")
        subscription_ids = None
        if request.subscription_ids is not None:
            subscription_ids = list(dict.fromkeys(request.subscription_ids))
            problems = []
            for subscription_id in subscription_ids:
                subscription = await self.subscriptions.get(subscription_id)
                if subscription is None:
                    problems.append(f"'{subscription_id}' does not exist")
                elif (reason := _why_not_live(subscription)) is not None:
                    problems.append(f"'{subscription_id}' {reason}")
            if problems:
                raise Invalid(f"cannot replay to subscription {'; '.join(problems)}")
        params = {
            "since": request.since.isoformat(),
            "until": (request.until or now).isoformat(),
            "type": request.type,
            "vendor": request.vendor,
            "source": request.source,
            "subscription_ids": subscription_ids,
        }
        return await self._queue(JobKind.REPLAY, params, now=now)

    async def _queue(self, kind: str, params: dict[str, Any], *, now: datetime) -> Job:
        job = Job(
            id=new_id("job"),
            kind=kind,
            status=JobStatus.QUEUED,
            params=params,
            done=0,
            result={},
            runs=0,
            created_at=now,
            updated_at=now,
        )
        await self.jobs.add(job)
        return job


@dataclass(slots=True)
class Progress:
    """Where a running job stands; written to its row after every batch."""

    cursor: dict[str, Any] | None
    done: int
    total: int | None
    result: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, job: Job) -> Progress:
        return cls(cursor=job.cursor, done=job.done, total=job.total, result=dict(job.result))

    def count(self, name: str, amount: int) -> None:
        self.result[name] = self.result.get(name, 0) + amount


def _position(cursor: dict[str, Any] | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    return datetime.fromisoformat(cursor["at"]), cursor["id"]


def _cursor(at: datetime, row_id: str) -> dict[str, Any]:
    return {"at": at.isoformat(), "id": row_id}


def event_window(params: dict[str, Any]) -> EventWindow:
    since = _instant(params["since"])
    assert since is not None
    return EventWindow(
        since=since,
        until=_instant(params.get("until")),
        type=params.get("type"),
        vendor=params.get("vendor"),
        source=params.get("source"),
    )


def _recovered_status(params: dict[str, Any]) -> DeliveryStatus:
    return DeliveryStatus(params["status"])


def backlog_subscription(job: Job) -> str | None:
    """Whose due deliveries the job must not pile up: the recovered subscription's, or, for a
    replay that may feed any subscription, everyone's."""
    if job.kind == JobKind.RECOVER:
        subscription_id: str = job.params["subscription_id"]
        return subscription_id
    return None


class JobBatches:
    """The work of one job, one batch at a time, in the caller's transaction."""

    def __init__(self, session: AsyncSession, job: Job) -> None:
        self.session = session
        self.job = job
        self.jobs = JobRepository(session)
        self.deliveries = DeliveryRepository(session)
        self.subscriptions = SubscriptionRepository(session)

    async def count(self, *, now: datetime) -> int:
        params = self.job.params
        if self.job.kind == JobKind.RECOVER:
            since = _instant(params["since"])
            assert since is not None
            return await self.deliveries.count_recoverable(
                params["subscription_id"],
                status=_recovered_status(params),
                since=since,
                until=_instant(params.get("until")),
                changed_before=self.job.created_at,
                now=now,
            )
        return await self.jobs.count_events(event_window(params))

    async def run_batch(self, progress: Progress, *, limit: int, now: datetime) -> bool:
        """Does the next batch and records it in `progress`; True when the job is complete."""
        if self.job.kind == JobKind.RECOVER:
            return await self._recover(progress, limit=limit, now=now)
        return await self._replay(progress, limit=limit, now=now)

    async def _recover(self, progress: Progress, *, limit: int, now: datetime) -> bool:
        params = self.job.params
        subscription = await self.subscriptions.get(params["subscription_id"])
        if subscription is None:
            raise JobFailed(f"subscription '{params['subscription_id']}' was deleted")
        if subscription.liveness is Liveness.DISABLED:
            raise JobFailed(
                f"subscription '{subscription.id}' was disabled "
                f"({subscription.state_reason or 'by an admin'}); switch it back on and "
                "recover again"
            )
        since = _instant(params["since"])
        assert since is not None
        until = _instant(params.get("until"))
        status = _recovered_status(params)
        requeued = await transitions.requeue(
            self.session,
            subscription.id,
            status=status,
            since=since,
            until=until,
            after=_position(progress.cursor),
            changed_before=self.job.created_at,
            limit=limit,
            now=now,
        )
        if requeued:
            progress.cursor = _cursor(*requeued[-1])
            progress.done += len(requeued)
            progress.count("requeued", len(requeued))
            progress.count("batches", 1)
        if len(requeued) == limit:
            return False
        # The end of a pass. Rows that were locked when their batch ran were skipped; while
        # some remain, start over from the beginning of the window (a few passes at most).
        left = await self.deliveries.count_recoverable(
            subscription.id,
            status=status,
            since=since,
            until=until,
            changed_before=self.job.created_at,
            now=now,
        )
        passes = progress.result.get("passes", 1)
        if left and passes < MAX_RECOVER_PASSES:
            progress.cursor = None
            progress.result["passes"] = passes + 1
            return False
        return True

    async def _replay(self, progress: Progress, *, limit: int, now: datetime) -> bool:
        params = self.job.params
        events = await self.jobs.next_events(
            event_window(params), after=_position(progress.cursor), limit=limit
        )
        if not events:
            return True
        subscriptions: Sequence[Subscription] = await self.subscriptions.live()
        if params.get("subscription_ids") is not None:
            wanted = set(params["subscription_ids"])
            subscriptions = [s for s in subscriptions if s.id in wanted]
        added = await transitions.add_planned(
            self.session,
            plan_deliveries(subscriptions, [orjson.loads(event.envelope) for event in events]),
            now=now,
        )
        last = events[-1]
        progress.cursor = _cursor(last.received_at, last.id)
        progress.done += len(events)
        progress.count("events", len(events))
        progress.count("deliveries", len(added))
        progress.count("batches", 1)
        return len(events) < limit
