"""The ingest pipeline: verify, parse, normalize, persist, in that order, then answer.

Every outcome is written by one statement in autocommit (see repository.py): the request log
row alone for a rejection, or the request log row, the events, their dedupe keys and their
deliveries (the outbox) together, in a statement shared with the webhooks that arrived at the
same moment (batcher.py). The endpoint answers only after that statement returned, so a 200
means all of it is durable, and a failure before leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from relay.core.ids import new_id
from relay.core.jsonutil import dumps
from relay.core.logging import get_logger, is_secret_key
from relay.events.envelope import build_envelope
from relay.ingest.batcher import GroupCommit
from relay.ingest.directory import SourceDirectory
from relay.ingest.models import (
    CONTENT_TYPE_LENGTH,
    HEADER_COUNT,
    HEADER_NAME_LENGTH,
    HEADER_VALUE_LENGTH,
    REMOTE_ADDR_LENGTH,
    TRUNCATED,
)
from relay.ingest.repository import (
    IngestRepository,
    PlannedEvent,
    RequestLogRow,
    SubscriptionTarget,
    WebhookToStore,
)
from relay.ingest.source import IngestSource
from relay.observability import metrics
from relay.subscriptions.fanout import plan_deliveries
from relay.vendors.base import (
    InboundRequest,
    NormalizedEvent,
    ParsedWebhook,
    PayloadError,
)
from relay.vendors.registry import VENDORS
from relay.verification.verify import VerifiableRequest, verify

log = get_logger(__name__)

REDACTED = "[redacted]"
# How many event ids an ingest log line names; the others are counted.
LOGGED_EVENT_IDS = 10
# How many times one webhook is handled again because the configuration changed under it.
CONFIG_ATTEMPTS = 3


class Verdict:
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    PING = "ping"
    REJECTED = "rejected"
    INVALID = "invalid"


@dataclass(slots=True)
class IncomingWebhook:
    request_id: str
    slug: str
    body: bytes
    headers: dict[str, str]
    query: dict[str, str]
    content_type: str | None
    remote_addr: str | None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    status_code: int
    verdict: str
    reason: str
    # The error code of a refusal, answered with `reason` as its message.
    error: str | None = None
    accepted: int = 0
    duplicates: int = 0
    event_ids: list[str] = field(default_factory=list)


def fitted(value: str, length: int) -> str:
    """`value`, or its start and the TRUNCATED marker in `length` characters."""
    if len(value) <= length:
        return value
    return value[: length - len(TRUNCATED)] + TRUNCATED


def loggable_headers(headers: dict[str, str], source: IngestSource) -> dict[str, str]:
    """The request's headers with credentials replaced and each name and value cut to fit the
    request log; past HEADER_COUNT, one TRUNCATED entry says how many were left out."""
    credential_headers = {name.lower() for name in source.verification.header_names()}
    kept: dict[str, str] = {}
    for index, (name, value) in enumerate(headers.items()):
        if index == HEADER_COUNT - 1 and len(headers) > HEADER_COUNT:
            kept[TRUNCATED] = f"{len(headers) - index} more headers not kept"
            break
        secret = name in credential_headers or is_secret_key(name)
        kept[fitted(name, HEADER_NAME_LENGTH)] = (
            REDACTED if secret else fitted(value, HEADER_VALUE_LENGTH)
        )
    return kept


class IngestService:
    """Each method takes a connection for its one statement and gives it back at once, so no
    connection is held while a client sends its body. One per app: the sources it reads are
    cached by `directory`, and the webhooks it stores are grouped by `group_commit`."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        directory: SourceDirectory,
        group_commit: GroupCommit,
        max_json_depth: int,
    ) -> None:
        self.engine = engine
        self.directory = directory
        self.group_commit = group_commit
        self.max_json_depth = max_json_depth

    async def lookup(
        self, slug: str, *, fresh: bool = False
    ) -> tuple[IngestSource, Sequence[SubscriptionTarget]] | None:
        return await self.directory.lookup(slug, fresh=fresh)

    async def _record(self, row: RequestLogRow) -> None:
        async with self.engine.connect() as connection:
            await IngestRepository(connection).record(row)

    async def record_rejection(
        self,
        webhook: IncomingWebhook,
        source: IngestSource,
        *,
        status_code: int,
        reason: str,
        verdict: str = Verdict.REJECTED,
        event: str = "ingest_rejected",
    ) -> IngestOutcome:
        await self._record(
            self._log_row(webhook, source, verdict=verdict, reason=reason, status_code=status_code)
        )
        log.info(event, source=source.slug, reason=reason, status=status_code)
        metrics.current().inbound_request(source=source.slug, vendor=source.vendor, verdict=verdict)
        return IngestOutcome(status_code=status_code, verdict=verdict, reason=reason)

    async def ingest(
        self,
        webhook: IncomingWebhook,
        source: IngestSource,
        subscriptions: Sequence[SubscriptionTarget],
    ) -> IngestOutcome:
        """Handles the webhook with `source` and `subscriptions` as they were read, and again
        with a fresh read whenever the configuration changed before it was stored (see
        directory.py): what is stored always follows the configuration of its commit."""
        for _ in range(CONFIG_ATTEMPTS):
            outcome = await self._ingest_with(webhook, source, subscriptions)
            if outcome is not None:
                return outcome
            found = await self.directory.lookup(source.slug, fresh=True)
            if found is None:
                reason = f"no source with slug '{source.slug}'"
                return IngestOutcome(404, Verdict.REJECTED, reason, error="unknown_source")
            source, subscriptions = found
            if not source.active:
                return await self.record_inactive(webhook, source)
        reason = "the relay's configuration kept changing while this webhook was stored; retry"
        return IngestOutcome(503, Verdict.REJECTED, reason, error="configuration_changing")

    async def record_inactive(
        self, webhook: IncomingWebhook, source: IngestSource
    ) -> IngestOutcome:
        outcome = await self.record_rejection(
            webhook, source, status_code=403, reason="source is inactive"
        )
        return replace(
            outcome, reason=f"source '{source.slug}' is inactive", error="source_inactive"
        )

    async def _ingest_with(
        self,
        webhook: IncomingWebhook,
        source: IngestSource,
        subscriptions: Sequence[SubscriptionTarget],
    ) -> IngestOutcome | None:
        """None when the configuration changed since `source` was read."""
        verdict = verify(
            source.verification,
            VerifiableRequest(body=webhook.body, headers=webhook.headers, query=webhook.query),
            source_slug=source.slug,
            now=webhook.received_at,
        )
        if not verdict.ok:
            if await self.directory.changed_since(source):
                return None
            outcome = await self.record_rejection(
                webhook, source, status_code=401, reason=verdict.reason
            )
            return replace(
                outcome,
                reason=f"request not authenticated: {verdict.reason}",
                error="unauthorized",
            )

        try:
            parsed = VENDORS[source.vendor].parse(
                InboundRequest(
                    body=webhook.body,
                    headers=webhook.headers,
                    query=webhook.query,
                    max_json_depth=self.max_json_depth,
                ),
                source.overrides,
            )
        except PayloadError as exc:
            if await self.directory.changed_since(source):
                return None
            await self._record(
                self._log_row(
                    webhook,
                    source,
                    verdict=Verdict.INVALID,
                    reason=str(exc),
                    status_code=400,
                    keep_body=True,
                )
            )
            log.info("ingest_invalid", source=source.slug, reason=str(exc))
            metrics.current().inbound_request(
                source=source.slug, vendor=source.vendor, verdict=Verdict.INVALID
            )
            return IngestOutcome(400, Verdict.INVALID, str(exc), error="invalid_body")

        if parsed.kind == "ping":
            await self._record(
                self._log_row(
                    webhook,
                    source,
                    verdict=Verdict.PING,
                    reason="; ".join(parsed.notes) or "vendor ping",
                    status_code=200,
                    keep_body=True,
                )
            )
            log.info("ingest_ping", source=source.slug)
            metrics.current().inbound_request(
                source=source.slug, vendor=source.vendor, verdict=Verdict.PING
            )
            return IngestOutcome(status_code=200, verdict=Verdict.PING, reason="ping")

        return await self._store(webhook, source, parsed, subscriptions)

    async def _store(
        self,
        webhook: IncomingWebhook,
        source: IngestSource,
        parsed: ParsedWebhook,
        subscriptions: Sequence[SubscriptionTarget],
    ) -> IngestOutcome | None:
        unique: dict[str, NormalizedEvent] = {}
        for event in parsed.events:
            unique.setdefault(event.dedupe_key, event)
        planned: list[PlannedEvent] = []
        envelopes: list[dict[str, Any]] = []
        for key, event in unique.items():
            event_id = new_id("evt")
            envelope = build_envelope(
                event_id=event_id,
                event=event,
                source_id=source.id,
                source_slug=source.slug,
                vendor=source.vendor,
                received_at=webhook.received_at,
            )
            envelopes.append(envelope)
            planned.append(
                PlannedEvent(
                    id=event_id,
                    dedupe_key=key,
                    type=event.type,
                    vendor_event_name=event.vendor_event_name,
                    vendor_event_id=event.vendor_event_id,
                    subject_kind=event.subject_kind,
                    subject_id=event.subject_id,
                    occurred_at=event.occurred_at or webhook.received_at,
                    envelope=dumps(envelope).decode(),
                )
            )
        row = self._log_row(
            webhook,
            source,
            verdict=Verdict.ACCEPTED,
            reason="; ".join(parsed.notes),
            status_code=200,
            keep_body=True,
        )
        deliveries = plan_deliveries(subscriptions, envelopes)
        stored = await self.group_commit.store(
            WebhookToStore(
                row=row,
                vendor=source.vendor,
                config_version=source.config_version,
                total_events=len(parsed.events),
                events=planned,
                deliveries=deliveries,
            )
        )
        if stored is None:
            return None
        accepted = len(stored.event_ids)
        duplicates = len(parsed.events) - accepted
        log.info(
            "ingest_accepted",
            source=source.slug,
            accepted=accepted,
            duplicates=duplicates,
            deliveries=stored.deliveries,
            # A batch may hold tens of thousands of events; the line keeps to the first few so it
            # stays well under what log shippers accept (often 8 to 16 KiB); the response and
            # /v1/events hold them all.
            event_ids=stored.event_ids[:LOGGED_EVENT_IDS],
            event_ids_not_logged=max(0, accepted - LOGGED_EVENT_IDS),
        )
        recorder = metrics.current()
        recorder.inbound_request(source=source.slug, vendor=source.vendor, verdict=stored.verdict)
        fresh = set(stored.event_ids)
        recorder.stored_events(event.type for event in planned if event.id in fresh)
        return IngestOutcome(
            status_code=200,
            verdict=stored.verdict,
            reason=row.reason,
            accepted=accepted,
            duplicates=duplicates,
            event_ids=stored.event_ids,
        )

    def _log_row(
        self,
        webhook: IncomingWebhook,
        source: IngestSource,
        *,
        verdict: str,
        reason: str,
        status_code: int,
        keep_body: bool = False,
    ) -> RequestLogRow:
        return RequestLogRow(
            id=webhook.request_id,
            source_id=source.id,
            slug=source.slug,
            received_at=webhook.received_at,
            verdict=verdict,
            reason=reason,
            status_code=status_code,
            body_size=len(webhook.body),
            content_type=webhook.content_type and fitted(webhook.content_type, CONTENT_TYPE_LENGTH),
            remote_addr=webhook.remote_addr and fitted(webhook.remote_addr, REMOTE_ADDR_LENGTH),
            headers=loggable_headers(webhook.headers, source),
            body=webhook.body if keep_body else None,
        )
