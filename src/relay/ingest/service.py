"""The ingest pipeline: verify, parse, normalize, persist, in that order, then answer.

Every outcome is written by one statement in autocommit (see repository.py): the request log
row alone for a rejection, or the request log row, the events, their dedupe keys and their
deliveries (the outbox) together. The endpoint answers only after that statement returned,
so a 200 means all of it is durable, and a failure before leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from relay.core.ids import new_id
from relay.core.jsonutil import dumps
from relay.core.logging import get_logger, is_secret_key
from relay.events.envelope import build_envelope
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
    SourceRow,
    SubscriptionTarget,
)
from relay.observability import metrics
from relay.sources.service import parsed_configuration
from relay.subscriptions.fanout import plan_deliveries
from relay.vendors.base import (
    InboundRequest,
    MappingOverrides,
    NormalizedEvent,
    ParsedWebhook,
    PayloadError,
)
from relay.vendors.registry import VENDORS
from relay.verification.schemes import SourceVerification
from relay.verification.verify import VerifiableRequest, verify

log = get_logger(__name__)

REDACTED = "[redacted]"
# How many event ids an ingest log line names; the others are counted.
LOGGED_EVENT_IDS = 10


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
    accepted: int = 0
    duplicates: int = 0
    event_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class IngestSource:
    """A source as the ingest uses it, credentials decrypted and mapping parsed."""

    id: str
    slug: str
    vendor: str
    active: bool
    rate_limit_per_second: float | None
    verification: SourceVerification
    overrides: MappingOverrides

    @classmethod
    def of(cls, row: SourceRow) -> IngestSource:
        verification, overrides = parsed_configuration(row.verification_token, row.mapping_json)
        return cls(
            id=row.id,
            slug=row.slug,
            vendor=row.vendor,
            active=row.active,
            rate_limit_per_second=row.rate_limit_per_second,
            verification=verification,
            overrides=overrides,
        )


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
    connection is held while a client sends its body."""

    def __init__(self, engine: AsyncEngine, *, max_json_depth: int) -> None:
        self.engine = engine
        self.max_json_depth = max_json_depth

    @asynccontextmanager
    async def _repository(self) -> AsyncIterator[IngestRepository]:
        async with self.engine.connect() as connection:
            yield IngestRepository(connection)

    async def lookup(self, slug: str) -> tuple[IngestSource, Sequence[SubscriptionTarget]] | None:
        async with self._repository() as repository:
            found = await repository.lookup(slug)
        if found is None:
            return None
        return IngestSource.of(found[0]), found[1]

    async def _record(self, row: RequestLogRow) -> None:
        async with self._repository() as repository:
            await repository.record(row)

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
        verdict = verify(
            source.verification,
            VerifiableRequest(body=webhook.body, headers=webhook.headers, query=webhook.query),
            source_slug=source.slug,
            now=webhook.received_at,
        )
        if not verdict.ok:
            return await self.record_rejection(
                webhook, source, status_code=401, reason=verdict.reason
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
            return IngestOutcome(status_code=400, verdict=Verdict.INVALID, reason=str(exc))

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
    ) -> IngestOutcome:
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
        async with self._repository() as repository:
            stored = await repository.store(
                row,
                vendor=source.vendor,
                total_events=len(parsed.events),
                events=planned,
                deliveries=deliveries,
            )
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
