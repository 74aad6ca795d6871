"""The ingest pipeline: verify, parse, normalize, persist, in that order, then answer.

The service only flushes: the endpoint commits the transaction holding the request log row, the
events, their dedupe keys and their deliveries (the outbox) before it answers, so a failure
before that leaves nothing behind and a 200 means all of it is durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from relay.core.ids import new_id
from relay.core.jsonutil import dumps
from relay.core.logging import get_logger, is_secret_key
from relay.deliveries.service import FanOut
from relay.events.envelope import build_envelope
from relay.events.repository import EventRepository
from relay.ingest.models import RequestLog
from relay.ingest.repository import RequestLogRepository
from relay.observability import metrics
from relay.sources.models import Source
from relay.sources.service import overrides_of, verification_of
from relay.vendors.base import InboundRequest, NormalizedEvent, ParsedWebhook, PayloadError
from relay.vendors.registry import VENDORS
from relay.verification.verify import VerifiableRequest, verify

log = get_logger(__name__)

REDACTED = "[redacted]"


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


def loggable_headers(headers: dict[str, str], source: Source | None) -> dict[str, str]:
    """The request's headers with credentials replaced, fit for the request log."""
    credential_headers = set()
    if source is not None:
        credential_headers = {name.lower() for name in verification_of(source).header_names()}
    return {
        name: REDACTED if name in credential_headers or is_secret_key(name) else value
        for name, value in headers.items()
    }


class IngestService:
    def __init__(self, session: AsyncSession, *, max_json_depth: int) -> None:
        self.session = session
        self.max_json_depth = max_json_depth
        self.requests = RequestLogRepository(session)
        self.events = EventRepository(session)
        self.fan_out = FanOut(session)

    async def record_rejection(
        self,
        webhook: IncomingWebhook,
        source: Source,
        *,
        status_code: int,
        reason: str,
        verdict: str = Verdict.REJECTED,
    ) -> IngestOutcome:
        self._log_row(webhook, source, verdict=verdict, reason=reason, status_code=status_code)
        await self.session.flush()
        log.info("ingest_rejected", source=source.slug, reason=reason, status=status_code)
        metrics.current().inbound_request(source=source.slug, vendor=source.vendor, verdict=verdict)
        return IngestOutcome(status_code=status_code, verdict=verdict, reason=reason)

    async def ingest(self, webhook: IncomingWebhook, source: Source) -> IngestOutcome:
        verdict = verify(
            verification_of(source),
            VerifiableRequest(body=webhook.body, headers=webhook.headers, query=webhook.query),
            source_slug=source.slug,
            now=webhook.received_at,
        )
        if not verdict.ok:
            return await self.record_rejection(
                webhook, source, status_code=401, reason=verdict.reason
            )

        vendor = VENDORS[source.vendor]
        try:
            parsed = vendor.parse(
                InboundRequest(
                    body=webhook.body,
                    headers=webhook.headers,
                    query=webhook.query,
                    max_json_depth=self.max_json_depth,
                ),
                overrides_of(source),
            )
        except PayloadError as exc:
            self._log_row(
                webhook,
                source,
                verdict=Verdict.INVALID,
                reason=str(exc),
                status_code=400,
                keep_body=True,
            )
            await self.session.flush()
            log.info("ingest_invalid", source=source.slug, reason=str(exc))
            metrics.current().inbound_request(
                source=source.slug, vendor=source.vendor, verdict=Verdict.INVALID
            )
            return IngestOutcome(status_code=400, verdict=Verdict.INVALID, reason=str(exc))

        if parsed.kind == "ping":
            self._log_row(
                webhook,
                source,
                verdict=Verdict.PING,
                reason="; ".join(parsed.notes) or "vendor ping",
                status_code=200,
                keep_body=True,
            )
            await self.session.flush()
            log.info("ingest_ping", source=source.slug)
            metrics.current().inbound_request(
                source=source.slug, vendor=source.vendor, verdict=Verdict.PING
            )
            return IngestOutcome(status_code=200, verdict=Verdict.PING, reason="ping")

        return await self._store(webhook, source, parsed)

    async def _store(
        self, webhook: IncomingWebhook, source: Source, parsed: ParsedWebhook
    ) -> IngestOutcome:
        unique: dict[str, NormalizedEvent] = {}
        for event in parsed.events:
            unique.setdefault(event.dedupe_key, event)
        proposed_ids = {key: new_id("evt") for key in unique}

        # The log row goes first: events point at it.
        row = self._log_row(
            webhook,
            source,
            verdict=Verdict.ACCEPTED,
            reason="; ".join(parsed.notes),
            status_code=200,
            keep_body=True,
        )
        await self.session.flush()
        fresh_keys = await self.events.claim_dedupe_keys(
            source.id, proposed_ids, now=webhook.received_at
        )
        event_rows: list[dict[str, Any]] = []
        envelopes: list[dict[str, Any]] = []
        for key, event in unique.items():
            if key not in fresh_keys:
                continue
            event_id = proposed_ids[key]
            envelope = build_envelope(
                event_id=event_id,
                event=event,
                source_id=source.id,
                source_slug=source.slug,
                vendor=source.vendor,
                received_at=webhook.received_at,
            )
            envelopes.append(envelope)
            event_rows.append(
                {
                    "id": event_id,
                    "source_id": source.id,
                    "request_id": webhook.request_id,
                    "type": event.type,
                    "vendor": source.vendor,
                    "vendor_event_name": event.vendor_event_name,
                    "vendor_event_id": event.vendor_event_id,
                    "subject_kind": event.subject_kind,
                    "subject_id": event.subject_id,
                    "occurred_at": event.occurred_at or webhook.received_at,
                    "received_at": webhook.received_at,
                    "envelope": dumps(envelope).decode(),
                }
            )
        await self.events.add_many(event_rows)
        deliveries = await self.fan_out.plan(envelopes, now=webhook.received_at)

        accepted = len(event_rows)
        duplicates = len(parsed.events) - accepted
        event_ids = [item["id"] for item in event_rows]
        row.verdict = Verdict.ACCEPTED if accepted or not parsed.events else Verdict.DUPLICATE
        row.accepted_count = accepted
        row.duplicate_count = duplicates
        row.event_ids = event_ids
        await self.session.flush()
        log.info(
            "ingest_accepted",
            source=source.slug,
            accepted=accepted,
            duplicates=duplicates,
            deliveries=deliveries,
            event_ids=event_ids,
        )
        metrics.current().inbound_request(
            source=source.slug, vendor=source.vendor, verdict=row.verdict
        )
        metrics.current().stored_events(event_rows)
        return IngestOutcome(
            status_code=200,
            verdict=row.verdict,
            reason=row.reason,
            accepted=accepted,
            duplicates=duplicates,
            event_ids=event_ids,
        )

    def _log_row(
        self,
        webhook: IncomingWebhook,
        source: Source,
        *,
        verdict: str,
        reason: str,
        status_code: int,
        keep_body: bool = False,
    ) -> RequestLog:
        row = RequestLog(
            id=webhook.request_id,
            source_id=source.id,
            slug=source.slug,
            received_at=webhook.received_at,
            verdict=verdict,
            reason=reason,
            status_code=status_code,
            body_size=len(webhook.body),
            content_type=webhook.content_type,
            remote_addr=webhook.remote_addr,
            headers=loggable_headers(webhook.headers, source),
            body=webhook.body if keep_body else None,
        )
        self.requests.add(row)
        return row
