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
from relay.db.driver import DriverStatement, fetch
from relay.ingest.models import RequestLog
from relay.outbox.states import TAKES_NEW_DELIVERIES, liveness_in_sql
from relay.outbox.transitions import (
    INSERT_PLANNED,
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
    # The configuration's number when this was read (see ConfigVersion).
    config_version: int


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
class WebhookToStore:
    """A verified, parsed webhook: its request log row, its events if their keys are fresh,
    and the deliveries of those events."""

    row: RequestLogRow
    vendor: str
    config_version: int
    total_events: int
    events: Sequence[PlannedEvent]
    deliveries: Sequence[PlannedDelivery]


@dataclass(frozen=True, slots=True)
class StoredWebhook:
    """What the store statement wrote: the events not seen before, in the order given."""

    verdict: str
    event_ids: list[str]
    deliveries: int


# The configuration's number, as both the lookup and the store read it.
_CONFIG_VERSION = "coalesce((SELECT version FROM config_version), 0)"

# The live subscriptions ride along with the source lookup, as one JSON document, so the
# ingest pays one round trip for both; fan-out needs them once the body is verified.
_LOOKUP = text(
    f"""
    SELECT {_CONFIG_VERSION} AS config_version,
           s.id, s.slug, s.vendor, s.active, s.rate_limit_per_second,
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

# Several webhooks in one statement (group commit, see batcher.py), each with its own request
# log row, events and deliveries. A webhook is written only if the configuration it was
# verified and fanned out with is still current (its `config_version`); the others are left
# out of the result, to be handled again with the configuration as it is now.
# Dedupe keys first: a key another request already holds makes its event a duplicate (a
# concurrent request with the same key waits on the unique index until that one commits), and
# of two webhooks in the same statement sharing a key the first wins. Keys go in sorted, so two
# statements sharing several keys wait on them in the same order instead of deadlocking. Only
# events whose key was fresh are inserted, and only their deliveries; the request log rows come
# last so that their verdicts and counts describe what was stored. No NOTIFY here: it would
# make every commit queue on PostgreSQL's notify lock (see outbox/wakeup.py).
_STORE = text(
    f"""
    WITH requests AS (
        SELECT *
        FROM unnest(
            CAST(:r_ids AS text[]), CAST(:r_source_ids AS text[]), CAST(:r_slugs AS text[]),
            CAST(:r_received_ats AS timestamptz[]), CAST(:r_vendors AS text[]),
            CAST(:r_reasons AS text[]), CAST(:r_body_sizes AS integer[]),
            CAST(:r_content_types AS text[]), CAST(:r_remote_addrs AS text[]),
            CAST(:r_headers AS jsonb[]), CAST(:r_bodies AS bytea[]), CAST(:r_totals AS integer[]),
            CAST(:r_config_versions AS bigint[])
        ) AS r(id, source_id, slug, received_at, vendor, reason, body_size, content_type,
               remote_addr, headers, body, total, config_version)
        WHERE r.config_version = {_CONFIG_VERSION}
    ), offered AS (
        SELECT e.*, r.source_id, r.vendor, r.received_at
        FROM unnest(
            CAST(:e_request_ids AS text[]), CAST(:keys AS text[]), CAST(:event_ids AS text[]),
            CAST(:types AS text[]), CAST(:names AS text[]), CAST(:vendor_event_ids AS text[]),
            CAST(:subject_kinds AS text[]), CAST(:subject_ids AS text[]),
            CAST(:occurred_ats AS timestamptz[]), CAST(:envelopes AS text[])
        ) WITH ORDINALITY AS e(request_id, key, id, type, name, vendor_event_id, subject_kind,
                               subject_id, occurred_at, envelope, position)
        JOIN requests AS r ON r.id = e.request_id
    ), fresh AS (
        INSERT INTO dedupe_keys (source_id, key, event_id, created_at)
        SELECT source_id, key, id, received_at
        FROM offered
        ORDER BY source_id, key, position
        ON CONFLICT (source_id, key) DO NOTHING
        RETURNING event_id
    ), incoming AS (
        SELECT offered.* FROM offered JOIN fresh ON fresh.event_id = offered.id
    ), stored AS (
        INSERT INTO events (id, source_id, request_id, type, vendor, vendor_event_name,
                            vendor_event_id, subject_kind, subject_id, occurred_at,
                            received_at, envelope)
        SELECT id, source_id, request_id, type, vendor, name, vendor_event_id, subject_kind,
               subject_id, occurred_at, received_at, envelope
        FROM incoming
        RETURNING id, received_at
    ), planned AS ({INSERT_PLANNED}), summary AS (
        SELECT r.id,
               count(incoming.id) AS accepted,
               coalesce(array_agg(incoming.id ORDER BY incoming.position)
                        FILTER (WHERE incoming.id IS NOT NULL), '{{}}') AS event_ids,
               (SELECT count(*) FROM planned JOIN incoming AS i ON i.id = planned.event_id
                WHERE i.request_id = r.id) AS deliveries
        FROM requests AS r LEFT JOIN incoming ON incoming.request_id = r.id
        GROUP BY r.id
    ), logged AS (
        INSERT INTO inbound_requests (id, source_id, slug, received_at, verdict, reason,
                                      status_code, body_size, content_type, remote_addr,
                                      headers, body, accepted_count, duplicate_count, event_ids)
        SELECT r.id, r.source_id, r.slug, r.received_at,
               CASE WHEN summary.accepted > 0 OR r.total = 0 THEN 'accepted'
                    ELSE 'duplicate' END,
               r.reason, 200, r.body_size, r.content_type, r.remote_addr, r.headers, r.body,
               summary.accepted, r.total - summary.accepted, summary.event_ids
        FROM requests AS r JOIN summary ON summary.id = r.id
        RETURNING id, verdict
    )
    SELECT logged.id, logged.verdict, summary.event_ids, summary.deliveries
    FROM logged JOIN summary ON summary.id = logged.id
    """  # noqa: S608 (formatted only with the outbox's own constants)
).bindparams(
    bindparam("r_received_ats", type_=ARRAY(DateTime(timezone=True))),
    bindparam("r_bodies", type_=ARRAY(LargeBinary())),
    bindparam("occurred_ats", type_=ARRAY(DateTime(timezone=True))),
    bindparam("delivery_event_timestamps", type_=ARRAY(DateTime(timezone=True))),
    bindparam("keys", type_=ARRAY(String())),
)
# Run hundreds of times a second: by the driver itself (see db/driver.py).
_STORE_BY_DRIVER = DriverStatement.of(_STORE)


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
            config_version=row.config_version,
        )
        return source, _targets(row.subscriptions_json)

    async def record(self, row: RequestLogRow) -> None:
        """A request that stored no event: rejected, invalid, or a vendor's ping."""
        await self.connection.execute(_RECORD, _log_params(row))

    async def store(self, webhooks: Sequence[WebhookToStore]) -> list[StoredWebhook | None]:
        """Stores the webhooks in one statement; the results are in the order given, None for
        each webhook whose configuration changed since it was read (nothing of it written)."""
        rows = [webhook.row for webhook in webhooks]
        events = [(webhook.row.id, event) for webhook in webhooks for event in webhook.events]
        params: dict[str, Any] = {
            "r_ids": [row.id for row in rows],
            "r_source_ids": [row.source_id for row in rows],
            "r_slugs": [row.slug for row in rows],
            "r_received_ats": [row.received_at for row in rows],
            "r_vendors": [webhook.vendor for webhook in webhooks],
            "r_reasons": [row.reason for row in rows],
            "r_body_sizes": [row.body_size for row in rows],
            "r_content_types": [row.content_type for row in rows],
            "r_remote_addrs": [row.remote_addr for row in rows],
            "r_headers": [dumps(row.headers).decode() for row in rows],
            "r_bodies": [row.body for row in rows],
            "r_totals": [webhook.total_events for webhook in webhooks],
            "r_config_versions": [webhook.config_version for webhook in webhooks],
            "e_request_ids": [request_id for request_id, _ in events],
            "keys": [event.dedupe_key for _, event in events],
            "event_ids": [event.id for _, event in events],
            "types": [event.type for _, event in events],
            "names": [event.vendor_event_name for _, event in events],
            "vendor_event_ids": [event.vendor_event_id for _, event in events],
            "subject_kinds": [event.subject_kind for _, event in events],
            "subject_ids": [event.subject_id for _, event in events],
            "occurred_ats": [event.occurred_at for _, event in events],
            "envelopes": [event.envelope for _, event in events],
            **planned_params([item for webhook in webhooks for item in webhook.deliveries]),
        }
        results = {
            result["id"]: StoredWebhook(
                verdict=result["verdict"],
                event_ids=list(result["event_ids"]),
                deliveries=result["deliveries"],
            )
            for result in await fetch(self.connection, _STORE_BY_DRIVER, params)
        }
        return [results.get(row.id) for row in rows]
