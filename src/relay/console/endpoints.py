"""The console's pages and forms. Every read and every action goes through the services the
/v1 API uses; this module only turns their answers into pages. Actions are POSTed forms with
the session's CSRF token, answered by a redirect (Post/Redirect/Get) with a one-time notice."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import JSONResponse, RedirectResponse, Response

from relay.apikeys.auth import principal_for_token
from relay.apikeys.repository import ApiKeyRepository
from relay.apikeys.schemas import ApiKeyCreate
from relay.apikeys.service import ApiKeyService
from relay.apikeys.service import to_out as key_out
from relay.console.charts import minute_chart
from relay.console.rendering import ConsoleRoute, render
from relay.console.security import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    Viewer,
    checked_form,
    current_viewer,
    end_session,
    flash,
    login_form_token,
    login_form_valid,
    set_login_cookie,
    start_session,
)
from relay.core.errors import Forbidden, Invalid, NotFound, RelayError, Unauthorized
from relay.core.netguard import DestinationPolicy
from relay.core.pagination import checked_cursor
from relay.core.scopes import SCOPES
from relay.core.settings import Settings
from relay.db.session import DbSession
from relay.deliveries.repository import DeliveryQuery
from relay.deliveries.service import DeliveryService
from relay.dispatcher.sender import DeliveryClient
from relay.events.endpoints import containment, known_event_types
from relay.events.repository import EventQuery, EventRepository
from relay.ingest.repository import RequestLogRepository
from relay.jobs.models import Job
from relay.jobs.schemas import RecoverIn
from relay.jobs.service import JobService
from relay.observability.metrics import PendingBacklog
from relay.observability.repository import MetricsRepository
from relay.sources.models import Source
from relay.sources.repository import SourceRepository
from relay.sources.schemas import SourceCreate, SourceOut, SourceUpdate
from relay.sources.service import SourceService, validation_message
from relay.sources.service import to_out as source_out
from relay.stats.repository import MinuteCount
from relay.stats.schemas import StatsOut
from relay.stats.service import StatsService
from relay.subscriptions.destinations import DestinationChecker
from relay.subscriptions.filters import FilterError, validate_filter
from relay.subscriptions.models import Subscription
from relay.subscriptions.repository import SubscriptionRepository
from relay.subscriptions.schemas import SubscriptionCreate, SubscriptionOut, SubscriptionUpdate
from relay.subscriptions.service import SubscriptionService, resolve_source_ids
from relay.subscriptions.service import to_out as subscription_out
from relay.vendors.registry import VENDORS

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

SignedIn = Annotated[Viewer, Depends(current_viewer)]
PAGE = 50
# Windows offered by the filter and recovery forms, as the operator thinks of them.
WINDOWS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DATA_SEARCH_WINDOW = "24h"
VERDICTS = ("accepted", "duplicate", "ping", "rejected", "invalid")
DELIVERY_STATUSES = ("pending", "succeeded", "failed")


def _now() -> datetime:
    return datetime.now(UTC)


def _back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _require(viewer: Viewer, action: str) -> None:
    if not viewer.can(action):
        raise Forbidden(
            f"this needs the '{viewer.needs(action)}' scope; you signed in with the "
            f"'{viewer.principal.scope}' scope: sign in with a key that has it"
        )


def _window(name: str | None) -> timedelta | None:
    if not name:
        return None
    if name not in WINDOWS:
        raise Invalid(f"window: use one of {', '.join(WINDOWS)}")
    return WINDOWS[name]


def _instant(field: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise Invalid(f"{field}: '{value}' is not a time like 2026-03-10T06:00:00Z") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


M = TypeVar("M", bound=BaseModel)


def _payload(model: type[M], **fields: Any) -> M:
    """A request body built from a form, its problems said as the API says them."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise Invalid(validation_message(exc)) from exc


def _listed(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _subscriptions(session: DbSession, request: Request) -> SubscriptionService:
    settings: Settings = request.app.state.settings
    return SubscriptionService(
        SubscriptionRepository(session),
        DestinationChecker(DestinationPolicy.from_settings(settings)),
    )


def _next_cursor(rows: Any) -> str | None:
    return rows[-1].id if len(rows) == PAGE else None


# --- Sign-in -------------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _login_form(request, error=None, status_code=200)


def _login_form(request: Request, *, error: str | None, status_code: int) -> Response:
    token, signed = login_form_token(request)
    response = render(
        request,
        "login.html",
        None,
        {"title": "Sign in", "error": error, "csrf": token},
        status_code=status_code,
    )
    set_login_cookie(request, response, signed)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    token = str(form.get("token", "")).strip()
    if not login_form_valid(request, str(form.get(CSRF_FIELD, ""))):
        return _login_form(
            request, error="The form expired: sign in again from this page.", status_code=403
        )
    if not token:
        return _login_form(request, error="Enter an API key or the admin token.", status_code=401)
    try:
        principal = await principal_for_token(request, token)
    except Unauthorized as exc:
        return _login_form(request, error=exc.message, status_code=401)
    response = _back("/console")
    start_session(request, response, principal)
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    return response


@router.post("/logout")
async def logout(request: Request, viewer: SignedIn) -> Response:
    await checked_form(request, viewer)
    response = _back("/console/login")
    end_session(response)
    return response


# --- Dashboard -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attention:
    subscription_id: str
    url: str
    state: str
    why: str
    pending: int
    oldest_pending_seconds: float | None
    failed_last_hour: int


@router.get("")
async def dashboard(request: Request, viewer: SignedIn) -> Response:
    now = _now()
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory

    # The three reads are independent: each on a connection of its own, side by side, so the
    # page waits for the slowest (the day's stats), not for their sum.
    async def day_stats() -> StatsOut:
        async with factory() as session:
            return await StatsService(session).stats(now=now)

    async def per_minute() -> list[MinuteCount]:
        async with factory() as session:
            return await StatsService(session).per_minute(now=now, window=timedelta(hours=24))

    async def pending() -> list[PendingBacklog]:
        async with factory() as session:
            return await MetricsRepository(session).backlog(now=now)

    stats, minutes, waiting = await asyncio.gather(day_stats(), per_minute(), pending())
    backlog = {row.subscription_id: row for row in waiting}
    attention = []
    for row in stats.subscriptions:
        if row.deleted:
            continue
        oldest = (
            backlog[row.subscription_id].oldest_age_seconds
            if row.subscription_id in backlog
            else None
        )
        reasons = []
        if row.state != "active":
            reasons.append(row.state)
        if not row.active:
            reasons.append("paused")
        if row.last_hour.failed:
            reasons.append(f"{row.last_hour.failed} failed in the last hour")
        if oldest is not None and oldest > 300:
            reasons.append("backlog older than 5 min")
        if row.last_hour.pending > row.last_hour.delivered and row.last_hour.pending > 10:
            reasons.append("backlog growing")
        if reasons:
            attention.append(
                Attention(
                    subscription_id=row.subscription_id,
                    url=row.url,
                    state="paused" if not row.active and row.state == "active" else row.state,
                    why=", ".join(reasons),
                    pending=row.pending_now,
                    oldest_pending_seconds=oldest,
                    failed_last_hour=row.last_hour.failed,
                )
            )
    return render(
        request,
        "dashboard.html",
        viewer,
        {
            "title": "Overview",
            "stats": stats,
            "chart": minute_chart(minutes, now=now, window=timedelta(hours=24)),
            "attention": attention,
        },
    )


# --- Deliveries ----------------------------------------------------------------------------


@router.get("/deliveries")
async def deliveries_page(
    request: Request,
    session: DbSession,
    viewer: SignedIn,
    status: str | None = Query(None),
    subscription_id: str | None = Query(None),
    window: str | None = Query(None),
    cursor: str | None = Query(None),
) -> Response:
    status = status or None
    if status is not None and status not in DELIVERY_STATUSES:
        raise Invalid(f"status: use one of {', '.join(DELIVERY_STATUSES)}")
    span = _window(window)
    rows = await DeliveryService(session).list(
        DeliveryQuery(
            subscription_id=subscription_id or None,
            status=status,
            since=_now() - span if span else None,
        ),
        limit=PAGE,
        cursor=checked_cursor(cursor or None),
    )
    return render(
        request,
        "deliveries.html",
        viewer,
        {
            "title": "Deliveries",
            "deliveries": rows,
            "next_cursor": _next_cursor(rows),
            "filters": {
                "status": status or "",
                "subscription_id": subscription_id or "",
                "window": window or "",
            },
            "statuses": DELIVERY_STATUSES,
            "windows": WINDOWS,
        },
    )


@router.get("/deliveries/{delivery_id}")
async def delivery_page(
    delivery_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    service = DeliveryService(session)
    delivery = await service.get(delivery_id)
    attempts = await service.attempts(delivery_id)
    subscription = await _subscriptions(session, request).get(delivery.subscription_id)
    return render(
        request,
        "delivery.html",
        viewer,
        {
            "title": f"Delivery {delivery.id}",
            "delivery": delivery,
            "attempts": attempts,
            "subscription": subscription,
        },
    )


@router.post("/deliveries/{delivery_id}/retry")
async def retry_delivery(
    delivery_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    await checked_form(request, viewer)
    _require(viewer, "retry")
    response = _back(f"/console/deliveries/{delivery_id}")
    try:
        await DeliveryService(session).retry(delivery_id, now=_now())
        await session.commit()
    except RelayError as exc:
        flash(request, response, "error", exc.message)
        return response
    flash(request, response, "ok", "Retry queued: the next attempt goes out now.")
    return response


# --- Subscriptions -------------------------------------------------------------------------


@router.get("/subscriptions")
async def subscriptions_page(
    request: Request, session: DbSession, viewer: SignedIn, cursor: str | None = Query(None)
) -> Response:
    rows = await _subscriptions(session, request).list(
        limit=PAGE, cursor=checked_cursor(cursor or None)
    )
    now = _now()
    counts = await StatsService(session).day_counts([row.id for row in rows], now=now)
    backlog = {b.subscription_id: b for b in await MetricsRepository(session).backlog(now=now)}
    return render(
        request,
        "subscriptions.html",
        viewer,
        {
            "title": "Subscriptions",
            "subscriptions": rows,
            "counts": counts,
            "backlog": backlog,
            "next_cursor": _next_cursor(rows),
        },
    )


@router.post("/subscriptions")
async def create_subscription(request: Request, session: DbSession, viewer: SignedIn) -> Response:
    form = await checked_form(request, viewer)
    _require(viewer, "create_subscription")
    try:
        payload = _payload(
            SubscriptionCreate,
            url=form.get("url", "").strip(),
            event_types=_listed(form.get("event_types", "")) or ["*"],
            description=form.get("description", ""),
        )
        subscription = await _subscriptions(session, request).create(payload)
        await session.commit()
    except RelayError as exc:
        response = _back("/console/subscriptions")
        flash(request, response, "error", exc.message)
        return response
    # Its secret is shown on this answer only, like a rotated one.
    return render(
        request,
        "secret.html",
        viewer,
        {"title": "New subscription", "subscription": subscription, "created": True},
    )


@router.get("/subscriptions/{subscription_id}")
async def subscription_page(
    subscription_id: str,
    request: Request,
    session: DbSession,
    viewer: SignedIn,
    errors_only: bool = Query(False),
    cursor: str | None = Query(None),
    job: str | None = Query(None),
) -> Response:
    subscription = await _subscriptions(session, request).get(subscription_id)
    followed: Job | None = await JobService(session).get(job) if job else None
    return await _subscription_view(
        request,
        session,
        viewer,
        subscription,
        errors_only=errors_only,
        cursor=checked_cursor(cursor or None),
        job=followed,
    )


async def _subscription_view(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    subscription: Subscription,
    *,
    errors_only: bool = False,
    cursor: str | None = None,
    job: Job | None = None,
    edit: dict[str, str] | None = None,
    edit_error: str | None = None,
) -> Response:
    """A subscription's page; after a refused edit, with the form open as it was sent and
    the reason beside it. That answer is a 200: the page is what the browser was asked for,
    and a 4xx would be logged as an error in its console."""
    now = _now()
    attempts = await DeliveryService(session).subscription_attempts(
        subscription.id, errors_only=errors_only, limit=PAGE, cursor=cursor
    )
    row = await StatsService(session).subscription(subscription.id, now=now)
    backlog = {b.subscription_id: b for b in await MetricsRepository(session).backlog(now=now)}
    out = subscription_out(subscription)
    return render(
        request,
        "subscription.html",
        viewer,
        {
            "title": f"Subscription {subscription.id}",
            "subscription": out,
            "liveness": subscription.liveness.value,
            "stats": row,
            "backlog": backlog.get(subscription.id),
            "attempts": attempts,
            "errors_only": errors_only,
            "next_cursor": _next_cursor(attempts),
            "job": job,
            "windows": WINDOWS,
            "vendors": sorted(VENDORS),
            "edit": edit if edit is not None else _subscription_fields(out),
            "edit_error": edit_error,
        },
    )


def _subscription_fields(subscription: SubscriptionOut) -> dict[str, str]:
    """The edit form's fields as the subscription has them now (header values masked, as the
    API shows them: sent back unchanged, they keep the stored value)."""
    fields = {
        "url": subscription.url,
        "event_types": ", ".join(subscription.event_types),
        "source_ids": ", ".join(subscription.source_ids or []),
        "filter": orjson.dumps(subscription.filter, option=orjson.OPT_INDENT_2).decode()
        if subscription.filter
        else "",
        "headers": "\n".join(f"{name}: {value}" for name, value in subscription.headers.items()),
        "description": subscription.description,
        "max_concurrency": str(subscription.max_concurrency),
        "rate_limit_per_second": _number(subscription.rate_limit_per_second),
        "retry_schedule": ", ".join(_number(delay) for delay in subscription.retry_schedule or []),
    }
    if subscription.ordered:
        fields["ordered"] = "on"
    for vendor in subscription.vendors or []:
        fields[f"vendor-{vendor}"] = "on"
    return fields


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if value.is_integer() else repr(value)


def _numbers(field: str, text: str) -> list[float] | None:
    if not text.strip():
        return None
    try:
        return [float(part) for part in _listed(text)]
    except ValueError as exc:
        raise Invalid(f"{field}: give numbers of seconds separated by commas") from exc


def _headers(text: str) -> dict[str, str]:
    headers = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise Invalid(f"headers: line {number}: write each header as Name: value")
        headers[name.strip()] = value.strip()
    return headers


async def _update_subscription(
    request: Request, session: DbSession, subscription_id: str, update: SubscriptionUpdate
) -> None:
    await _subscriptions(session, request).update(subscription_id, update, now=_now())
    await session.commit()


@router.post("/subscriptions/{subscription_id}/pause")
async def pause_subscription(
    subscription_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    return await _set_active(subscription_id, request, session, viewer, active=False)


@router.post("/subscriptions/{subscription_id}/resume")
async def resume_subscription(
    subscription_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    return await _set_active(subscription_id, request, session, viewer, active=True)


async def _set_active(
    subscription_id: str, request: Request, session: DbSession, viewer: Viewer, *, active: bool
) -> Response:
    await checked_form(request, viewer)
    _require(viewer, "pause")
    await _update_subscription(request, session, subscription_id, SubscriptionUpdate(active=active))
    response = _back(f"/console/subscriptions/{subscription_id}")
    flash(
        request,
        response,
        "ok",
        "Resumed: what waited goes out now." if active else "Paused: deliveries wait.",
    )
    return response


@router.post("/subscriptions/{subscription_id}/edit")
async def edit_subscription(
    subscription_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    """Every setting PATCH /v1/subscriptions/{id} takes but `active`, which the Pause and
    Resume buttons set: a form sending it each time would close an open breaker on every
    save, as a resume does."""
    form = await checked_form(request, viewer)
    _require(viewer, "edit_subscription")
    try:
        update = _payload(
            SubscriptionUpdate,
            url=form.get("url", "").strip() or None,
            event_types=_listed(form.get("event_types", "")) or None,
            vendors=[vendor for vendor in sorted(VENDORS) if form.get(f"vendor-{vendor}")] or None,
            source_ids=await resolve_source_ids(session, _listed(form.get("source_ids", "")))
            or None,
            filter=containment("filter", form.get("filter", "")),
            headers=_headers(form.get("headers", "")),
            description=form.get("description", ""),
            ordered=form.get("ordered") == "on",
            max_concurrency=form.get("max_concurrency", "").strip() or None,
            rate_limit_per_second=form.get("rate_limit_per_second", "").strip() or None,
            retry_schedule=_numbers("retry_schedule", form.get("retry_schedule", "")),
        )
        await _update_subscription(request, session, subscription_id, update)
    except RelayError as exc:
        # What the service changed before it refused is not kept, nor shown.
        await session.rollback()
        subscription = await _subscriptions(session, request).get(subscription_id)
        return await _subscription_view(
            request, session, viewer, subscription, edit=form, edit_error=exc.message
        )
    response = _back(f"/console/subscriptions/{subscription_id}")
    flash(request, response, "ok", "Saved.")
    return response


@router.post("/subscriptions/{subscription_id}/delete")
async def delete_subscription(
    subscription_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    await checked_form(request, viewer)
    _require(viewer, "delete_subscription")
    await _subscriptions(session, request).delete(subscription_id, now=_now())
    await session.commit()
    response = _back("/console/subscriptions")
    flash(
        request,
        response,
        "ok",
        f"Subscription {subscription_id} deleted: its pending deliveries failed, its history "
        "is kept.",
    )
    return response


@router.get("/filters/check")
async def check_filter(viewer: SignedIn, text: str = Query("")) -> Response:
    """Checks a subscription filter as it is typed, with the rule subscriptions are saved by."""
    try:
        spec = containment("filter", text)
        if spec is not None:
            validate_filter(spec)
    except (Invalid, FilterError, ValueError) as exc:
        message = exc.message if isinstance(exc, Invalid) else f"filter: {exc}"
        return JSONResponse({"ok": False, "message": message})
    return JSONResponse({"ok": True, "message": "filter is valid"})


@router.post("/subscriptions/{subscription_id}/test")
async def test_subscription(
    subscription_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    await checked_form(request, viewer)
    _require(viewer, "test")
    settings: Settings = request.app.state.settings
    client: DeliveryClient = request.app.state.http_client
    result = await _subscriptions(session, request).send_test(
        subscription_id, client=client, attempt_timeout=settings.delivery_timeout, now=_now()
    )
    response = _back(f"/console/subscriptions/{subscription_id}")
    if result.succeeded:
        flash(
            request,
            response,
            "ok",
            f"Test ping answered {result.status_code} in {result.duration_ms} ms.",
        )
    else:
        answer = result.status_code if result.status_code is not None else result.error
        flash(
            request, response, "error", f"Test ping failed: {answer} after {result.duration_ms} ms."
        )
    return response


@router.post("/subscriptions/{subscription_id}/recover")
async def recover_subscription(
    subscription_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    form = await checked_form(request, viewer)
    _require(viewer, "recover")
    response = _back(f"/console/subscriptions/{subscription_id}")
    try:
        now = _now()
        span = _window(form.get("window") or "24h")
        since = _instant("since", form.get("since")) or now - (span or timedelta(hours=24))
        status = "pending" if form.get("status") == "pending" else "failed"
        job = await JobService(session).start_recover(
            subscription_id,
            RecoverIn(since=since, until=_instant("until", form.get("until")), status=status),
            now=now,
        )
        await session.commit()
    except RelayError as exc:
        flash(request, response, "error", exc.message)
        return response
    followed = _back(f"/console/subscriptions/{subscription_id}?job={job.id}")
    flash(request, followed, "ok", f"Recovery {job.id} started.")
    return followed


@router.post("/subscriptions/{subscription_id}/rotate-secret")
async def rotate_secret(
    subscription_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    await checked_form(request, viewer)
    _require(viewer, "rotate_secret")
    settings: Settings = request.app.state.settings
    now = _now()
    subscription = await _subscriptions(session, request).rotate_secret(
        subscription_id, now=now, overlap_until=now + settings.secret_rotation_overlap
    )
    await session.commit()
    # Shown on this answer only, never again: no redirect to a page that could be reloaded.
    return render(
        request,
        "secret.html",
        viewer,
        {"title": "New signing secret", "subscription": subscription, "created": False},
    )


# --- Events --------------------------------------------------------------------------------


@router.get("/events")
async def events_page(
    request: Request,
    session: DbSession,
    viewer: SignedIn,
    type: str | None = Query(None),
    vendor: str | None = Query(None),
    source: str | None = Query(None),
    window: str | None = Query(None),
    since: str | None = Query(None),
    until: str | None = Query(None),
    subject_id: str | None = Query(None),
    data: str | None = Query(None),
    cursor: str | None = Query(None),
) -> Response:
    filters = {
        "type": type or "",
        "vendor": vendor or "",
        "source": source or "",
        "window": window or "",
        "since": since or "",
        "until": until or "",
        "subject_id": subject_id or "",
        "data": data or "",
    }
    error = None
    events: Any = []
    try:
        contains = containment("data", data)
        if contains is not None and not window and not since:
            # Containment reads each event's JSON: bounded in time, a search stays fast on a
            # long history.
            window = filters["window"] = DATA_SEARCH_WINDOW
        span = _window(window)
        if type and type not in known_event_types():
            raise Invalid(f"type: unknown event type '{type}'")
        if vendor and vendor not in VENDORS:
            raise Invalid(f"vendor: use one of {', '.join(sorted(VENDORS))}")
        source_id = await SourceService(SourceRepository(session)).resolve_filter(
            "source", source or None
        )
        events = await EventRepository(session).list(
            EventQuery(
                type=type or None,
                vendor=vendor or None,
                source=source_id,
                since=_instant("since", since) or (_now() - span if span else None),
                until=_instant("until", until),
                subject_id=subject_id or None,
                data_contains=contains,
            ),
            limit=PAGE,
            cursor=checked_cursor(cursor or None),
        )
    except Invalid as exc:
        error = exc.message
    return render(
        request,
        "events.html",
        viewer,
        {
            "title": "Events",
            "events": events,
            "next_cursor": _next_cursor(events),
            "filters": filters,
            "error": error,
            "event_types": sorted(known_event_types()),
            "vendors": sorted(VENDORS),
            "windows": WINDOWS,
        },
    )


@router.get("/events/{event_id}")
async def event_page(
    event_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    event = await EventRepository(session).get(event_id)
    if event is None:
        raise NotFound(f"no event with id '{event_id}'")
    raw = await RequestLogRepository(session).get(event.request_id) if event.request_id else None
    deliveries = await DeliveryService(session).list(
        DeliveryQuery(event_id=event_id), limit=PAGE, cursor=None
    )
    body = None
    if raw is not None and raw.body is not None:
        body = raw.body.decode("utf-8", errors="replace")
    return render(
        request,
        "event.html",
        viewer,
        {
            "title": f"Event {event.id}",
            "event": event,
            "request_log": raw,
            "raw_body": body,
            "deliveries": deliveries,
        },
    )


@router.post("/events/{event_id}/replay")
async def replay_event(
    event_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    await checked_form(request, viewer)
    _require(viewer, "replay")
    response = _back(f"/console/events/{event_id}")
    try:
        created = await JobService(session).replay_event(event_id, None, now=_now())
        await session.commit()
    except RelayError as exc:
        flash(request, response, "error", exc.message)
        return response
    flash(request, response, "ok", f"Replayed: {len(created)} new deliveries.")
    return response


# --- Sources and inbound requests ----------------------------------------------------------


@router.get("/sources")
async def sources_page(
    request: Request, session: DbSession, viewer: SignedIn, cursor: str | None = Query(None)
) -> Response:
    rows = await SourceService(SourceRepository(session)).list(
        limit=PAGE, cursor=checked_cursor(cursor or None)
    )
    return render(
        request,
        "sources.html",
        viewer,
        {
            "title": "Sources",
            "sources": [source_out(row) for row in rows],
            "vendors": sorted(VENDORS),
            "next_cursor": _next_cursor(rows),
        },
    )


@router.get("/sources/{source_id}")
async def source_page(
    source_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    source = await SourceService(SourceRepository(session)).get(source_id)
    return await _source_view(request, session, viewer, source)


async def _source_view(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    source: Source,
    *,
    edit: dict[str, str] | None = None,
    edit_error: str | None = None,
) -> Response:
    """A source's page; after a refused edit, with the form open as it was sent and the
    reason beside it (a 200, as for a subscription)."""
    requests_ = await RequestLogRepository(session).list(
        source=source.id, verdict=None, limit=20, cursor=None
    )
    out = source_out(source)
    return render(
        request,
        "source.html",
        viewer,
        {
            "title": f"Source {source.slug}",
            "source": out,
            "verification_json": orjson.dumps(
                out.verification, option=orjson.OPT_INDENT_2
            ).decode(),
            "requests": requests_,
            "edit": edit if edit is not None else _source_fields(out),
            "edit_error": edit_error,
        },
    )


_POINTERS = ("event_name_pointer", "event_id_pointer", "entity_id_pointer", "event_time_pointer")


def _source_fields(source: SourceOut) -> dict[str, str]:
    """The edit form's fields as the source has them now."""
    mapping = source.mapping
    fields = {
        "description": source.description,
        "rate_limit_per_second": _number(source.rate_limit_per_second),
        **{pointer: getattr(mapping, pointer) or "" for pointer in _POINTERS},
        "type_map": orjson.dumps(mapping.type_map, option=orjson.OPT_INDENT_2).decode()
        if mapping.type_map
        else "",
    }
    if source.active:
        fields["active"] = "on"
    return fields


@router.post("/sources")
async def create_source(request: Request, session: DbSession, viewer: SignedIn) -> Response:
    form = await checked_form(request, viewer)
    _require(viewer, "create_source")
    response = _back("/console/sources")
    try:
        payload = _payload(
            SourceCreate,
            slug=form.get("slug", "").strip(),
            vendor=form.get("vendor", ""),
            verification=_json_object("verification", form.get("verification", "")),
            description=form.get("description", ""),
        )
        source = await SourceService(SourceRepository(session)).create(payload)
        await session.commit()
    except RelayError as exc:
        flash(request, response, "error", exc.message)
        return response
    created = _back(f"/console/sources/{source.id}")
    flash(
        request, created, "ok", f"Source created: vendors post to {source_out(source).ingest_path}."
    )
    return created


@router.post("/sources/{source_id}/edit")
async def edit_source(
    source_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    """Every setting PATCH /v1/sources/{id} takes but the credentials, which the rotation form
    sets (with how long the previous ones keep working)."""
    form = await checked_form(request, viewer)
    _require(viewer, "edit_source")
    service = SourceService(SourceRepository(session))
    try:
        type_map = containment("type_map", form.get("type_map", "")) or {}
        payload = _payload(
            SourceUpdate,
            description=form.get("description", ""),
            active=form.get("active") == "on",
            rate_limit_per_second=form.get("rate_limit_per_second", "").strip() or None,
            mapping={
                **{pointer: form.get(pointer, "").strip() or None for pointer in _POINTERS},
                "type_map": type_map,
            },
        )
        await service.update(source_id, payload, now=_now())
        await session.commit()
    except RelayError as exc:
        # What the service changed before it refused is not kept, nor shown.
        await session.rollback()
        source = await service.get(source_id)
        return await _source_view(
            request, session, viewer, source, edit=form, edit_error=exc.message
        )
    response = _back(f"/console/sources/{source_id}")
    flash(request, response, "ok", "Saved.")
    return response


@router.post("/sources/{source_id}/delete")
async def delete_source(
    source_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    await checked_form(request, viewer)
    _require(viewer, "delete_source")
    service = SourceService(SourceRepository(session))
    slug = (await service.get(source_id)).slug
    await service.delete(source_id)
    await session.commit()
    response = _back("/console/sources")
    flash(
        request,
        response,
        "ok",
        f"Source {slug} deleted, with its events and their deliveries; /ingest/{slug} now "
        "answers 404.",
    )
    return response


@router.post("/sources/{source_id}/rotate")
async def rotate_source_credentials(
    source_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    form = await checked_form(request, viewer)
    _require(viewer, "edit_source")
    response = _back(f"/console/sources/{source_id}")
    try:
        hours = form.get("keep_previous_hours", "0").strip() or "0"
        if not hours.isdigit():
            raise Invalid("keep the previous credentials for: give a whole number of hours")
        payload = _payload(
            SourceUpdate,
            verification=_json_object("verification", form.get("verification", "")),
            keep_previous_for_seconds=int(hours) * 3600,
        )
        await SourceService(SourceRepository(session)).update(source_id, payload, now=_now())
        await session.commit()
    except RelayError as exc:
        flash(request, response, "error", exc.message)
        return response
    flash(request, response, "ok", "Credentials rotated.")
    return response


def _json_object(field: str, text: str) -> dict[str, Any]:
    value = containment(field, text)
    if value is None:
        raise Invalid(f"{field}: required")
    return value


@router.get("/requests")
async def requests_page(
    request: Request,
    session: DbSession,
    viewer: SignedIn,
    verdict: str | None = Query(None),
    source: str | None = Query(None),
    cursor: str | None = Query(None),
) -> Response:
    if verdict and verdict not in VERDICTS:
        raise Invalid(f"verdict: use one of {', '.join(VERDICTS)}")
    source_id = await SourceService(SourceRepository(session)).resolve_filter(
        "source", source or None
    )
    rows = await RequestLogRepository(session).list(
        source=source_id, verdict=verdict or None, limit=PAGE, cursor=checked_cursor(cursor or None)
    )
    return render(
        request,
        "requests.html",
        viewer,
        {
            "title": "Inbound requests",
            "requests": rows,
            "next_cursor": _next_cursor(rows),
            "filters": {"verdict": verdict or "", "source": source or ""},
            "verdicts": VERDICTS,
        },
    )


# --- Jobs ----------------------------------------------------------------------------------


@router.get("/jobs")
async def jobs_page(
    request: Request, session: DbSession, viewer: SignedIn, cursor: str | None = Query(None)
) -> Response:
    rows = await JobService(session).list(
        kind=None, status=None, limit=PAGE, cursor=checked_cursor(cursor or None)
    )
    return render(
        request,
        "jobs.html",
        viewer,
        {"title": "Jobs", "jobs": rows, "next_cursor": _next_cursor(rows)},
    )


# --- API keys ------------------------------------------------------------------------------


@router.get("/keys")
async def keys_page(
    request: Request, session: DbSession, viewer: SignedIn, cursor: str | None = Query(None)
) -> Response:
    _require(viewer, "see_keys")
    rows = await ApiKeyService(ApiKeyRepository(session)).list(
        limit=PAGE, cursor=checked_cursor(cursor or None)
    )
    return render(
        request,
        "keys.html",
        viewer,
        {
            "title": "API keys",
            "keys": [key_out(row) for row in rows],
            "scopes": SCOPES,
            "next_cursor": _next_cursor(rows),
        },
    )


@router.post("/keys")
async def create_key(request: Request, session: DbSession, viewer: SignedIn) -> Response:
    form = await checked_form(request, viewer)
    _require(viewer, "create_key")
    try:
        payload = _payload(ApiKeyCreate, name=form.get("name", "").strip(), scope=form.get("scope"))
        created = await ApiKeyService(ApiKeyRepository(session)).create(payload, now=_now())
        await session.commit()
    except RelayError as exc:
        response = _back("/console/keys")
        flash(request, response, "error", exc.message)
        return response
    # The key is shown on this answer only: the relay keeps its hash, never the key.
    return render(request, "key_created.html", viewer, {"title": "New API key", "key": created})


@router.post("/keys/{api_key_id}/revoke")
async def revoke_key(
    api_key_id: str, request: Request, session: DbSession, viewer: SignedIn
) -> Response:
    await checked_form(request, viewer)
    _require(viewer, "revoke_key")
    revoked = await ApiKeyService(ApiKeyRepository(session)).revoke(api_key_id, now=_now())
    await session.commit()
    response = _back("/console/keys")
    flash(request, response, "ok", f"Key {revoked.prefix} revoked: its sessions end now.")
    return response


@router.get("/jobs/{job_id}/progress")
async def job_progress(job_id: str, session: DbSession, viewer: SignedIn) -> Response:
    """What a progress bar polls: the job's counters as JSON."""
    job = await JobService(session).get(job_id)
    return JSONResponse(
        {
            "id": job.id,
            "status": job.status,
            "done": job.done,
            "total": job.total,
            "finished": job.status in ("succeeded", "failed"),
            "error": job.error,
        }
    )
