"""RouteStripe: a batch envelope around visit and attachment events, one unified event per entry.

The envelope, the event names, the visit statuses and the failure reasons are documented by
RouteStripe; every entry carries its own `evt_` id, which is the dedupe key.
"""

from __future__ import annotations

from typing import Any

from relay.vendors.base import InboundRequest, MappingOverrides, ParsedWebhook, PayloadError
from relay.vendors.payload import (
    Catalogue,
    Draft,
    Json,
    Subject,
    address_text,
    compact,
    describe,
    finish,
    integer,
    load_object,
    location,
    obj,
    overridden_name,
    position,
    scalars,
    status_fields,
    status_word,
    text,
    time_text,
)

VISIT_STATUSES = {1: "unscheduled", 2: "planning", 3: "scheduled", 4: "done", 5: "failed"}
FAIL_REASONS = {
    1: "Not at the address",
    2: "No answer to the call",
    3: "Incorrect phone number",
    4: "Incorrect address",
    5: "Could not find the address",
    6: "Refused",
    7: "Other",
}

VENDOR_EVENTS: dict[str, str] = {
    "visit.created": "order.created",
    "visit.status.changed": "order.updated",
    "visit.status.changed (status scheduled)": "order.scheduled",
    "visit.status.changed (status done)": "order.completed",
    "visit.status.changed (status failed)": "order.failed",
    "visit.delivery_note.changed": "order.updated",
    "visit.recipient_note.changed": "order.updated",
    "attachment.signature.created": "proof.signature_added",
    "attachment.photo.created": "proof.photo_added",
}

CATALOGUE = Catalogue("routestripe", VENDOR_EVENTS, canonical=str.lower)

_NOTE_FIELDS = {
    "visit.delivery_note.changed": "delivery_note",
    "visit.recipient_note.changed": "recipient_note",
}
_PROOF_KINDS = {
    "attachment.signature.created": "signature",
    "attachment.photo.created": "photo",
}


def parse(request: InboundRequest, overrides: MappingOverrides) -> ParsedWebhook:
    body = load_object(request)
    entries = _entries(body)
    if entries is None:
        return ParsedWebhook(kind="ping", events=[], notes=["RouteStripe webhook.ping"])
    notes: list[str] = []
    events = [finish(_draft(entry, overrides), CATALOGUE, overrides, notes) for entry in entries]
    return ParsedWebhook(kind="events", events=events, notes=notes)


def _entries(body: Json) -> list[Json] | None:
    """The batch's events; None for a ping."""
    data = body.get("data")
    events = data.get("events") if isinstance(data, dict) else None
    if events is None:
        kind = text(body.get("event"))
        if kind == "webhook.ping":
            return None
        if kind == "batch":
            raise PayloadError("a RouteStripe batch must hold its events in data.events (an array)")
        # An event outside a batch is not documented; it is kept rather than refused.
        return [body]
    if not isinstance(events, list):
        raise PayloadError(f"data.events must be an array of events, got {describe(events)}")
    for index, entry in enumerate(events):
        if not isinstance(entry, dict):
            raise PayloadError(f"data.events[{index}] must be an object, got {describe(entry)}")
    _check_count(body.get("event_count"), len(events))
    return events


def _check_count(declared: Any, actual: int) -> None:
    if declared is None:
        return
    count = integer(declared)
    if count is None:
        raise PayloadError(f"event_count must be a whole number, got {describe(declared)}")
    if count != actual:
        raise PayloadError(
            f"event_count is {count} but data.events holds {actual} events: "
            "the batch is incomplete or was altered on the way"
        )


def _draft(entry: Json, overrides: MappingOverrides) -> Draft:
    name = overridden_name(entry, overrides) or text(entry.get("event"))
    snapshot = obj(entry.get("object")) or {}
    entity = text(entry.get("entity")) or (name or "").partition(".")[0]
    if entity.lower() == "attachment":
        subject, data, qualifier = _attachment(snapshot, name)
    else:
        subject, data, qualifier = _visit(snapshot, name)
    return Draft(
        name=name,
        subject=subject,
        data=data,
        raw=entry,
        qualifier=qualifier,
        event_id=text(entry.get("id")),
        event_time=entry.get("timestamp"),
    )


def _visit(visit: Json, name: str | None) -> tuple[Subject, Json, str | None]:
    order = compact(
        id=text(visit.get("id")),
        external_id=text(visit.get("external_id")),
        title=text(visit.get("name")),
    )
    route_id = None if integer(visit.get("route_id")) == 0 else text(visit.get("route_id"))
    event = (name or "").lower()
    note_field = _NOTE_FIELDS.get(event)
    change = note_field or ("status" if event == "visit.status.changed" else None)
    data = compact(
        **status_fields(visit.get("status"), VISIT_STATUSES),
        change=change,
        order=order,
        route=compact(id=route_id),
        stop=compact(
            position=position(visit.get("position")),
            address=address_text(visit.get("address")),
            eta=time_text(visit.get("arrival_time")),
        ),
        location=location(visit.get("lat"), visit.get("lng")),
        recipient=compact(
            name=text(visit.get("recipient_name")), phone=text(visit.get("recipient_phone"))
        ),
        note=None
        if note_field is None
        else compact(field=note_field, text=text(visit.get(note_field))),
        failure=_failure(visit.get("fail_reason_id")),
        extra=scalars(
            visit, "plan_id", "type", "start_time", "end_time", "confirmation_type", "completed_at"
        ),
    )
    word = status_word(visit.get("status"), VISIT_STATUSES)
    subject = Subject("order", order.get("id"), order.get("external_id"))
    return subject, data, None if word is None else f"status {word}"


def _failure(reason_id: Any) -> Json | None:
    code = integer(reason_id)
    if code is None or code == 0:
        return None
    return compact(code=code, reason=FAIL_REASONS.get(code))


def _attachment(attachment: Json, name: str | None) -> tuple[Subject, Json, str | None]:
    visit_id = text(attachment.get("visit_id"))
    kind = _PROOF_KINDS.get((name or "").lower()) or text(attachment.get("type"))
    data = compact(
        order=compact(id=visit_id),
        proof=compact(
            kind=None if kind is None else kind.lower(),
            id=text(attachment.get("id")),
            path=text(attachment.get("path")),
            url=text(attachment.get("url")),
        ),
    )
    return Subject("order", visit_id), data, None
