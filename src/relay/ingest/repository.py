"""SQL of the ingest: the request log, and the hot path that stores a webhook.

The hot path runs on a connection in autocommit, one statement per step: the lookup of the
source with the subscriptions that may want its events, then one statement that writes the
request log row, the dedupe keys, the events and their deliveries (the outbox) and wakes the
dispatchers. A single statement is atomic on its own, so it needs no BEGIN and COMMIT round
trips, and a failure anywhere in it leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import ARRAY, DateTime, LargeBinary, String, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from relay.core.jsonutil import dumps
from relay.ingest.models import RequestLog
from relay.outbox.states import TAKES_NEW_DELIVERIES, liveness_in_sql
from relay.outbox.transitions import (
    INSERT_PLANNED,
    NOTIFY_CHANNEL,
    PlannedDelivery,
    planned_params,
)


class RequestLogRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, request_id: str) -> RequestLog | None:
        return await self.session.get(RequestLog, request_id)

    async def list(
        self,
        *,
        source: str | None,
        verdict: str | None,
        limit: int,
        cursor: str | None,
    ) -> Sequence[RequestLog]:
        statement = select(RequestLog).order_by(RequestLog.id.desc()).limit(limit)
        if cursor is not None:
            statement = statement.where(RequestLog.id < cursor)
        if source is not None:
            statement = statement.where(RequestLog.source_id == source)
        if verdict is not None:
            statement = statement.where(RequestLog.verdict == verdict)
        return (await self.session.execute(statement)).scalars().all()


@dataclass(frozen=True, slots=True)
class SourceRow:
    """A source as the ingest reads it; `verification_token` is still encrypted."""

    id: str
    slug: str
    vendor: str
    active: bool
    rate_limit_per_second: float | None
    verification_token: str
    mapping_json: str


@dataclass(frozen=True, slots=True)
class SubscriptionTarget:
    """What fan-out needs of a live subscription to decide whether it wants an event."""

    id: str
    event_types: tuple[str, ...]
    vendors: tuple[str, ...] | None
    source_ids: tuple[str, ...] | None
    filter: dict[str, Any] | None
    ordered: bool


def _optional_tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


@lru_cache(maxsize=8)
def _targets(subscriptions_json: str) -> tuple[SubscriptionTarget, ...]:
    # Keyed by the document itself (in id order, so the same set is the same text): the same
    # live subscriptions are parsed once and never stale. A few entries cover a change.
    return tuple(
        SubscriptionTarget(
            id=item["id"],
            event_types=tuple(item["event_types"]),
            vendors=_optional_tuple(item["vendors"]),
            source_ids=_optional_tuple(item["source_ids"]),
            filter=item["filter"],
            ordered=item["ordered"],
        )
        for item in orjson.loads(subscriptions_json)
    )


@dataclass(slots=True)
class RequestLogRow:
    id: str
    source_id: str | None
    slug: str
    received_at: datetime
    verdict: str
    reason: str
    status_code: int
    body_size: int
    content_type: str | None
    remote_addr: str | None
    headers: dict[str, str]
    body: bytes | None


@dataclass(frozen=True, slots=True)
class StoredWebhook:
    """What the store statement wrote: the events not seen before, in the order given."""

    verdict: str
    event_ids: list[str]
    deliveries: int


# The live subscriptions ride along with the source lookup, as one JSON document, so the
# ingest pays one round trip for both; fan-out needs them once the body is verified.
_LOOKUP = text(
    f"""
    SELECT s.id, s.slug, s.vendor, s.active, s.rate_limit_per_second,
           s.verification #>> '{{}}' AS verification_token, s.mapping::text AS mapping_json,
           (SELECT coalesce(json_agg(json_build_object(
                       'id', sub.id, 'event_types', sub.event_types, 'vendors', sub.vendors,
                       'source_ids', sub.source_ids, 'filter', sub.filter,
                       'ordered', sub.ordered) ORDER BY sub.id)::text, '[]')
            FROM subscriptions AS sub
            WHERE {liveness_in_sql("sub", TAKES_NEW_DELIVERIES)}
           ) AS subscriptions_json
    FROM sources AS s
    WHERE s.slug = :slug
    """  # noqa: S608 (formatted only with the outbox's own constants)
)

_RECORD = text(
    """
    INSERT INTO inbound_requests (id, source_id, slug, received_at, verdict, reason, status_code,
                                  body_size, content_type, remote_addr, headers, body)
    VALUES (:id, :source_id, :slug, :received_at, :verdict, :reason, :status_code, :body_size,
            :content_type, :remote_addr, CAST(:headers AS jsonb), :body)
    """
).bindparams(
    bindparam("received_at", type_=DateTime(timezone=True)), bindparam("body", type_=LargeBinary())
)

# Dedupe keys first: a key another request already holds makes its event a duplicate (a
# concurrent request with the same key waits on the unique index until that one commits).
# Keys go in sorted, so two requests sharing several keys wait on them in the same order
# instead of deadlocking.
# Only events whose key was fresh are inserted, and only their deliveries; the request log
# row comes last so that its verdict and counts describe what was stored.
_STORE = text(
    f"""
    WITH fresh AS (
        INSERT INTO dedupe_keys (source_id, key, event_id, created_at)
        SELECT :source_id, k.key, k.event_id, :received_at
        FROM unnest(CAST(:keys AS text[]), CAST(:event_ids AS text[])) AS k(key, event_id)
        ORDER BY k.key
        ON CONFLICT (source_id, key) DO NOTHING
        RETURNING event_id
    ), incoming AS (
        SELECT e.*
        FROM unnest(
            CAST(:event_ids AS text[]), CAST(:types AS text[]), CAST(:names AS text[]),
            CAST(:vendor_event_ids AS text[]), CAST(:subject_kinds AS text[]),
            CAST(:subject_ids AS text[]), CAST(:occurred_ats AS timestamptz[]),
            CAST(:envelopes AS text[])
        ) WITH ORDINALITY AS e(id, type, name, vendor_event_id, subject_kind, subject_id,
                               occurred_at, envelope, position)
        JOIN fresh ON fresh.event_id = e.id
    ), stored AS (
        INSERT INTO events (id, source_id, request_id, type, vendor, vendor_event_name,
                            vendor_event_id, subject_kind, subject_id, occurred_at,
                            received_at, envelope)
        SELECT id, :source_id, :id, type, :vendor, name, vendor_event_id, subject_kind,
               subject_id, occurred_at, :received_at, envelope
        FROM incoming
        RETURNING id
    ), planned AS ({INSERT_PLANNED}), summary AS (
        SELECT count(*) AS accepted,
               coalesce(array_agg(id ORDER BY position), '{{}}') AS event_ids
        FROM incoming
    )
    INSERT INTO inbound_requests (id, source_id, slug, received_at, verdict, reason, status_code,
                                  body_size, content_type, remote_addr, headers, body,
                                  accepted_count, duplicate_count, event_ids)
    SELECT :id, :source_id, :slug, :received_at,
           CASE WHEN summary.accepted > 0 OR :total = 0 THEN 'accepted' ELSE 'duplicate' END,
           :reason, 200, :body_size, :content_type, :remote_addr, CAST(:headers AS jsonb),
           :body, summary.accepted, :total - summary.accepted, summary.event_ids
    FROM summary
    RETURNING verdict, event_ids,
              (SELECT count(*) FROM planned) AS deliveries,
              -- NOTIFY is sent when the statement commits: a wake-up only when there is work.
              (SELECT count(pg_notify(:channel, ''))
               FROM (SELECT 1 FROM planned LIMIT 1) AS any_delivery) AS woken
    """  # noqa: S608 (formatted only with the outbox's own constants)
).bindparams(
    bindparam("received_at", type_=DateTime(timezone=True)),
    bindparam("body", type_=LargeBinary()),
    bindparam("occurred_ats", type_=ARRAY(DateTime(timezone=True))),
    bindparam("delivery_event_timestamps", type_=ARRAY(DateTime(timezone=True))),
    bindparam("keys", type_=ARRAY(String())),
)


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """An event to store if its dedupe key is fresh."""

    id: str
    dedupe_key: str
    type: str
    vendor_event_name: str
    vendor_event_id: str | None
    subject_kind: str
    subject_id: str | None
    occurred_at: datetime
    envelope: str


def _log_params(row: RequestLogRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "source_id": row.source_id,
        "slug": row.slug,
        "received_at": row.received_at,
        "verdict": row.verdict,
        "reason": row.reason,
        "status_code": row.status_code,
        "body_size": row.body_size,
        "content_type": row.content_type,
        "remote_addr": row.remote_addr,
        "headers": dumps(row.headers).decode(),
        "body": row.body,
    }


class IngestRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def lookup(self, slug: str) -> tuple[SourceRow, Sequence[SubscriptionTarget]] | None:
        row = (await self.connection.execute(_LOOKUP, {"slug": slug})).one_or_none()
        if row is None:
            return None
        source = SourceRow(
            id=row.id,
            slug=row.slug,
            vendor=row.vendor,
            active=row.active,
            rate_limit_per_second=row.rate_limit_per_second,
            verification_token=row.verification_token,
            mapping_json=row.mapping_json,
        )
        return source, _targets(row.subscriptions_json)

    async def record(self, row: RequestLogRow) -> None:
        """A request that stored no event: rejected, invalid, or a vendor's ping."""
        await self.connection.execute(_RECORD, _log_params(row))

    async def store(
        self,
        row: RequestLogRow,
        *,
        vendor: str,
        total_events: int,
        events: Sequence[PlannedEvent],
        deliveries: Sequence[PlannedDelivery],
    ) -> StoredWebhook:
        params = _log_params(row)
        params.update(
            channel=NOTIFY_CHANNEL,
            vendor=vendor,
            total=total_events,
            keys=[event.dedupe_key for event in events],
            event_ids=[event.id for event in events],
            types=[event.type for event in events],
            names=[event.vendor_event_name for event in events],
            vendor_event_ids=[event.vendor_event_id for event in events],
            subject_kinds=[event.subject_kind for event in events],
            subject_ids=[event.subject_id for event in events],
            occurred_ats=[event.occurred_at for event in events],
            envelopes=[event.envelope for event in events],
            **planned_params(deliveries),
        )
        result = (await self.connection.execute(_STORE, params)).one()
        return StoredWebhook(
            verdict=result.verdict, event_ids=list(result.event_ids), deliveries=result.deliveries
        )
