"""The dispatcher: claims due deliveries from PostgreSQL and sends them, never blocking on one
slow subscriber.

Each claimed delivery runs as its own task. A subscription's own limits (max_concurrency,
rate_limit_per_second) are enforced by the claim, across every worker: a worker only ever
holds deliveries it may send at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.errors import is_database_unavailable
from relay.core.ids import new_id
from relay.core.logging import REDACTED, get_logger, redact
from relay.core.netguard import DestinationPolicy
from relay.core.settings import Settings
from relay.db.retry import retrying_while_unavailable
from relay.deliveries.models import DeliveryStatus
from relay.deliveries.repository import (
    ClaimBatch,
    ClaimedDelivery,
    DeliveryRepository,
)
from relay.dispatcher.health import BreakerPolicy, SubscriptionHealth
from relay.dispatcher.listener import NotificationListener
from relay.dispatcher.recorder import SuccessRecorder
from relay.dispatcher.retry import Decision, Outcome, decide_next
from relay.dispatcher.sender import (
    AttemptResult,
    OutgoingDelivery,
    create_client,
    send,
    signing_secrets,
)
from relay.jobs.runner import JobRunner
from relay.observability import metrics
from relay.retention.service import Purger

log = get_logger(__name__)

PROBE_CHECK_INTERVAL = 5.0


def worker_name() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        database_url: str,
        *,
        name: str | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.database_url = database_url
        self.name = name or worker_name()
        self.clock = clock
        self.client = client or create_client(
            max_connections=settings.dispatcher_concurrency,
            policy=DestinationPolicy.from_settings(settings),
        )
        self.policy = BreakerPolicy(
            failures=settings.breaker_failures,
            probe_interval=settings.breaker_probe_interval,
            disable_after=settings.disable_after,
        )
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.recorder = SuccessRecorder(
            session_factory, self.policy, worker=self.name, clock=self.clock
        )
        # Outcomes being written, by delivery id: awaited at shutdown, and never given back.
        self.recording: dict[str, asyncio.Task[None]] = {}
        self.delivered = 0

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    async def run(self) -> None:
        """Claims and sends until `stop()`; then shuts down gracefully."""
        listener = NotificationListener(self.database_url, self.wake)
        listen_task = asyncio.create_task(listener.run(), name="relay-listener")
        probe_task = asyncio.create_task(self._probe_loop(), name="relay-probes")
        # Recovery and replay jobs, and the retention purge, run wherever a dispatcher runs.
        background = [
            asyncio.create_task(
                JobRunner(self.settings, self.session_factory, worker=self.name).run(),
                name="relay-jobs",
            ),
            asyncio.create_task(
                Purger(self.settings, self.session_factory).run_periodically(),
                name="relay-retention",
            ),
        ]
        log.info("dispatcher_started", worker=self.name)
        try:
            await self._claim_loop()
        finally:
            listen_task.cancel()
            probe_task.cancel()
            for task in background:
                task.cancel()
            await asyncio.gather(listen_task, probe_task, *background, return_exceptions=True)
            await self._shutdown()
            await self.client.aclose()
            log.info("dispatcher_stopped", worker=self.name, delivered=self.delivered)

    async def _claim_loop(self) -> None:
        while not self.stopping.is_set():
            free = self.settings.dispatcher_concurrency - len(self.in_flight)
            batch = ClaimBatch(deliveries=[], parked=0)
            if free > 0:
                self.wake.clear()
                try:
                    batch = await self._claim(min(free, self.settings.dispatcher_batch_size))
                except Exception as exc:
                    if not is_database_unavailable(exc):
                        raise
                    log.warning("claim_failed_database_unavailable", error=type(exc).__name__)
                for delivery in batch.deliveries:
                    self._start(delivery)
            # A claim that parked a saturated subscription's rows may have more behind them.
            wanted = min(max(free, 1), self.settings.dispatcher_batch_size)
            if len(batch.deliveries) < wanted and not batch.parked:
                await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=self.settings.dispatcher_poll_interval)

    async def _claim(self, limit: int) -> ClaimBatch:
        async with self.session_factory() as session:
            batch = await DeliveryRepository(session).claim(
                worker=self.name, limit=limit, lease=self.settings.dispatcher_lease
            )
            await session.commit()
        if batch.next_token_in is not None:
            # A rate-limited subscription waits for its next token: claim again then.
            self._wake_at(self.clock() + timedelta(seconds=batch.next_token_in))
        return batch

    def _start(self, claimed: ClaimedDelivery) -> None:
        task = asyncio.create_task(self._handle(claimed), name=f"deliver-{claimed.id}")
        self.in_flight[claimed.id] = task
        task.add_done_callback(lambda _task: self._done(claimed))

    def _done(self, claimed: ClaimedDelivery) -> None:
        self.in_flight.pop(claimed.id, None)
        self.wake.set()

    async def _handle(self, claimed: ClaimedDelivery) -> None:
        now = self.clock()
        if claimed.deleted_at is not None or claimed.state == "disabled":
            reason = "subscription deleted" if claimed.deleted_at else "subscription disabled"
            await self._finish_without_attempt(claimed, reason=reason, now=now)
            return
        if not claimed.active:
            await self._hold(claimed, now=now)
            return
        if claimed.state == "degraded":
            async with self.session_factory() as session:
                is_probe = await SubscriptionHealth(session, self.policy).take_probe_slot(
                    claimed.subscription_id, now=now
                )
                await session.commit()
            if not is_probe:
                await self._hold(claimed, now=now)
                return
        await self._attempt(claimed)

    async def _attempt(self, claimed: ClaimedDelivery) -> None:
        attempt_number = claimed.attempts + 1
        outgoing = OutgoingDelivery(
            url=claimed.url,
            body=claimed.envelope.encode(),
            event_id=claimed.event_id,
            event_type=claimed.event_type,
            delivery_id=claimed.id,
            attempt_number=attempt_number,
            secrets=signing_secrets(
                claimed.secret,
                claimed.previous_secret,
                claimed.previous_secret_expires_at,
                now=self.clock(),
            ),
            custom_headers=claimed.headers,
        )
        result = await send(self.client, outgoing, attempt_timeout=self.settings.delivery_timeout)
        # The outcome is written even if shutdown cancels us now: the request was made.
        recording = asyncio.create_task(self._record(claimed, attempt_number, result))
        self.recording[claimed.id] = recording
        recording.add_done_callback(lambda _task: self.recording.pop(claimed.id, None))
        await asyncio.shield(recording)

    async def _record(
        self, claimed: ClaimedDelivery, attempt_number: int, result: AttemptResult
    ) -> None:
        now = self.clock()
        retry_after = (result.response_headers or {}).get("retry-after")
        decision = decide_next(
            status=result.status_code,
            error=result.error_message,
            attempts_made=attempt_number,
            schedule=claimed.retry_schedule,
            retry_after=retry_after,
            now=now,
        )
        succeeded = decision.outcome is Outcome.SUCCEEDED
        if succeeded:
            status = DeliveryStatus.SUCCEEDED
        elif decision.next_attempt_at is not None:
            status = DeliveryStatus.PENDING
        else:
            status = DeliveryStatus.FAILED
        attempt_row = {
            "id": new_id("att"),
            "delivery_id": claimed.id,
            "subscription_id": claimed.subscription_id,
            "attempt_number": attempt_number,
            "started_at": result.started_at,
            "duration_ms": result.duration_ms,
            "request_url": claimed.url,
            # Custom header values are the subscriber's secrets, whatever their names.
            "request_headers": redact(result.request_headers)
            | dict.fromkeys(claimed.headers, REDACTED)
            | {"webhook-signature": result.request_headers["webhook-signature"]},
            "response_status": result.status_code,
            "response_headers": result.response_headers,
            "response_body": result.response_body,
            "error_class": result.error_class,
            "error_message": result.error_message,
            "outcome": status,
            "decision": decision.reason,
        }
        if succeeded:
            await self.recorder.record(attempt_row)
        else:
            await self._record_failure(claimed, attempt_row, decision, now=now)
        metrics.current().attempt(
            outcome=status,
            status_code=result.status_code,
            duration_ms=result.duration_ms,
            received_at=claimed.event_received_at,
            finished_at=now,
        )
        if succeeded:
            self.delivered += 1
        elif decision.next_attempt_at is not None:
            self._wake_at(decision.next_attempt_at)
        log.info(
            "delivery_attempt",
            delivery_id=claimed.id,
            event_id=claimed.event_id,
            source=claimed.source,
            subscription_id=claimed.subscription_id,
            attempt=attempt_number,
            status_code=result.status_code,
            error=result.error_class,
            outcome=status,
            duration_ms=result.duration_ms,
        )

    async def _record_failure(
        self,
        claimed: ClaimedDelivery,
        attempt_row: dict[str, Any],
        decision: Decision,
        *,
        now: datetime,
    ) -> None:
        async for attempt in retrying_while_unavailable():
            with attempt:
                await self._write_failure(claimed, attempt_row, decision, now=now)

    async def _write_failure(
        self,
        claimed: ClaimedDelivery,
        attempt_row: dict[str, Any],
        decision: Decision,
        *,
        now: datetime,
    ) -> None:
        async with self.session_factory() as session:
            deliveries = DeliveryRepository(session)
            health = SubscriptionHealth(session, self.policy)
            await deliveries.add_attempts([attempt_row])
            await deliveries.finish(
                claimed.id,
                worker=self.name,
                status=attempt_row["outcome"],
                attempts=attempt_row["attempt_number"],
                next_attempt_at=decision.next_attempt_at or now,
                last_status_code=attempt_row["response_status"],
                last_error=decision.reason,
                now=now,
            )
            if decision.outcome is Outcome.GONE:
                await health.disable(
                    claimed.subscription_id, reason="subscriber answered 410 Gone", now=now
                )
            else:
                await health.record_failure(
                    claimed.subscription_id, reason=decision.reason, now=now
                )
            await session.commit()

    def _wake_at(self, moment: datetime) -> None:
        # A retry due before the next poll would otherwise wait for the poll: claim on time.
        delay = (moment - self.clock()).total_seconds()
        if delay < self.settings.dispatcher_poll_interval:
            asyncio.get_running_loop().call_later(max(delay, 0.0), self.wake.set)

    async def _finish_without_attempt(
        self, claimed: ClaimedDelivery, *, reason: str, now: datetime
    ) -> None:
        async with self.session_factory() as session:
            await DeliveryRepository(session).finish(
                claimed.id,
                worker=self.name,
                status=DeliveryStatus.FAILED,
                attempts=claimed.attempts,
                next_attempt_at=now,
                last_status_code=None,
                last_error=reason,
                now=now,
            )
            await session.commit()

    async def _hold(self, claimed: ClaimedDelivery, *, now: datetime) -> None:
        async with self.session_factory() as session:
            await DeliveryRepository(session).hold(claimed.id, worker=self.name, now=now)
            await session.commit()

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_CHECK_INTERVAL)
            try:
                async with self.session_factory() as session:
                    released = await SubscriptionHealth(session, self.policy).release_due_probes(
                        now=self.clock()
                    )
                    await session.commit()
            except Exception as exc:
                if not is_database_unavailable(exc):
                    raise
                continue
            if released:
                self.wake.set()

    async def _shutdown(self) -> None:
        """Lets requests in flight finish for a bounded time, then gives the rest back."""
        if not self.in_flight:
            return
        deadline = time.monotonic() + self.settings.shutdown_grace
        pending = list(self.in_flight.values())
        log.info("dispatcher_draining", in_flight=len(pending))
        _done, unfinished = await asyncio.wait(pending, timeout=self.settings.shutdown_grace)
        unfinished_ids = [task.get_name().removeprefix("deliver-") for task in unfinished]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        # A delivery whose request was answered is still writing its outcome. It is never
        # given back: handed to another worker before that write, it would be sent again. If
        # the write outlasts the grace period, its lease runs out instead, as if we had died.
        if self.recording:
            await asyncio.wait(
                set(self.recording.values()), timeout=max(deadline - time.monotonic(), 0.1)
            )
        unfinished_ids = [id_ for id_ in unfinished_ids if id_ not in self.recording]
        if unfinished_ids:
            async with self.session_factory() as session:
                await DeliveryRepository(session).release(
                    unfinished_ids, worker=self.name, at=self.clock()
                )
                await session.commit()
            log.info("dispatcher_released", deliveries=len(unfinished_ids))
