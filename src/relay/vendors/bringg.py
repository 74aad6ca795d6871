"""Bringg: one event per webhook, named by `webhook_type`; the entity sits under `task`, `run`,
`user` or `way_point`, or flat at the top level.

Bringg sends no event id. Names beyond the seven seen in Bringg's examples are plausible
guesses for webhooks Bringg documents without showing their `webhook_type`; a source's
type_map covers any that turn out to be spelled differently.
"""

from __future__ import annotations

from typing import Any

from relay.vendors.base import InboundRequest, MappingOverrides, ParsedWebhook
from relay.vendors.payload import (
    Catalogue,
    Draft,
    Json,
    Subject,
    address_text,
    child,
    compact,
    finish,
    first_text,
    integer,
    load_object,
    location,
    objects,
    overridden_name,
    position,
    scalars,
    snake,
    status_fields,
    status_word,
    text,
    time_text,
)

TASK_STATUSES = {
    0: "created",
    1: "assigned",
    2: "started",
    3: "arrived",
    4: "done",
    6: "accepted",
    7: "cancelled",
}

# A task object sent without webhook_type is named "task"; its status tells what happened.
FLAT_TASK = "task"

VENDOR_EVENTS: dict[str, str] = {
    "run_started": "route.started",
    "run_ended": "route.finished",
    "planning_done": "route.planned",
    "route_plan_updated": "route.updated",
    "optimization_applied": "route.optimized",
    "way_point_arrived": "stop.arrived",
    "way_point_left": "stop.departed",
    "task_created": "order.created",
    "task_updated": "order.updated",
    "task_assigned": "order.assigned",
    "task_assigned_to_dp": "order.assigned",
    "task_unassigned": "order.unassigned",
    "task_accepted": "order.accepted",
    "task_rejected": "order.rejected",
    "task_rescheduled": "order.rescheduled",
    "task_eta_updated": "order.eta_changed",
    "eta_updated": "order.eta_changed",
    "task_late": "order.late",
    "task_done": "order.completed",
    "task_cancelled": "order.cancelled",
    "task_note_added": "order.note_added",
    "task_form_submitted": "order.form_submitted",
    "task_rated": "order.rated",
    "driver_unavailable_status_changed": "driver.status_changed",
    "shift_started": "driver.shift_started",
    "shift_ended": "driver.shift_ended",
    FLAT_TASK: "order.updated",
    f"{FLAT_TASK} (status done)": "order.completed",
    f"{FLAT_TASK} (status cancelled)": "order.cancelled",
}

CATALOGUE = Catalogue("bringg", VENDOR_EVENTS, canonical=snake)

_KIND_OF_TYPE = {"route": "route", "stop": "stop", "order": "order", "driver": "driver"}
# When the name says nothing, the key holding an object says what the event is about.
_KIND_OF_KEY = (("run", "route"), ("way_point", "stop"), ("task", "order"), ("user", "driver"))
_TASK_KEYS = ("way_points", "title", "task_type_id", "customer", "external_id")
_TIME_KEYS = {
    "run_started": "started_at",
    "run_ended": "ended_at",
    "way_point_arrived": "checkin_time",
    "way_point_left": "checkout_time",
    "task_created": "created_at",
    "task_accepted": "accept_time",
    "task_done": "ended_time",
    "task_updated": "updated_at",
    "route_plan_updated": "updated_at",
}


def parse(request: InboundRequest, overrides: MappingOverrides) -> ParsedWebhook:
    body = load_object(request)
    name = overridden_name(body, overrides) or text(body.get("webhook_type"))
    if name is None and _looks_like_task(body):
        name = FLAT_TASK
    notes: list[str] = []
    event = finish(_draft(body, name), CATALOGUE, overrides, notes)
    return ParsedWebhook(kind="events", events=[event], notes=notes)


def _looks_like_task(body: Json) -> bool:
    # A flat way point has an id and a task_id: it belongs to a task but is not one.
    if text(body.get("id")) is None or "task_id" in body:
        return False
    return any(key in body for key in _TASK_KEYS)


def _kind(body: Json, name: str | None) -> str:
    unified = None if name is None else VENDOR_EVENTS.get(snake(name))
    if unified == "route.optimized":
        return "plan"
    if unified is not None:
        return _KIND_OF_TYPE.get(unified.partition(".")[0], "unknown")
    for key, kind in _KIND_OF_KEY:
        if isinstance(body.get(key), dict):
            return kind
    if "runs" in body or "unassigned_tasks" in body:
        return "plan"
    if "task_id" in body:
        return "stop"
    return "order" if _looks_like_task(body) else "unknown"


def _draft(body: Json, name: str | None) -> Draft:
    kind = _kind(body, name)
    event = snake(name) if name else ""
    common = scalars(body, "merchant_id")
    if kind == "route":
        return _route_event(body, name, event, common)
    if kind == "stop":
        return _stop_event(body, name, event, common)
    if kind == "order":
        return _order_event(body, name, event, common)
    if kind == "driver":
        return _driver_event(body, name, common)
    if kind == "plan":
        return _plan_event(body, name, common)
    return Draft(name=name, subject=Subject("unknown"), data=compact(extra=common), raw=body)


def _route_event(body: Json, name: str | None, event: str, common: Json) -> Draft:
    run = child(body, "run", "planned_route") or body
    route = _route(run)
    ended = event == "run_ended"
    data = compact(
        route=route,
        driver=_driver(child(run, "user"), run.get("user_id")),
        orders=[_order(task) for task in objects(run.get("tasks"))],
        location=(
            location(run.get("end_lat"), run.get("end_lng"))
            if ended
            else location(run.get("start_lat"), run.get("start_lng"))
        ),
        extra=common
        | scalars(run, "team_id", "planned_route_id", "vehicle_id", "start_method", "end_method"),
    )
    return Draft(
        name=name,
        subject=Subject("route", route.get("id"), route.get("external_id")),
        data=data,
        raw=body,
        event_time=_event_time(run, event),
    )


def _stop_event(body: Json, name: str | None, event: str, common: Json) -> Draft:
    way_point = child(body, "way_point") or body
    task = child(way_point, "task") or child(body, "task") or {}
    stop = _stop(way_point)
    data = compact(
        stop=stop,
        order=compact(
            id=text(way_point.get("task_id")) or text(task.get("id")),
            external_id=text(task.get("external_id")),
            title=text(task.get("title")),
        ),
        driver=_driver(child(task, "user"), task.get("user_id")),
        location=location(way_point.get("lat"), way_point.get("lng")),
        recipient=_recipient(child(way_point, "customer") or way_point),
        extra=common,
    )
    return Draft(
        name=name,
        subject=Subject("stop", stop.get("id"), stop.get("external_id")),
        data=data,
        raw=body,
        event_time=_event_time(way_point, event),
    )


def _order_event(body: Json, name: str | None, event: str, common: Json) -> Draft:
    task = child(body, "task") or body
    order = compact(
        id=text(task.get("id")),
        external_id=text(task.get("external_id")),
        title=text(task.get("title")),
        stops=[_stop(way_point) for way_point in objects(task.get("way_points"))],
    )
    data = compact(
        **status_fields(task.get("status"), TASK_STATUSES),
        order=order,
        route=compact(id=text(task.get("run_id"))),
        driver=_driver(child(task, "user"), task.get("user_id")),
        recipient=_recipient(child(task, "customer")),
        extra=common | scalars(task, "fleet_id", "fleet_name", "team_id"),
    )
    word = status_word(task.get("status"), TASK_STATUSES)
    return Draft(
        name=name,
        subject=Subject("order", order.get("id"), order.get("external_id")),
        data=data,
        raw=body,
        qualifier=None if word is None else f"status {word}",
        event_time=_event_time(task, event),
    )


def _driver_event(body: Json, name: str | None, common: Json) -> Draft:
    user = child(body, "user") or body
    available = body.get("user_available")
    driver = _driver(user, None) | compact(
        available=available if isinstance(available, bool) else None
    )
    data = compact(
        **status_fields(user.get("status")),
        driver=driver,
        extra=common | scalars(user, "sub"),
    )
    return Draft(
        name=name,
        subject=Subject("driver", driver.get("id"), driver.get("external_id")),
        data=data,
        raw=body,
    )


def _plan_event(body: Json, name: str | None, common: Json) -> Draft:
    routes = [
        _route(run)
        | compact(
            driver=_driver(child(run, "user"), run.get("user_id")),
            orders=[_order(task) for task in objects(run.get("tasks"))],
        )
        for run in objects(body.get("runs"))
    ]
    data = compact(
        routes=routes,
        unassigned_orders=[_order(task) for task in objects(body.get("unassigned_tasks"))],
        extra=common | scalars(body, "team_id", "origin"),
    )
    return Draft(name=name, subject=Subject("plan"), data=data, raw=body)


def _event_time(entity: Json, event: str) -> Any:
    # Only a field that records this very event: a general updated_at may stay the same across
    # distinct events (an ETA change need not touch the task), and would merge them.
    key = _TIME_KEYS.get(event)
    return None if key is None else entity.get(key)


def _route(run: Json) -> Json:
    return compact(
        id=text(run.get("id")),
        external_id=text(run.get("external_id")),
        name=first_text(run, "title", "name"),
        scheduled_start=time_text(run.get("scheduled_start_time")),
        scheduled_end=time_text(run.get("scheduled_end_time")),
        started_at=time_text(run.get("started_at")),
        ended_at=time_text(run.get("ended_at")),
    )


def _order(task: Json) -> Json:
    return compact(
        id=text(task.get("id")),
        external_id=text(task.get("external_id")),
        title=text(task.get("title")),
        **status_fields(task.get("status"), TASK_STATUSES),
        failure=compact(code=integer(task.get("reason_code")), reason=text(task.get("reason"))),
        stops=[_stop(way_point) for way_point in objects(task.get("way_points"))],
    )


def _stop(way_point: Json) -> Json:
    return compact(
        id=text(way_point.get("id")),
        external_id=text(way_point.get("external_id")),
        position=position(way_point.get("position")),
        address=address_text(way_point.get("address")),
        eta=time_text(way_point.get("eta")),
        scheduled_at=time_text(way_point.get("scheduled_at")),
        arrived_at=time_text(way_point.get("checkin_time")),
        departed_at=time_text(way_point.get("checkout_time")),
    )


def _recipient(customer: Json | None) -> Json | None:
    if customer is None:
        return None
    return compact(name=text(customer.get("name")), phone=text(customer.get("phone")))


def _driver(user: Json | None, fallback_id: Any) -> Json:
    if user is None:
        return compact(id=text(fallback_id))
    return compact(
        id=text(user.get("id")) or text(fallback_id),
        external_id=text(user.get("external_id")),
        name=text(user.get("name")),
        phone=text(user.get("phone")),
    )
