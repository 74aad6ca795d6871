"""The unified event types subscribers filter on, each with a one-line description.

Every type a vendor adapter can emit is here, plus `relay.ping` (a subscription's test
delivery) and one `<vendor>.unknown` per vendor for events the relay keeps but cannot classify.
docs/events.md shows an example of each.
"""

from __future__ import annotations

EVENT_TYPES: dict[str, str] = {
    "route.planned": "A route was planned and released; its stops and time windows are set.",
    "route.updated": "A planned route was changed.",
    "route.optimized": "Route optimization ran: the resulting routes and the orders left out.",
    "route.assigned": "A route was assigned to, or claimed by, a driver.",
    "route.unassigned": "A route's driver was taken off it; it can be assigned again.",
    "route.started": "The driver started the route.",
    "route.finished": "The driver finished the route.",
    "stop.arrived": "The driver arrived at a stop.",
    "stop.departed": "The driver left a stop.",
    "stop.completed": "Everything at a stop was done.",
    "order.created": "An order (delivery, visit, task) was created.",
    "order.updated": "An order's details changed; data.change says what, when the vendor does.",
    "order.confirmed": "An order's appointment was confirmed.",
    "order.pending": "An order was put on hold (pending).",
    "order.scheduled": "An order was scheduled: given a date or a place in the planning.",
    "order.unscheduled": "An order was taken out of the planning, back to the unplanned pool.",
    "order.assigned": "An order was assigned to a route, a driver or a delivery provider.",
    "order.unassigned": "An order was taken off its route or driver.",
    "order.rescheduled": "An order's date, time or route changed.",
    "order.eta_changed": "An order's estimated time of arrival changed.",
    "order.accepted": "The driver accepted an order.",
    "order.rejected": "The driver rejected an order.",
    "order.locked": "An order was locked against changes.",
    "order.late": "An order is running late.",
    "order.loaded": "An order was loaded into the vehicle.",
    "order.loading_cancelled": "Loading an order was cancelled.",
    "order.unloaded": "An order was unloaded from the vehicle.",
    "order.unloading_cancelled": "Unloading an order was cancelled.",
    "order.completed": "An order was done (delivered, collected, serviced).",
    "order.failed": "An order could not be done; data.failure says why, when the vendor does.",
    "order.cancelled": "An order was cancelled.",
    "order.deleted": "An order was deleted.",
    "order.note_added": "A note was added to an order.",
    "order.form_submitted": "A form attached to an order was filled in.",
    "order.rated": "The customer rated an order.",
    "proof.photo_added": "A proof-of-delivery photo was added to an order.",
    "proof.signature_added": "A signature was added to an order.",
    "driver.status_changed": "A driver's status or availability changed.",
    "driver.shift_started": "A driver started a shift.",
    "driver.shift_ended": "A driver ended a shift.",
    "notification.sent": "The vendor sent a notification (SMS, e-mail) about an order.",
    "relay.ping": "A test delivery the relay sends when a subscription is tested.",
    "routigo.unknown": "A RoutiGo event the relay could not classify, kept as received.",
    "antsroute.unknown": "An AntsRoute event the relay could not classify, kept as received.",
    "bringg.unknown": "A Bringg event the relay could not classify, kept as received.",
    "routestripe.unknown": "A RouteStripe event the relay could not classify, kept as received.",
}
