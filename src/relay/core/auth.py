"""The admin API's bearer-token guard."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import Request

from relay.core.errors import Unauthorized
from relay.core.settings import Settings

ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name, not a secret


def load_or_create_admin_token(settings: Settings) -> tuple[str, bool]:
    """Returns the admin token and whether it was generated just now."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value(), False
    path = settings.data_dir / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text().strip(), False
    token = "rla_" + secrets.token_urlsafe(32)
    _write_owner_only(path, token)
    return token, True


def _write_owner_only(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content + "\n")


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def require_admin(request: Request) -> None:
    presented = bearer_token(request)
    if presented is None:
        raise Unauthorized(
            "missing admin credentials: send 'Authorization: Bearer <RELAY_ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    expected: str = request.app.state.admin_token
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized("invalid admin token", headers={"WWW-Authenticate": "Bearer"})
