"""Console sign-in: a signed session cookie, its guard, and the CSRF token of every form.

The cookie holds who signed in (an API key's id, or the admin token) and a random CSRF token,
signed with itsdangerous and dated, so it expires after RELAY_CONSOLE_SESSION_TTL. It is
signed with the admin token: changing that token ends every console session. An API key
session is checked against the database on every request, so a revoked key's session ends at
its next request. Only the key's id is kept, never the key.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from relay.apikeys.auth import ADMIN_TOKEN_PRINCIPAL, Principal, principal_for_key_id
from relay.core.scopes import Scope, allows, required_scope
from relay.core.settings import Settings

SESSION_COOKIE = "relay_console"
LOGIN_COOKIE = "relay_console_login"
FLASH_COOKIE = "relay_console_flash"
CSRF_FIELD = "csrf"
_ADMIN_TOKEN = "admin-token"  # noqa: S105 - a marker in the cookie, not a secret
# The login form's CSRF cookie only has to outlive someone typing a token.
_LOGIN_FORM_SECONDS = 3600
_FLASH_SECONDS = 60

# What each console action does through the API, so the scope it needs is the one table's
# (relay.core.scopes), not a second copy.
ACTIONS: dict[str, tuple[str, str]] = {
    "retry": ("POST", "/v1/deliveries/{delivery_id}/retry"),
    "replay": ("POST", "/v1/events/{event_id}/replay"),
    "recover": ("POST", "/v1/subscriptions/{subscription_id}/recover"),
    "test": ("POST", "/v1/subscriptions/{subscription_id}/test"),
    "pause": ("PATCH", "/v1/subscriptions/{subscription_id}"),
    "edit_subscription": ("PATCH", "/v1/subscriptions/{subscription_id}"),
    "rotate_secret": ("POST", "/v1/subscriptions/{subscription_id}/rotate-secret"),
    "delete_subscription": ("DELETE", "/v1/subscriptions/{subscription_id}"),
    "create_subscription": ("POST", "/v1/subscriptions"),
    "create_source": ("POST", "/v1/sources"),
    "edit_source": ("PATCH", "/v1/sources/{source_id}"),
    "delete_source": ("DELETE", "/v1/sources/{source_id}"),
    "see_keys": ("GET", "/v1/api-keys"),
    "create_key": ("POST", "/v1/api-keys"),
    "revoke_key": ("DELETE", "/v1/api-keys/{api_key_id}"),
}


class LoginRequired(Exception):
    """No valid session: the guard answers with a redirect to the login form."""


class CsrfRefused(Exception):
    """A form came back without this session's CSRF token."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at a console page, and the token their forms must carry."""

    principal: Principal
    csrf: str

    def needs(self, action: str) -> Scope:
        method, template = ACTIONS[action]
        return required_scope(method, template)

    def can(self, action: str) -> bool:
        return allows(self.principal.scope, self.needs(action))

    @property
    def actions(self) -> dict[str, bool]:
        return {action: self.can(action) for action in ACTIONS}


def _serializer(request: Request, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.admin_token, salt=salt)


def _ttl_seconds(request: Request) -> int:
    settings: Settings = request.app.state.settings
    return int(settings.console_session_ttl.total_seconds())


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def start_session(request: Request, response: Response, principal: Principal) -> None:
    who = _ADMIN_TOKEN if principal.api_key_id is None else principal.api_key_id
    payload = {"who": who, "csrf": secrets.token_urlsafe(32)}
    token = _serializer(request, "relay.console.session").dumps(payload)
    _set_cookie(request, response, SESSION_COOKIE, token, _ttl_seconds(request))


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/console")


def _session_payload(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if raw is None:
        return None
    try:
        payload = _serializer(request, "relay.console.session").loads(
            raw, max_age=_ttl_seconds(request)
        )
    except BadSignature:
        return None
    return payload if isinstance(payload, dict) else None


async def current_viewer(request: Request) -> Viewer:
    """The guard of every console page but login and the static files."""
    payload = _session_payload(request)
    if payload is None:
        raise LoginRequired
    who, csrf = str(payload.get("who", "")), str(payload.get("csrf", ""))
    if who == _ADMIN_TOKEN:
        principal: Principal | None = ADMIN_TOKEN_PRINCIPAL
    else:
        principal = await principal_for_key_id(request, who)
    if principal is None or not csrf:
        raise LoginRequired
    return Viewer(principal=principal, csrf=csrf)


async def checked_form(request: Request, viewer: Viewer) -> dict[str, str]:
    """The posted form, once its CSRF token is this session's; CsrfRefused otherwise."""
    form = await request.form()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    if not hmac.compare_digest(fields.get(CSRF_FIELD, "").encode(), viewer.csrf.encode()):
        raise CsrfRefused
    return fields


def login_form_token(request: Request) -> tuple[str, str]:
    """The login form has no session yet: its CSRF token is also kept in a signed cookie, and
    the two must match when the form comes back. Returns the token and the cookie's value."""
    token = secrets.token_urlsafe(32)
    return token, _serializer(request, "relay.console.login").dumps(token)


def set_login_cookie(request: Request, response: Response, signed: str) -> None:
    _set_cookie(request, response, LOGIN_COOKIE, signed, _LOGIN_FORM_SECONDS)


def login_form_valid(request: Request, presented: str) -> bool:
    raw = request.cookies.get(LOGIN_COOKIE)
    if raw is None or not presented:
        return False
    try:
        expected = _serializer(request, "relay.console.login").loads(
            raw, max_age=_LOGIN_FORM_SECONDS
        )
    except BadSignature:
        return False
    return isinstance(expected, str) and hmac.compare_digest(expected.encode(), presented.encode())


def flash(request: Request, response: Response, kind: str, message: str) -> None:
    """A one-time notice for the page a POST redirects to (Post/Redirect/Get)."""
    signed = _serializer(request, "relay.console.flash").dumps([kind, message])
    _set_cookie(request, response, FLASH_COOKIE, signed, _FLASH_SECONDS)


def take_flash(request: Request) -> tuple[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if raw is None:
        return None
    try:
        kind, message = _serializer(request, "relay.console.flash").loads(
            raw, max_age=_FLASH_SECONDS
        )
    except (BadSignature, ValueError):
        return None
    return str(kind), str(message)
