from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from relay.apikeys.auth import require_admin
from relay.core.errors import Invalid, NotFound
from relay.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, checked_cursor
from relay.db.session import DbSession
from relay.events.repository import EventQuery, EventRepository
from relay.events.schemas import EventListItem, EventTypeOut
from relay.events.taxonomy import EVENT_TYPES
from relay.sources.repository import SourceRepository
from relay.sources.service import SourceService
from relay.vendors.registry import VENDORS

router = APIRouter(prefix="/v1", tags=["events"], dependencies=[Depends(require_admin)])

_JSON = "application/json"
_EXAMPLE = '{"status": "late"}'


def known_event_types() -> set[str]:
    types = set(EVENT_TYPES)
    for vendor in VENDORS.values():
        types.update(vendor.event_types.values())
    return types


def containment(field: str, text: str | None) -> dict[str, Any] | None:
    """A JSON containment query as given in a query string: an object, or a 422 saying so."""
    if text is None or not text.strip():
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Invalid(
            f'{field}: not JSON ({exc}); give an object like {{"status": "late"}}'
        ) from exc
    if not isinstance(value, dict):
        raise Invalid(f'{field}: give a JSON object like {{"status": "late"}}')
    return value


def _page_json(envelopes: list[str], next_cursor: str | None) -> bytes:
    # Envelopes are stored as the exact JSON text subscribers get; splice them, don't re-encode.
    cursor = "null" if next_cursor is None else f'"{next_cursor}"'
    return f'{{"data":[{",".join(envelopes)}],"next_cursor":{cursor}}}'.encode()


@router.get(
    "/events",
    response_model=Page[EventListItem],
    responses={200: {"content": {_JSON: {}}}},
)
async def list_events(
    session: DbSession,
    type: str | None = Query(None, description="Unified event type, e.g. route.started."),
    vendor: str | None = Query(None, description="routigo, antsroute, bringg or routestripe."),
    source: str | None = Query(None, description="Source id or slug."),
    since: datetime | None = Query(None, description="Received at or after (ISO 8601)."),
    until: datetime | None = Query(None, description="Received before (ISO 8601)."),
    subject_id: str | None = Query(None, description="The subject's id: an order or route id."),
    data: str | None = Query(
        None,
        description='A JSON object the event\'s data must contain, e.g. {"status": "late"}.',
    ),
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> Response:
    # A filter naming nothing that exists is a mistake to point out, not an empty page.
    if type is not None and type not in known_event_types():
        raise Invalid(f"type: unknown event type '{type}'; see GET /v1/event-types")
    if vendor is not None and vendor not in VENDORS:
        raise Invalid(f"vendor: unknown vendor '{vendor}'; use {', '.join(sorted(VENDORS))}")
    source = await SourceService(SourceRepository(session)).resolve_filter("source", source)
    events = await EventRepository(session).list(
        EventQuery(
            type=type,
            vendor=vendor,
            source=source,
            since=since,
            until=until,
            subject_id=subject_id,
            data_contains=containment("data", data),
        ),
        limit=limit,
        cursor=checked_cursor(cursor),
    )
    next_cursor = events[-1].id if len(events) == limit else None
    return Response(_page_json([event.envelope for event in events], next_cursor), media_type=_JSON)


@router.get(
    "/events/{event_id}",
    response_model=EventListItem,
    responses={200: {"content": {_JSON: {}}}},
)
async def get_event(event_id: str, session: DbSession) -> Response:
    event = await EventRepository(session).get(event_id)
    if event is None:
        raise NotFound(f"no event with id '{event_id}'")
    return Response(event.envelope, media_type=_JSON)


@router.get("/event-types", response_model=list[EventTypeOut])
async def list_event_types() -> list[EventTypeOut]:
    by_type: dict[str, dict[str, list[str]]] = {name: {} for name in EVENT_TYPES}
    for vendor in VENDORS.values():
        for vendor_event, unified in vendor.event_types.items():
            by_type.setdefault(unified, {}).setdefault(vendor.name, []).append(vendor_event)
    return [
        EventTypeOut(type=name, description=EVENT_TYPES.get(name, ""), vendors=vendors)
        for name, vendors in sorted(by_type.items())
    ]
