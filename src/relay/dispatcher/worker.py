"""The dispatcher: claims due deliveries from PostgreSQL and sends them, never blocking on one
slow subscriber.

Each claimed delivery runs as its own task. A subscription's own limits (max_concurrency,
rate_limit_per_second) are enforced by the claim, across every worker, and so is this worker's
share for it (shares.py): a worker only ever holds deliveries it may send at once, and slow
subscribers can never take the slots the others need. What a delivery's state becomes is the
outbox's to decide (relay.outbox); the dispatcher sends and reports.
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

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.errors import is_database_unavailable
from relay.core.ids import new_id
from relay.core.logging import REDACTED, get_logger, redact
from relay.core.netguard import DestinationPolicy
from relay.core.settings import Settings
from relay.db.listen import ChannelListener
from relay.dispatcher.recorder import OutcomeRecorder
from relay.dispatcher.sender import (
    AttemptResult,
    DeliveryClient,
    OutgoingDelivery,
    create_client,
    send,
    signing_secrets,
)
from relay.dispatcher.shares import SlotShares
from relay.observability import metrics
from relay.outbox import transitions
from relay.outbox.claim import ClaimBatch, ClaimedDelivery, claim
from relay.outbox.health import BreakerPolicy, SubscriptionHealth
from relay.outbox.retry import Outcome, decide_next
from relay.outbox.states import DeliveryStatus, Liveness
from relay.outbox.transitions import NOTIFY_CHANNEL, AttemptOutcome
from relay.outbox.wakeup import DeliveryWakeup

log = get_logger(__name__)

# The longest the upkeep loop sleeps without looking for a subscription that began to fail.
UPKEEP_INTERVAL = 5.0

# Seconds a finished delivery waits, at most, for a claim that looks at what it held back. Any
# claim begun after its outcome was written looks; under a steady stream of webhooks one
# comes within milliseconds anyway, and a claim of its own for each delivery's end cost
# figure 3 a third more claims, most of them finding nothing.
UNBLOCKED_CLAIM_WITHIN = 0.005


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
        client: DeliveryClient | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wakeup: DeliveryWakeup | None = None,
    ) -> None:
        """`wakeup` is the process's own, when it also ingests: its webhooks wake this
        dispatcher directly, not through a NOTIFY."""
        self.settings = settings
        self.wakeup = wakeup
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
        self.probe_wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.shares = SlotShares(settings.dispatcher_concurrency)
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        # Every slot was taken when the claim loop last looked (see _done).
        self.slots_full = False
        # The claim loop's session, and with it one pooled connection, kept across its claims:
        # at one claim per webhook, checking a connection out and back in for each claim cost
        # about as much Python as the claim's own call.
        self.claim_session: AsyncSession | None = None
        # A delivery finished since the last claim began (see _finished).
        self.unblocked = False
        self.unblocked_timer: asyncio.TimerHandle | None = None
        self.recorder = OutcomeRecorder(
            session_factory,
            self.policy,
            worker=self.name,
            clock=self.clock,
            # A breaker opened: its first probe is due one interval from now, on time.
            on_breaker_opened=self.probe_wake.set,
        )
        # Outcomes being written, by delivery id: awaited at shutdown, and never given back.
        self.recording: dict[str, asyncio.Task[None]] = {}
        self.delivered = 0

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    async def run(self) -> None:
        """Claims and sends until `stop()`; then shuts down gracefully."""
        if self.wakeup is not None:
            self.wakeup.subscribe(self.wake)
        listener = ChannelListener(
            self.database_url,
            NOTIFY_CHANNEL,
            on_notify=self._notified,
            # Whatever was notified while the connection was down is picked up by claiming now.
            on_connected=self.wake.set,
        )
        listen_task = asyncio.create_task(listener.run(), name="relay-listener")
        upkeep_task = asyncio.create_task(self._upkeep_loop(), name="relay-upkeep")
        log.info("dispatcher_started", worker=self.name)
        try:
            await self._claim_loop()
        finally:
            listen_task.cancel()
            upkeep_task.cancel()
            await asyncio.gather(listen_task, upkeep_task, return_exceptions=True)
            if self.wakeup is not None:
                self.wakeup.unsubscribe(self.wake)
            if self.unblocked_timer is not None:
                self.unblocked_timer.cancel()
            await self._close_claim_session()
            await self._shutdown()
            await self.client.aclose()
            log.info("dispatcher_stopped", worker=self.name, delivered=self.delivered)

    def _notified(self, origin: str) -> None:
        # This process's own webhooks have already woken it, directly.
        if self.wakeup is None or origin != self.wakeup.origin:
            self.wake.set()

    async def _claim_loop(self) -> None:
        while not self.stopping.is_set():
            free = self.settings.dispatcher_concurrency - len(self.in_flight)
            self.slots_full = free <= 0
            # Cleared on every pass, slots free or not: a wake-up that comes while every slot is
            # taken is kept by _done, which wakes the loop when a slot frees.
            self.wake.clear()
            batch = ClaimBatch(deliveries=[])
            if free > 0:
                self.unblocked = False
                try:
                    batch = await self._claim(min(free, self.settings.dispatcher_batch_size))
                except Exception as exc:
                    if not is_database_unavailable(exc):
                        raise
                    log.warning("claim_failed_database_unavailable", error=type(exc).__name__)
                for delivery in batch.deliveries:
                    self._start(delivery)
            # A claim that parked or held rows may have more due behind them.
            wanted = min(max(free, 1), self.settings.dispatcher_batch_size)
            if len(batch.deliveries) < wanted and not batch.parked and not batch.held:
                await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=self.settings.dispatcher_poll_interval)

    async def _claim(self, limit: int) -> ClaimBatch:
        if self.claim_session is None:
            self.claim_session = self.session_factory()
        try:
            batch = await claim(
                self.claim_session,
                worker=self.name,
                limit=limit,
                lease=self.settings.dispatcher_lease,
                probe_interval=self.settings.breaker_probe_interval,
                shares=self.shares.for_claim(),
                # Their requests are over: no longer against their subscription's
                # max_concurrency, though leased until their outcome is written.
                answered=self.recording.keys(),
            )
        except BaseException:
            # Whatever its connection went through, the next claim starts on a fresh one.
            await self._close_claim_session()
            raise
        if batch.next_token_in is not None:
            # A rate-limited subscription waits for its next token: claim again then.
            self._wake_at(self.clock() + timedelta(seconds=batch.next_token_in))
        return batch

    async def _close_claim_session(self) -> None:
        session, self.claim_session = self.claim_session, None
        if session is not None:
            # A connection the server dropped cannot be closed cleanly; the pool replaces it.
            with contextlib.suppress(Exception):
                await session.close()

    def _start(self, claimed: ClaimedDelivery) -> None:
        self.shares.start(claimed.id, claimed.subscription_id)
        task = asyncio.create_task(self._handle(claimed), name=f"deliver-{claimed.id}")
        self.in_flight[claimed.id] = task
        task.add_done_callback(lambda _task: self._finished(claimed))

    def _done(self, claimed: ClaimedDelivery) -> None:
        """Its slot is free: a claim waiting for one may go."""
        if self.in_flight.pop(claimed.id, None) is not None:
            self.shares.forget(claimed.id)
            if self.slots_full:
                self.wake.set()

    def _finished(self, claimed: ClaimedDelivery) -> None:
        """Its outcome is committed and its lease gone (or it ended unsent): what it held back,
        the next event of its subject or deliveries parked behind its subscription's limits,
        may be due now. A claim begins within UNBLOCKED_CLAIM_WITHIN."""
        self._done(claimed)
        self.unblocked = True
        if self.unblocked_timer is None:
            self.unblocked_timer = asyncio.get_running_loop().call_later(
                UNBLOCKED_CLAIM_WITHIN, self._claim_if_unblocked
            )

    def _claim_if_unblocked(self) -> None:
        self.unblocked_timer = None
        if self.unblocked:
            self.wake.set()

    async def _handle(self, claimed: ClaimedDelivery) -> None:
        if claimed.liveness in (Liveness.DELETED, Liveness.DISABLED):
            reason = f"subscription {claimed.liveness.value}"
            if claimed.liveness is Liveness.DISABLED and claimed.state_reason:
                reason = f"subscription disabled: {claimed.state_reason}"
            async with self.session_factory() as session:
                await transitions.end_unsent(
                    session, claimed.id, worker=self.name, reason=reason, now=self.clock()
                )
                await session.commit()
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
        self.shares.finish(
            claimed.id,
            answered=result.status_code is not None,
            timed_out=result.error_class == "timeout",
            max_concurrency=claimed.max_concurrency,
        )
        # The outcome is written even if shutdown cancels us now: the request was made.
        recording = asyncio.create_task(self._record(claimed, attempt_number, result))
        self.recording[claimed.id] = recording
        recording.add_done_callback(lambda _task: self.recording.pop(claimed.id, None))
        # The slot is free as soon as the answer is in, not once the outcome is written: the
        # next claim overlaps that write. The delivery stays leased until then, so the claim
        # still counts it against its subscription's limits and order.
        self._done(claimed)
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
            "decision": decision.reason,
        }
        status = await self.recorder.record(
            AttemptOutcome(
                attempt_row,
                succeeded=succeeded,
                retry_at=decision.next_attempt_at,
                gone=decision.outcome is Outcome.GONE,
            )
        )
        metrics.current().attempt(
            outcome=status,
            status_code=result.status_code,
            duration_ms=result.duration_ms,
            received_at=claimed.event_received_at,
            finished_at=now,
        )
        if succeeded:
            self.delivered += 1
        elif status is DeliveryStatus.PENDING and decision.next_attempt_at is not None:
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

    def _wake_at(self, moment: datetime) -> None:
        # A retry due before the next poll would otherwise wait for the poll: claim on time.
        delay = (moment - self.clock()).total_seconds()
        if delay < self.settings.dispatcher_poll_interval:
            asyncio.get_running_loop().call_later(max(delay, 0.0), self.wake.set)

    async def _upkeep_loop(self) -> None:
        """Makes a held delivery due for each failing subscription the moment its probe is due
        (once per RELAY_BREAKER_PROBE_INTERVAL, not at the next tick of a fixed loop), and
        every UPKEEP_INTERVAL keeps the subscriptions' parked flags true (see
        outbox.transitions.raise_parked_flags)."""
        flags_at = time.monotonic()
        while True:
            try:
                async with self.session_factory() as session:
                    health = SubscriptionHealth(session, self.policy)
                    released = await health.release_due_probes(now=self.clock())
                    next_probe = await health.next_probe_at(now=self.clock())
                    await session.commit()
                if time.monotonic() >= flags_at:
                    await self._keep_parked_flags()
                    flags_at = time.monotonic() + UPKEEP_INTERVAL
            except Exception as exc:
                if not is_database_unavailable(exc):
                    raise
                released, next_probe = 0, None
            if released:
                self.wake.set()
            wait = max(flags_at - time.monotonic(), 0.0)
            if next_probe is not None:
                wait = min(max((next_probe - self.clock()).total_seconds(), 0.0), wait)
            self.probe_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.probe_wake.wait(), timeout=wait)

    async def _keep_parked_flags(self) -> None:
        async with self.session_factory() as session:
            await transitions.raise_parked_flags(session)
            await session.commit()
        async with self.session_factory() as session:
            await transitions.lower_parked_flags(session, now=self.clock())
            await session.commit()

    async def _shutdown(self) -> None:
        """Lets requests in flight finish for a bounded time, then gives the rest back."""
        deadline = time.monotonic() + self.settings.shutdown_grace
        unfinished_ids: list[str] = []
        if self.in_flight:
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
                await transitions.give_back(
                    session, unfinished_ids, worker=self.name, at=self.clock()
                )
                await session.commit()
            log.info("dispatcher_released", deliveries=len(unfinished_ids))
