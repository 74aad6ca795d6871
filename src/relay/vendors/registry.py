"""The vendors the relay understands, by the name a source's `vendor` field uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from relay.vendors import antsroute, bringg, routestripe, routigo
from relay.vendors.base import Adapter


@dataclass(frozen=True, slots=True)
class Vendor:
    """A vendor: its adapter, its event names and how its requests are proven genuine.

    `event_types` maps each vendor event name (some refined by a status, such as
    `visit.status.changed (status done)`) to its unified type. `default_verification` is the
    verification type a source gets when its configuration names none.
    """

    name: str
    title: str
    parse: Adapter
    event_types: Mapping[str, str]
    default_verification: str


VENDORS: dict[str, Vendor] = {
    vendor.name: vendor
    for vendor in (
        Vendor(
            name="routigo",
            title="RoutiGo",
            parse=routigo.parse,
            event_types=routigo.VENDOR_EVENTS,
            default_verification="header_token",
        ),
        Vendor(
            name="antsroute",
            title="AntsRoute",
            parse=antsroute.parse,
            event_types=antsroute.VENDOR_EVENTS,
            default_verification="basic",
        ),
        Vendor(
            name="bringg",
            title="Bringg",
            parse=bringg.parse,
            event_types=bringg.VENDOR_EVENTS,
            default_verification="header_token",
        ),
        Vendor(
            name="routestripe",
            title="RouteStripe",
            parse=routestripe.parse,
            event_types=routestripe.VENDOR_EVENTS,
            default_verification="hmac",
        ),
    )
}
