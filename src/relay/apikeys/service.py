"""Creating, listing, revoking and checking API keys.

A key is `rk_<prefix>_<secret>`: the prefix (12 hex characters) is stored readable to find the
key and to tell keys apart; of the whole key only its SHA-256 is stored. The secret part holds
256 random bits, so a plain hash is enough: there is nothing to guess that a slow hash would
protect.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from relay.apikeys.models import ApiKey
from relay.apikeys.repository import ApiKeyRepository
from relay.apikeys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from relay.core.errors import NotFound
from relay.core.ids import new_id
from relay.core.scopes import Scope

KEY_MARKER = "rk_"
PREFIX_HEX_CHARS = 12
# last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> tuple[str, str]:
    """A new key and its stored prefix."""
    prefix = KEY_MARKER + secrets.token_hex(PREFIX_HEX_CHARS // 2)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def prefix_of(key: str) -> str | None:
    if not key.startswith(KEY_MARKER):
        return None
    prefix, separator, rest = key.partition("_")[2].partition("_")
    if not separator or not rest or len(prefix) != PREFIX_HEX_CHARS:
        return None
    return KEY_MARKER + prefix


def to_out(api_key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=api_key.id,
        name=api_key.name,
        scope=as_scope(api_key.scope),
        prefix=api_key.prefix,
        created_at=api_key.created_at,
        last_used_at=api_key.last_used_at,
        revoked_at=api_key.revoked_at,
    )


def as_scope(value: str) -> Scope:
    # The column's check constraint allows nothing else.
    if value == "admin":
        return "admin"
    if value == "ops":
        return "ops"
    return "read"


class KeyCheck:
    """The result of checking a presented key: the key if it may be used, else why not."""

    def __init__(self, api_key: ApiKey | None, problem: str | None) -> None:
        self.api_key = api_key
        self.problem = problem


class ApiKeyService:
    def __init__(self, repository: ApiKeyRepository) -> None:
        self.repository = repository

    async def create(self, payload: ApiKeyCreate, *, now: datetime) -> ApiKeyCreated:
        key, prefix = generate_key()
        api_key = ApiKey(
            id=new_id("key"),
            name=payload.name,
            scope=payload.scope,
            prefix=prefix,
            key_hash=hash_key(key),
            created_at=now,
        )
        await self.repository.add(api_key)
        return ApiKeyCreated(**to_out(api_key).model_dump(), key=key)

    async def list(self, *, limit: int, cursor: str | None) -> Sequence[ApiKey]:
        return await self.repository.list(limit=limit, cursor=cursor)

    async def revoke(self, api_key_id: str, *, now: datetime) -> ApiKey:
        api_key = await self.repository.get(api_key_id)
        if api_key is None:
            raise NotFound(f"no API key with id '{api_key_id}'")
        if api_key.revoked_at is None:
            api_key.revoked_at = now
            await self.repository.session.flush()
        return api_key

    async def still_valid(self, api_key_id: str) -> ApiKey | None:
        """The key of a signed-in console session, if it exists and is not revoked: sessions
        hold the key's id, not the key, and end at their first request after a revocation."""
        api_key = await self.repository.get(api_key_id)
        if api_key is None or api_key.revoked_at is not None:
            return None
        return api_key

    async def check(self, presented: str, *, now: datetime) -> KeyCheck:
        prefix = prefix_of(presented)
        if prefix is None:
            return KeyCheck(None, "invalid token: not RELAY_ADMIN_TOKEN nor a known API key")
        api_key = await self.repository.get_by_prefix(prefix)
        # Compared in constant time even when no key has the prefix, so timing does not tell
        # which prefixes exist.
        expected = api_key.key_hash if api_key is not None else hash_key("")
        if not hmac.compare_digest(expected, hash_key(presented)) or api_key is None:
            return KeyCheck(None, "invalid token: not RELAY_ADMIN_TOKEN nor a known API key")
        if api_key.revoked_at is not None:
            return KeyCheck(None, f"API key {api_key.prefix} was revoked")
        if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
            api_key.last_used_at = now
            await self.repository.session.flush()
        return KeyCheck(api_key, None)
