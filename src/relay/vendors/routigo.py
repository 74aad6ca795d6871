"""RoutiGo: tour, stop, shipment and assignment events, in the legacy and the current format.

RoutiGo documents its triggers (TOUR_STARTED, STOP_DONE, ...) and the four payload types (TOUR,
STOP, SHIPMENT, ASSIGNMENT) but not the current payload itself. The legacy format has a
top-level `eventType` and `journey.tourLegs[]`. The adapter finds the trigger in the body, else
in the `event` query parameter or the `X-RoutiGo-Event` header (which a subscription can be set
up to send), and recognises the payload type leniently. The subject is the entity of the
payload type, which the subscription chooses. RoutiGo sends no event id.
"""

from __future__ import annotations

from relay.vendors.base import InboundRequest, MappingOverrides, ParsedWebhook
from relay.vendors.payload import (
    Catalogue,
    Draft,
    Json,
    Subject,
    address_text,
    child,
    child_in,
    compact,
    finish,
    first_text,
    load_object,
    location_of,
    objects,
    overridden_name,
    position,
    snake,
    status_fields,
    status_word,
    text,
    time_text,
    value_in,
    wrapped,
)

VENDOR_EVENTS: dict[str, str] = {
    "TOUR_PLANNED": "route.planned",
    "TOUR_ASSIGNED": "route.assigned",
    "TOUR_UNASSIGNED": "route.unassigned",
    "TOUR_STARTED": "route.started",
    "TOUR_FINISHED": "route.finished",
    "STOP_ARRIVED": "stop.arrived",
    "STOP_DONE": "stop.completed",
    "SHIPMENT_DONE": "order.completed",
    "SHIPMENT_DONE (status failed)": "order.failed",
    "ASSIGNMENT_ARRIVED": "stop.arrived",
    "ASSIGNMENT_DONE": "order.completed",
    "ASSIGNMENT_DONE (status failed)": "order.failed",
    "ROUTE_PLANNED": "route.planned",
    "ROUTE_ASSIGNED": "route.assigned",
    "ROUTE_UNASSIGNED": "route.unassigned",
    "ROUTE_STARTED": "route.started",
    "ROUTE_FINISHED": "route.finished",
}


def canonical_name(name: str) -> str:
    """`tour.started`, `tourStarted` and `TOUR_STARTED` are one trigger."""
    return snake(name).upper()


CATALOGUE = Catalogue("routigo", VENDOR_EVENTS, canonical=canonical_name)

QUERY_PARAMETER = "event"
HEADER = "x-routigo-event"

SUBJECT_OF_TYPE = {"TOUR": "route", "STOP": "stop", "SHIPMENT": "order", "ASSIGNMENT": "order"}
# Most specific first: an assignment payload may carry its shipment, a stop its tour.
_ENTITY_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ASSIGNMENT", ("assignment",)),
    ("SHIPMENT", ("shipment",)),
    ("STOP", ("stop",)),
    ("TOUR", ("tour", "journey", "route")),
)
_NAME_KEYS = ("eventType", "event", "trigger", "routigoEvent", "type")
_TYPE_KEYS = ("routigoEventType", "eventType", "event_type", "type")
_WRAPPERS = ("data", "payload")
_TIME_KEYS = ("timestamp", "eventTime", "eventDate", "occurredAt", "triggeredAt", "dateTime")
_ID_KEYS = ("id", "uuid")
_EXTERNAL_ID_KEYS = ("reference", "externalId", "external_id", "orderNumber")


def parse(request: InboundRequest, overrides: MappingOverrides) -> ParsedWebhook:
    body = load_object(request)
    name = overridden_name(body, overrides) or _trigger(body, request)
    places = wrapped(body, *_WRAPPERS)
    payload_type = _payload_type(places, name)
    entity = child_in(places, *dict(_ENTITY_KEYS)[payload_type]) or places[-1]
    if payload_type == "TOUR":
        subject, data = _tour(entity)
    elif payload_type == "STOP":
        subject, data = _stop_event(entity)
    elif payload_type == "SHIPMENT":
        subject, data = _shipment(entity)
    else:
        subject, data = _assignment(entity)
    word = status_word(value_in([entity], "endStatus", "status"))
    draft = Draft(
        name=name,
        subject=subject,
        data=data,
        raw=body,
        qualifier=None if word is None else f"status {word}",
        event_time=value_in(places, *_TIME_KEYS),
    )
    notes: list[str] = []
    return ParsedWebhook(
        kind="events", events=[finish(draft, CATALOGUE, overrides, notes)], notes=notes
    )


def _trigger(body: Json, request: InboundRequest) -> str | None:
    for key in _NAME_KEYS:
        found = text(body.get(key))
        # In the current format `eventType` may hold the payload type, not the trigger.
        if found is not None and canonical_name(found) not in SUBJECT_OF_TYPE:
            return found
    return text(request.query.get(QUERY_PARAMETER)) or text(request.headers.get(HEADER))


def _payload_type(places: list[Json], name: str | None) -> str:
    for key in _TYPE_KEYS:
        found = text(places[0].get(key))
        if found is not None and canonical_name(found) in SUBJECT_OF_TYPE:
            return canonical_name(found)
    for payload_type, keys in _ENTITY_KEYS:
        if child_in(places, *keys) is not None:
            return payload_type
    prefix = canonical_name(name or "").partition("_")[0]
    if prefix == "ROUTE":
        return "TOUR"
    return prefix if prefix in SUBJECT_OF_TYPE else "TOUR"


def _tour(tour: Json) -> tuple[Subject, Json]:
    route = compact(
        id=first_text(tour, *_ID_KEYS, "tourId", "journeyId"),
        external_id=first_text(tour, *_EXTERNAL_ID_KEYS),
        name=first_text(tour, "name"),
        scheduled_start=time_text(value_in([tour], "plannedStart", "plannedStartTime")),
        scheduled_end=time_text(value_in([tour], "plannedEnd", "plannedEndTime")),
        started_at=time_text(value_in([tour], "startedAt", "actualStart")),
        ended_at=time_text(value_in([tour], "finishedAt", "actualEnd")),
    )
    data = compact(
        route=route,
        driver=_driver(child(tour, "driver")),
        stops=[_stop(stop) for stop in objects(tour.get("stops"))],
        orders=[_leg(leg) for leg in objects(tour.get("tourLegs"))],
    )
    return Subject("route", route.get("id"), route.get("external_id")), data


def _leg(leg: Json) -> Json:
    """A legacy tour leg: one parcel and where it goes."""
    return compact(
        id=text(leg.get("parcelId")),
        tracking_code=text(leg.get("trackingCode")),
        stops=[stop] if (stop := _stop(leg, ids=False)) else [],
    )


def _stop_event(stop: Json) -> tuple[Subject, Json]:
    found = _stop(stop)
    data = compact(
        **status_fields(value_in([stop], "status")),
        stop=found,
        route=compact(id=first_text(stop, "tourId")),
        orders=[_order(assignment) for assignment in objects(stop.get("assignments"))],
        driver=_driver(child(stop, "driver")),
        location=location_of(stop),
    )
    return Subject("stop", found.get("id"), found.get("external_id")), data


def _shipment(shipment: Json) -> tuple[Subject, Json]:
    order = _order(shipment, with_status=False) | compact(
        stops=[_stop(stop) for key in ("pickup", "delivery") if (stop := child(shipment, key))]
    )
    data = compact(
        **status_fields(value_in([shipment], "endStatus", "status")),
        order=order,
        route=compact(id=first_text(shipment, "tourId")),
        driver=_driver(child(shipment, "driver")),
    )
    return Subject("order", order.get("id"), order.get("external_id")), data


def _assignment(assignment: Json) -> tuple[Subject, Json]:
    shipment = child(assignment, "shipment") or {}
    order = compact(
        id=first_text(assignment, "shipmentId")
        or first_text(shipment, *_ID_KEYS)
        or first_text(assignment, *_ID_KEYS),
        external_id=first_text(assignment, *_EXTERNAL_ID_KEYS)
        or first_text(shipment, *_EXTERNAL_ID_KEYS),
        tracking_code=first_text(assignment, "trackingCode")
        or first_text(shipment, "trackingCode"),
    )
    data = compact(
        **status_fields(value_in([assignment], "endStatus", "status")),
        order=order,
        stop=compact(
            id=first_text(assignment, "stopId"),
            address=address_text(assignment.get("address")),
            arrived_at=time_text(assignment.get("arrivedAt")),
        ),
        route=compact(id=first_text(assignment, "tourId")),
        driver=_driver(child(assignment, "driver")),
        location=location_of(assignment),
        failure=compact(reason=first_text(assignment, "endStatusReason", "reason")),
        extra=compact(
            assignment_id=first_text(assignment, *_ID_KEYS),
            assignment_type=first_text(assignment, "type"),
        ),
    )
    return Subject("order", order.get("id"), order.get("external_id")), data


def _order(holder: Json, *, with_status: bool = True) -> Json:
    """An order as listed; the subject's own status sits at the top of data instead."""
    status = value_in([holder], "endStatus", "status") if with_status else None
    return compact(
        id=first_text(holder, "shipmentId", *_ID_KEYS),
        external_id=first_text(holder, *_EXTERNAL_ID_KEYS),
        tracking_code=first_text(holder, "trackingCode"),
        **status_fields(status),
    )


def _stop(stop: Json, *, ids: bool = True) -> Json:
    return compact(
        id=first_text(stop, *_ID_KEYS, "stopId") if ids else None,
        external_id=first_text(stop, *_EXTERNAL_ID_KEYS) if ids else None,
        position=position(value_in([stop], "sequence", "position")),
        address=address_text(stop.get("address")),
        eta=time_text(value_in([stop], "eta", "estimatedArrival")),
        scheduled_at=time_text(value_in([stop], "plannedArrival", "plannedTime")),
        arrived_at=time_text(stop.get("arrivedAt")),
        departed_at=time_text(stop.get("departedAt")),
        completed_at=time_text(stop.get("doneAt")),
    )


def _driver(driver: Json | None) -> Json | None:
    if driver is None:
        return None
    return compact(
        id=first_text(driver, *_ID_KEYS),
        external_id=first_text(driver, "externalId", "external_id", "reference"),
        name=first_text(driver, "name", "fullName"),
        phone=first_text(driver, "phone", "phoneNumber", "mobile"),
    )
