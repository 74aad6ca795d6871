"""AntsRoute: delivery (work order) and route events.

AntsRoute publishes the English labels of its events but neither their machine names nor the
payload's shape, so the adapter looks for the name and the ids in the likely places, accepts
the label and snake_case spellings of every event, and keeps the whole body in raw.
"""

from __future__ import annotations

from relay.vendors.base import InboundRequest, MappingOverrides, ParsedWebhook, PayloadError
from relay.vendors.payload import (
    Catalogue,
    Draft,
    Json,
    Subject,
    address_text,
    child,
    child_in,
    compact,
    describe,
    finish,
    first_text,
    load_json,
    location_of,
    overridden_name,
    position,
    snake,
    status_fields,
    text_in,
    time_text,
    value_in,
    wrapped,
)

# (name the relay files the event under, AntsRoute's English label, unified type, other
# spellings). The label's snake_case form and an order_ form of delivery_ names are accepted too.
EVENTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("delivery_created", "Delivery created", "order.created", ()),
    ("delivery_confirmed", "Delivery confirmed", "order.confirmed", ()),
    ("delivery_pending", "Delivery pending", "order.pending", ()),
    ("delivery_cancelled", "Delivery cancelled", "order.cancelled", ("delivery_canceled",)),
    ("delivery_deleted", "Delivery deleted", "order.deleted", ()),
    ("delivery_done", "Delivery done", "order.completed", ("delivery_completed",)),
    ("confirmed_status_removed", "Confirmed status removed", "order.updated", ()),
    ("pending_status_removed", "Pending status removed", "order.updated", ()),
    (
        "delivery_unassigned",
        "Delivery set to unassigned state",
        "order.unassigned",
        ("delivery_set_to_unassigned", "set_to_unassigned"),
    ),
    (
        "delivery_moved",
        "Delivery moved forward or delayed or assigned to another route",
        "order.rescheduled",
        ("delivery_moved_or_delayed", "delivery_delayed", "delivery_assigned_to_another_route"),
    ),
    ("delivery_assigned", "Delivery assigned to a route", "order.assigned", ()),
    (
        "delivery_assigned_in_progress",
        "Delivery assigned to a route in progress",
        "order.assigned",
        ("delivery_assigned_to_route_in_progress",),
    ),
    (
        "delivery_scheduled_from_basket",
        "Delivery scheduled from the basket",
        "order.scheduled",
        (),
    ),
    ("delivery_moved_to_basket", "Delivery moved to the basket", "order.unscheduled", ()),
    ("planning_date_changed", "Planning date changed", "order.rescheduled", ()),
    (
        "proof_photo_added",
        "Proof of delivery (photo) added",
        "proof.photo_added",
        ("proof_of_delivery_added", "photo_added"),
    ),
    (
        "customer_signature_added",
        "Customer signature added",
        "proof.signature_added",
        ("signature_added",),
    ),
    ("delivery_locked", "Delivery locked", "order.locked", ()),
    ("delivery_updated", "Delivery updated", "order.updated", ()),
    ("route_started", "Route started", "route.started", ()),
    ("route_ended", "Route ended", "route.finished", ("route_finished",)),
    ("notification_sent", "Notification sent", "notification.sent", ()),
    ("loading_done", "Loading done", "order.loaded", ()),
    ("loading_cancelled", "Loading cancelled", "order.loading_cancelled", ()),
    ("unloading_done", "Unloading done", "order.unloaded", ()),
    ("unloading_cancelled", "Unloading cancelled", "order.unloading_cancelled", ()),
)

VENDOR_EVENTS: dict[str, str] = {name: unified for name, _, unified, _ in EVENTS}
LABELS: dict[str, str] = {name: label for name, label, _, _ in EVENTS}


def _spellings() -> dict[str, str]:
    spellings: dict[str, str] = {}
    for name, label, _, others in EVENTS:
        for spelling in (snake(label), *others):
            spellings[spelling] = name
        if name.startswith("delivery_"):
            spellings["order_" + name.removeprefix("delivery_")] = name
    return spellings


_SPELLINGS = _spellings()


def canonical_name(name: str) -> str:
    """The name the relay files an AntsRoute event under, from any accepted spelling."""
    key = snake(name)
    return _SPELLINGS.get(key, key)


CATALOGUE = Catalogue("antsroute", VENDOR_EVENTS, canonical=canonical_name)

_NAME_KEYS = ("event", "eventType", "event_type", "type", "webhookEvent", "trigger", "action")
# Keys that can only mean "when this happened": an order's createdAt or planning date would
# merge distinct events into one dedupe key.
_TIME_KEYS = (
    "timestamp",
    "eventDate",
    "event_date",
    "eventTime",
    "event_time",
    "occurredAt",
    "occurred_at",
    "sentAt",
    "sent_at",
)
_WRAPPERS = ("data", "payload", "object")
_ORDER_KEYS = ("order", "delivery", "workOrder", "work_order", "task", "visit", "intervention")
_ROUTE_KEYS = ("route", "tour")
_DRIVER_KEYS = ("driver", "technician", "resource", "user", "agent")
_ID_KEYS = ("id", "_id", "uuid")
_EXTERNAL_ID_KEYS = ("reference", "externalId", "external_id", "ref", "orderNumber", "number")
_PROOF_KEYS = ("photo", "signature", "proof", "attachment", "file", "picture")
_PROOF_OF_EVENT = {"proof_photo_added": "photo", "customer_signature_added": "signature"}
_URL_KEYS = ("url", "photoUrl", "photo_url", "signatureUrl", "signature_url", "fileUrl", "link")


def parse(request: InboundRequest, overrides: MappingOverrides) -> ParsedWebhook:
    body = load_json(request)
    if isinstance(body, list):
        # The shape is not documented: an array is taken as several events rather than refused.
        items = body
    elif isinstance(body, dict):
        items = [body]
    else:
        raise PayloadError(f"body must be a JSON object, got {describe(body)}")
    notes: list[str] = []
    events = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PayloadError(f"item {index} of the body must be an object, got {describe(item)}")
        events.append(finish(_draft(item, overrides), CATALOGUE, overrides, notes))
    return ParsedWebhook(kind="events", events=events, notes=notes)


def _draft(body: Json, overrides: MappingOverrides) -> Draft:
    name = overridden_name(body, overrides) or first_text(body, *_NAME_KEYS)
    places = wrapped(body, *_WRAPPERS)
    order = child_in(places, *_ORDER_KEYS)
    route = child_in([*places, order], *_ROUTE_KEYS)
    innermost = places[-1]
    subject_kind = _subject_kind(name, order, route)
    if subject_kind == "route":
        entity = route or innermost
        subject = Subject(
            "route",
            first_text(entity, *_ID_KEYS) or text_in(places, "routeId", "route_id"),
            first_text(entity, *_EXTERNAL_ID_KEYS),
        )
        data = compact(
            route=_route(entity, subject),
            driver=_driver(child_in([entity, *places], *_DRIVER_KEYS)),
        )
    else:
        entity = order or innermost
        subject = Subject(
            "order",
            first_text(entity, *_ID_KEYS, "orderId", "order_id")
            or text_in(places, "orderId", "order_id", "deliveryId", "delivery_id"),
            first_text(entity, *_EXTERNAL_ID_KEYS),
        )
        data = _order_data(entity, subject, places, route, name)
    return Draft(
        name=name,
        subject=subject,
        data=data,
        raw=body,
        event_time=value_in(places, *_TIME_KEYS),
    )


def _subject_kind(name: str | None, order: Json | None, route: Json | None) -> str:
    if name is not None:
        canonical = canonical_name(name)
        if canonical in VENDOR_EVENTS:
            return "route" if canonical.startswith("route_") else "order"
    return "route" if route is not None and order is None else "order"


def _order_data(
    order: Json, subject: Subject, places: list[Json], route: Json | None, name: str | None
) -> Json:
    customer = child(order, "customer", "contact", "recipient")
    route_subject = Subject(
        "route",
        first_text(route, *_ID_KEYS) or text_in([order, *places], "routeId", "route_id"),
    )
    canonical = "" if name is None else canonical_name(name)
    return compact(
        **status_fields(order.get("status")),
        change=canonical if canonical.endswith("_status_removed") else None,
        order=compact(
            id=subject.id, external_id=subject.external_id, title=first_text(order, "title")
        ),
        route=_route(route or {}, route_subject),
        driver=_driver(child_in([order, route, *places], *_DRIVER_KEYS)),
        stop=compact(
            position=position(value_in([order], "position", "rank")),
            address=address_text(order.get("address"))
            or address_text(None if customer is None else customer.get("address")),
            eta=time_text(value_in([order], "eta", "estimatedArrival")),
            scheduled_at=time_text(value_in([order], "scheduledAt", "plannedAt")),
        ),
        location=location_of(order) or location_of(customer),
        recipient=compact(
            name=first_text(customer, "name", "fullName"),
            phone=first_text(customer, "phone", "mobile", "phoneNumber"),
        ),
        proof=_proof(canonical, [order, *places]),
        notification=_notification(child_in([order, *places], "notification")),
    )


def _route(route: Json, subject: Subject) -> Json:
    return compact(
        id=subject.id,
        external_id=subject.external_id,
        name=first_text(route, "name", "title", "label"),
        started_at=time_text(value_in([route], "startedAt", "started_at")),
        ended_at=time_text(value_in([route], "endedAt", "ended_at")),
    )


def _driver(driver: Json | None) -> Json | None:
    if driver is None:
        return None
    full_name = " ".join(
        part for part in (first_text(driver, "firstName"), first_text(driver, "lastName")) if part
    )
    return compact(
        id=first_text(driver, *_ID_KEYS),
        external_id=first_text(driver, "externalId", "external_id", "reference"),
        name=first_text(driver, "name", "fullName") or full_name,
        phone=first_text(driver, "phone", "mobile", "phoneNumber"),
    )


def _proof(canonical: str, places: list[Json]) -> Json | None:
    kind = _PROOF_OF_EVENT.get(canonical)
    if kind is None:
        return None
    holder = child_in(places, kind, *_PROOF_KEYS)
    url = first_text(holder, *_URL_KEYS) or text_in(places, *_URL_KEYS)
    return compact(kind=kind, url=url)


def _notification(notification: Json | None) -> Json | None:
    if notification is None:
        return None
    return compact(
        channel=first_text(notification, "channel", "type", "medium"),
        recipient=first_text(notification, "to", "recipient", "phone", "email"),
        template=first_text(notification, "template", "templateName", "name"),
    )
