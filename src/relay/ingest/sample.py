"""`POST /v1/sources/{source_id}/test`: the relay sends itself a webhook as the source's vendor
would, signed with the source's own credentials, through the real ingest: verified, parsed,
stored, fanned out to the subscriptions and written to the request log like any other.

The relay holds the credentials, so no one has to copy a secret out of it to try a source (the
API shows them masked), and a test proves what a vendor's request would meet.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from relay.apikeys.auth import require_admin
from relay.core.errors import Conflict, NotFound
from relay.core.settings import Settings
from relay.db.session import DbSession
from relay.ingest.service import IncomingWebhook, IngestService
from relay.openapi import CONFLICT
from relay.sources.repository import SourceRepository
from relay.sources.service import SourceService
from relay.vendors.samples import sample_webhook
from relay.verification.credentials import credentials_for

router = APIRouter(prefix="/v1/sources", tags=["sources"], dependencies=[Depends(require_admin)])

# What the request log shows as the sender of a test.
TEST_SENDER = "relay-test"


class SourceTestIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {},
                {
                    "body": {
                        "webhook_type": "task_created",
                        "id": 88412455,
                        "title": "Order 100-78030",
                        "external_id": "100-78030",
                        "created_at": "2026-03-10T09:41:27Z",
                    }
                },
            ]
        },
    )

    body: dict[str, Any] | list[Any] | None = Field(
        None,
        description="The webhook to send, as the vendor sends it. Omitted: a new order in the "
        "vendor's format, with ids of its own, so every test is a new event.",
    )


class SourceTestOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "req_01JQ2W3B4C5D6E7F8G9H0J1K2M",
                    "status_code": 200,
                    "verdict": "accepted",
                    "reason": "",
                    "accepted": 1,
                    "duplicates": 0,
                    "event_ids": ["evt_01JQ2W3B4D7Q9R1S2T3V4W5X6Y"],
                }
            ]
        }
    )

    request_id: str = Field(description="The request log entry: GET /v1/requests/{request_id}.")
    status_code: int = Field(description="What the relay would have answered the vendor.")
    verdict: str = Field(description="accepted, duplicate, ping, rejected or invalid.")
    reason: str = Field(description="Why it was rejected or invalid; notes when accepted.")
    accepted: int = Field(description="Events stored.")
    duplicates: int = Field(description="Events the relay already had.")
    event_ids: list[str] = Field(description="The stored events: GET /v1/events/{event_id}.")


@router.post(
    "/{source_id}/test",
    response_model=SourceTestOut,
    responses=CONFLICT,
    summary="Send the source a test webhook, signed with its credentials",
)
async def send_test_webhook(
    source_id: str,
    request: Request,
    session: DbSession,
    payload: SourceTestIn | None = Body(None),
) -> SourceTestOut:
    settings: Settings = request.app.state.settings
    source = await SourceService(SourceRepository(session)).get(source_id)
    # The ingest reads on its own connection; this one has nothing more to do.
    await session.close()
    if not source.active:
        raise Conflict(
            f"source '{source.slug}' is inactive, so it would refuse the test: switch it on "
            f"with `relay sources update {source.slug} --active`"
        )
    service: IngestService = request.app.state.ingest
    found = await service.lookup(source.slug)
    if found is None:
        raise NotFound(f"no source with id or slug '{source_id}'")
    ingest_source, subscriptions = found
    now = datetime.now(UTC)
    document = payload.body if payload is not None and payload.body is not None else None
    if document is None:
        document = sample_webhook(source.vendor, unique=secrets.token_hex(8), now=now)
    body = orjson.dumps(document)
    credentials = credentials_for(
        ingest_source.verification.current,
        body,
        source_slug=source.slug,
        now=now,
        default_ttl=settings.oauth_token_ttl,
    )
    webhook = IncomingWebhook(
        request_id=request.state.request_id,
        slug=source.slug,
        body=body,
        headers={
            "content-type": "application/json",
            "user-agent": TEST_SENDER,
            **credentials.headers,
        },
        query=credentials.query,
        content_type="application/json",
        remote_addr=TEST_SENDER,
        received_at=now,
    )
    outcome = await service.ingest(webhook, ingest_source, subscriptions)
    return SourceTestOut(
        request_id=webhook.request_id,
        status_code=outcome.status_code,
        verdict=outcome.verdict,
        reason=outcome.reason,
        accepted=outcome.accepted,
        duplicates=outcome.duplicates,
        event_ids=outcome.event_ids,
    )
