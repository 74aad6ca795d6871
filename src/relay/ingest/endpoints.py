from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from relay.apikeys.auth import require_admin
from relay.core.errors import NotFound, answer_exception, error_response
from relay.core.logging import get_logger
from relay.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, checked_cursor
from relay.core.responses import JSONResponse
from relay.core.serving import MALFORMED_BODY, BodyTimeout
from relay.core.settings import Settings
from relay.db.session import DbSession
from relay.ingest.limits import limiter_of
from relay.ingest.models import RequestLog
from relay.ingest.repository import RequestLogRepository
from relay.ingest.service import IncomingWebhook, IngestService, Verdict
from relay.observability import metrics
from relay.sources.repository import SourceRepository
from relay.sources.service import SourceService, verification_of
from relay.verification.schemes import OAuth2Verification
from relay.verification.verify import check_client_credentials, issue_oauth_token

log = get_logger(__name__)

# The metrics verdict of a request refused by its source's rate limit; it has no request log row.
RATE_LIMITED = "rate_limited"

router = APIRouter(tags=["ingest"])
admin_router = APIRouter(
    prefix="/v1/requests", tags=["requests"], dependencies=[Depends(require_admin)]
)


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """Reads the body, giving up as soon as it passes `limit` bytes, before it is all sent.

    Raises BodyTooLarge, or starlette's ClientDisconnect when the client goes away first."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _remote_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post(
    "/ingest/{slug}",
    summary="Receive a vendor webhook",
    responses={
        401: {"description": "bad or missing credentials"},
        403: {"description": "source inactive"},
        404: {"description": "unknown slug"},
        408: {"description": "body not received within RELAY_REQUEST_BODY_TIMEOUT"},
        413: {"description": "body too large"},
        429: {"description": "the source's rate_limit_per_second is exceeded; see Retry-After"},
        400: {"description": "body is not JSON the vendor adapter understands"},
        503: {"description": "database unavailable; retry"},
    },
)
async def ingest_webhook(slug: str, request: Request) -> JSONResponse:
    request_id: str = request.state.request_id
    settings: Settings = request.app.state.settings
    webhook = IncomingWebhook(
        request_id=request_id,
        slug=slug,
        body=b"",
        headers={name.lower(): value for name, value in request.headers.items()},
        query=dict(request.query_params),
        content_type=request.headers.get("content-type"),
        remote_addr=_remote_addr(request),
    )
    service: IngestService = request.app.state.ingest
    found = await service.lookup(slug)
    if found is None:
        # Logged, not stored: anyone may send these, in any number.
        log.info("ingest_unknown_source", source=slug, remote_addr=webhook.remote_addr)
        return error_response(404, "unknown_source", f"no source with slug '{slug}'")
    source, subscriptions = found
    if not source.active:
        # What is kept in memory may be a moment old (directory.py): a refusal is made on what
        # the database says.
        found = await service.lookup(slug, fresh=True)
        if found is None:
            return error_response(404, "unknown_source", f"no source with slug '{slug}'")
        source, subscriptions = found
    if not source.active:
        refused = await service.record_inactive(webhook, source)
        return error_response(refused.status_code, refused.error or "refused", refused.reason)

    # Checked before the body is read, and refused without a write: a flood must not turn into
    # as many inserts into the request log, which would load the database every source shares.
    retry_after = limiter_of(request.app.state).retry_after(source.id, source.rate_limit_per_second)
    if retry_after:
        metrics.current().inbound_request(
            source=source.slug, vendor=source.vendor, verdict=RATE_LIMITED
        )
        reason = f"rate limit of {source.rate_limit_per_second:g} requests per second exceeded"
        return error_response(
            429, "rate_limited", reason, headers={"Retry-After": str(retry_after)}
        )

    # No database connection is held while the body arrives (the service holds one only for
    # each statement), so a slow client ties up none. Its deadline is every route's
    # (BodyDeadlineMiddleware); here a late body is also written to the request log.
    limit = settings.max_body_bytes
    try:
        webhook.body = await read_body(request, limit)
    except BodyTooLarge:
        reason = f"body is larger than the limit of {limit} bytes"
        await service.record_rejection(webhook, source, status_code=413, reason=reason)
        return error_response(413, "body_too_large", reason)
    except BodyTimeout as late:
        await service.record_rejection(webhook, source, status_code=408, reason=late.detail)
        return error_response(408, "request_timeout", late.detail, headers=late.headers)
    except ClientDisconnect:
        if not getattr(request.state, MALFORMED_BODY, False):
            return _client_went_away(slug)
        # The HTTP parser refused the body and has answered 400; the vendor's request is kept
        # in the log, since its sender may well be a genuine one with a broken client.
        reason = "the body's chunked transfer encoding is malformed (refused by the HTTP parser)"
        await service.record_rejection(
            webhook,
            source,
            status_code=400,
            reason=reason,
            verdict=Verdict.INVALID,
            event="ingest_malformed_body",
        )
        return error_response(400, "malformed_body", reason)

    # The answer leaves only after the statement storing it all has committed.
    outcome = await service.ingest(webhook, source, subscriptions)
    if outcome.error is not None:
        retry_soon = {"Retry-After": "1"} if outcome.status_code == 503 else None
        return error_response(
            outcome.status_code, outcome.error, outcome.reason, headers=retry_soon
        )
    return JSONResponse(
        {
            "accepted": outcome.accepted,
            "duplicates": outcome.duplicates,
            "event_ids": outcome.event_ids,
            "request_id": request_id,
            **({"ping": True} if outcome.verdict == Verdict.PING else {}),
        }
    )


INGEST_PREFIX = "/ingest/"


def ingest_slug(scope: Scope) -> str | None:
    """The slug when `scope` is a webhook POST to /ingest/{slug}, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if not path.startswith(INGEST_PREFIX):
        return None
    slug = path[len(INGEST_PREFIX) :]
    return slug if slug and "/" not in slug else None


async def serve_ingest(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /ingest/{slug} as a bare ASGI app: the relay's own middlewares around it, but not
    FastAPI's routing and middleware stack, which this one path does not need and which cost
    it a third of its time per webhook (docs/benchmarks.md). The FastAPI route above stays,
    for the OpenAPI description; errors are answered as the app's handlers answer them. The
    caller has found the slug (`ingest_slug`) and put it in the scope's path parameters."""
    request = Request(scope, receive)
    try:
        response = await ingest_webhook(request.path_params["slug"], request)
    except Exception as exc:
        response = await answer_exception(request, exc)
    await response(scope, receive, send)


def _client_went_away(slug: str) -> JSONResponse:
    # Nothing was stored and no one is left to read an answer; the vendor retries what it did
    # not see acknowledged. A log line, not a traceback: it is the client's doing, not a fault.
    log.info("ingest_client_disconnected", source=slug)
    return error_response(400, "client_disconnected", "the client closed the connection mid-body")


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    # RFC 6749 section 5.2: token endpoint errors have their own shape.
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="relay"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _token_request_fields(request: Request, body: bytes) -> dict[str, str]:
    content_type = request.headers.get("content-type", "")
    fields: dict[str, str] = {}
    if "application/json" in content_type:
        try:
            parsed: Any = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError:
            return {}
        if isinstance(parsed, dict):
            fields = {key: value for key, value in parsed.items() if isinstance(value, str)}
    else:
        # RFC 6749 token requests are application/x-www-form-urlencoded.
        try:
            fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            return {}
    authorization = request.headers.get("authorization", "")
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() == "basic" and encoded:
        try:
            client_id, _, client_secret = (
                base64.b64decode(encoded, validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return fields
        fields.setdefault("client_id", client_id)
        fields.setdefault("client_secret", client_secret)
    return fields


@router.post("/ingest/{slug}/oauth/token", summary="OAuth 2.0 client-credentials token endpoint")
async def issue_token(slug: str, request: Request, session: DbSession) -> JSONResponse:
    source = await SourceRepository(session).get_by_slug(slug)
    if source is None:
        return _oauth_error(404, "invalid_request", f"no source with slug '{slug}'")
    config = verification_of(source).current
    if not isinstance(config, OAuth2Verification):
        return _oauth_error(
            400, "unauthorized_client", f"source '{slug}' does not use OAuth 2.0 verification"
        )
    if not source.active:
        return _oauth_error(403, "unauthorized_client", f"source '{slug}' is inactive")
    limit = 64 * 1024
    try:
        body = await read_body(request, limit)
    except BodyTooLarge:
        return _oauth_error(413, "invalid_request", f"body is larger than {limit} bytes")
    except BodyTimeout as late:
        return _oauth_error(408, "invalid_request", late.detail)
    except ClientDisconnect:
        return _client_went_away(slug)
    fields = _token_request_fields(request, body)
    if fields.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    if not check_client_credentials(
        config, fields.get("client_id", ""), fields.get("client_secret", "")
    ):
        return _oauth_error(401, "invalid_client", "client_id or client_secret is wrong")
    token, expires_in = issue_oauth_token(
        config,
        source_slug=slug,
        now=datetime.now(UTC),
        default_ttl=request.app.state.settings.oauth_token_ttl,
    )
    return JSONResponse(
        {"access_token": token, "token_type": "Bearer", "expires_in": expires_in},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


_REQUEST_EXAMPLE: dict[str, Any] = {
    "id": "req_01JQ2VB3B0A1B2C3D4E5F6G7H8",
    "source_id": "src_01JQ2V5M7K8T9W3X4Y5Z6A7B8C",
    "slug": "routestripe-nl",
    "received_at": "2026-03-10T05:51:02.401Z",
    "verdict": "rejected",
    "reason": "signature does not match",
    "status_code": 401,
    "body_size": 477,
    "content_type": "application/json",
    "remote_addr": "203.0.113.24",
    "accepted": 0,
    "duplicates": 0,
    "event_ids": [],
}


class RequestLogOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_REQUEST_EXAMPLE]})

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
    accepted: int
    duplicates: int
    event_ids: list[str]


class RequestLogDetail(RequestLogOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_REQUEST_EXAMPLE,
                    "body_size": 67,
                    "headers": {
                        "content-type": "application/json",
                        "user-agent": "RouteStripe-Webhooks/1.0",
                        "x-partner-id": "7",
                        "x-signature": "[redacted]",
                    },
                    "body": '{"event":"batch","id":"bth_698343f4f1f51","provider":"ROUTESTRIPE"}',
                    "body_encoding": "utf-8",
                }
            ]
        }
    )

    headers: dict[str, str]
    body: str | None = None
    body_encoding: str | None = None


def _summary(row: RequestLog) -> dict[str, Any]:
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
        "accepted": row.accepted_count,
        "duplicates": row.duplicate_count,
        "event_ids": row.event_ids,
    }


@admin_router.get("", response_model=Page[RequestLogOut])
async def list_requests(
    session: DbSession,
    source: str | None = Query(None, description="Source id or slug."),
    verdict: str | None = Query(
        None,
        pattern="^(accepted|duplicate|ping|rejected|invalid)$",
        description="accepted, duplicate, ping, rejected or invalid.",
    ),
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> Page[RequestLogOut]:
    source = await SourceService(SourceRepository(session)).resolve_filter("source", source)
    rows = await RequestLogRepository(session).list(
        source=source, verdict=verdict, limit=limit, cursor=checked_cursor(cursor)
    )
    return Page[RequestLogOut](
        data=[RequestLogOut(**_summary(row)) for row in rows],
        next_cursor=rows[-1].id if len(rows) == limit else None,
    )


@admin_router.get("/{request_id}", response_model=RequestLogDetail)
async def get_request(request_id: str, session: DbSession) -> RequestLogDetail:
    row = await RequestLogRepository(session).get(request_id)
    if row is None:
        raise NotFound(f"no inbound request with id '{request_id}'")
    detail = RequestLogDetail(**_summary(row), headers=row.headers)
    if row.body is not None:
        try:
            detail.body = row.body.decode("utf-8")
            detail.body_encoding = "utf-8"
        except UnicodeDecodeError:
            detail.body = base64.b64encode(row.body).decode()
            detail.body_encoding = "base64"
    return detail
