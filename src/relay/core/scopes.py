"""What each API scope may do: the one table every admin route is checked against.

- `read`: every read, except who holds which API key.
- `ops`: everything `read` may, plus the operational actions (retry, replay, recover, test a
  source or a subscription): they re-send what is stored or send a test, and change no
  configuration and no credential.
- `admin`: everything, among it every change to sources and subscriptions (their credentials
  and secrets with them) and the API keys themselves.

Every admin route is listed in `ROUTE_SCOPES` by its method and path template. A route missing
from it needs `admin` (new routes fail closed), and a test fails until someone decides its scope
here.
"""

from __future__ import annotations

from typing import Literal, get_args

Scope = Literal["read", "ops", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)

ROUTE_SCOPES: dict[tuple[str, str], Scope] = {
    ("GET", "/metrics"): "read",
    ("GET", "/v1/activity"): "read",
    ("GET", "/v1/stats"): "read",
    ("GET", "/v1/sources"): "read",
    ("GET", "/v1/sources/{source_id}"): "read",
    ("POST", "/v1/sources"): "admin",
    ("PATCH", "/v1/sources/{source_id}"): "admin",
    ("DELETE", "/v1/sources/{source_id}"): "admin",
    ("POST", "/v1/sources/{source_id}/test"): "ops",
    ("GET", "/v1/events"): "read",
    ("GET", "/v1/events/{event_id}"): "read",
    ("GET", "/v1/event-types"): "read",
    ("POST", "/v1/events/replay"): "ops",
    ("POST", "/v1/events/{event_id}/replay"): "ops",
    ("GET", "/v1/requests"): "read",
    ("GET", "/v1/requests/{request_id}"): "read",
    ("GET", "/v1/subscriptions"): "read",
    ("GET", "/v1/subscriptions/{subscription_id}"): "read",
    ("GET", "/v1/subscriptions/{subscription_id}/attempts"): "read",
    ("POST", "/v1/subscriptions"): "admin",
    ("PATCH", "/v1/subscriptions/{subscription_id}"): "admin",
    ("DELETE", "/v1/subscriptions/{subscription_id}"): "admin",
    ("POST", "/v1/subscriptions/{subscription_id}/rotate-secret"): "admin",
    ("POST", "/v1/subscriptions/{subscription_id}/test"): "ops",
    ("POST", "/v1/subscriptions/{subscription_id}/recover"): "ops",
    ("GET", "/v1/deliveries"): "read",
    ("GET", "/v1/deliveries/{delivery_id}"): "read",
    ("POST", "/v1/deliveries/{delivery_id}/retry"): "ops",
    ("GET", "/v1/jobs"): "read",
    ("GET", "/v1/jobs/{job_id}"): "read",
    ("GET", "/v1/api-keys"): "admin",
    ("POST", "/v1/api-keys"): "admin",
    ("DELETE", "/v1/api-keys/{api_key_id}"): "admin",
}


def required_scope(method: str, path_template: str | None) -> Scope:
    """The least scope allowed to call a route; `admin` for anything not listed."""
    method = method.upper()
    if path_template is None:
        return "admin"
    # HEAD answers what GET would, without the body.
    lookup = "GET" if method == "HEAD" else method
    return ROUTE_SCOPES.get((lookup, path_template), "admin")


def allows(granted: Scope, needed: Scope) -> bool:
    return SCOPES.index(granted) >= SCOPES.index(needed)
