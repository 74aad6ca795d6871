"""Who may call the admin API: the bootstrap admin token, API keys, and the scope check.

`require_admin` is the dependency every admin router declares. Despite its historical name it
lets any authenticated caller through whose scope covers the matched route, as
`relay.core.scopes.required_scope` decides from the route's method and path template.

`AdminAuthMiddleware` authenticates every `/v1/*` request from its headers before any of it is
routed: FastAPI reads a route's body before it runs the route's dependencies, so without it a
client with no token could make the relay wait for a body it never sends.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from relay.apikeys.models import ApiKey
from relay.apikeys.repository import ApiKeyRepository
from relay.apikeys.service import ApiKeyService, as_scope
from relay.core.errors import (
    Forbidden,
    RelayError,
    Unauthorized,
    database_or_internal,
    error_response,
)
from relay.core.scopes import Scope, allows, required_scope
from relay.core.secretfile import read_or_create_owner_only
from relay.core.settings import Settings

ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name, not a secret
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of an admin request."""

    name: str
    scope: Scope
    api_key_id: str | None


ADMIN_TOKEN_PRINCIPAL = Principal(name="RELAY_ADMIN_TOKEN", scope="admin", api_key_id=None)


def load_or_create_admin_token(settings: Settings) -> tuple[str, bool]:
    """Returns the admin token and whether it was generated just now."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value(), False
    return read_or_create_owner_only(
        settings.data_dir / ADMIN_TOKEN_FILE, lambda: "rla_" + secrets.token_urlsafe(32)
    )


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def authenticate(request: Request) -> Principal:
    presented = bearer_token(request)
    if presented is None:
        raise Unauthorized(
            "missing credentials: send 'Authorization: Bearer <API key or RELAY_ADMIN_TOKEN>'",
            headers=_CHALLENGE,
        )
    return await principal_for_token(request, presented)


async def principal_for_token(request: Request, presented: str) -> Principal:
    """Who a presented token (the admin token or an API key) is; Unauthorized saying why not."""
    admin_token: str = request.app.state.admin_token
    if hmac.compare_digest(presented.encode(), admin_token.encode()):
        return ADMIN_TOKEN_PRINCIPAL
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with factory() as session:
        check = await ApiKeyService(ApiKeyRepository(session)).check(
            presented, now=datetime.now(UTC)
        )
        await session.commit()
    if check.api_key is None:
        raise Unauthorized(check.problem or "invalid token", headers=_CHALLENGE)
    return _key_principal(check.api_key)


async def principal_for_key_id(request: Request, api_key_id: str) -> Principal | None:
    """The principal of an API key known by id (a console session), None once it is revoked."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with factory() as session:
        api_key = await ApiKeyService(ApiKeyRepository(session)).still_valid(api_key_id)
    return None if api_key is None else _key_principal(api_key)


def _key_principal(api_key: ApiKey) -> Principal:
    return Principal(name=api_key.name, scope=as_scope(api_key.scope), api_key_id=api_key.id)


async def require_admin(request: Request) -> Principal:
    """Authenticates the caller (unless AdminAuthMiddleware did) and checks its scope against
    the matched route."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        principal = await authenticate(request)
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    needed = required_scope(request.method, template if isinstance(template, str) else None)
    if not allows(principal.scope, needed):
        raise Forbidden(
            f"{request.method} {template} needs the '{needed}' scope; this key has "
            f"'{principal.scope}': use a key with the '{needed}' scope"
        )
    request.state.principal = principal
    return principal


ADMIN_PATH_PREFIX = "/v1/"


class AdminAuthMiddleware:
    """Answers an unauthenticated `/v1/*` request before its body is read; an authenticated one
    goes on with its principal in the request state, for `require_admin`'s scope check."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(ADMIN_PATH_PREFIX):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = await authenticate(request)
        except RelayError as exc:
            refusal = error_response(exc.status_code, exc.code, exc.message, headers=exc.headers)
            await refusal(scope, receive, send)
            return
        except Exception as exc:
            # Outside the app's error handlers: an API key lookup with the database down must
            # still be a 503 to retry, not a traceback.
            await (await database_or_internal(request, exc))(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
