"""/v1/api-keys: create (the key is shown once), list and revoke API keys. Admin scope only."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Response

from relay.apikeys.auth import require_admin
from relay.apikeys.repository import ApiKeyRepository
from relay.apikeys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from relay.apikeys.service import ApiKeyService, to_out
from relay.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, checked_cursor
from relay.db.session import DbSession

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"], dependencies=[Depends(require_admin)])


def _service(session: DbSession) -> ApiKeyService:
    return ApiKeyService(ApiKeyRepository(session))


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(payload: ApiKeyCreate, session: DbSession) -> ApiKeyCreated:
    created = await _service(session).create(payload, now=datetime.now(UTC))
    await session.commit()
    return created


@router.get("", response_model=Page[ApiKeyOut])
async def list_api_keys(
    session: DbSession, limit: LimitQuery = DEFAULT_LIMIT, cursor: CursorQuery = None
) -> Page[ApiKeyOut]:
    keys = await _service(session).list(limit=limit, cursor=checked_cursor(cursor))
    return Page[ApiKeyOut](
        data=[to_out(key) for key in keys],
        next_cursor=keys[-1].id if len(keys) == limit else None,
    )


@router.delete("/{api_key_id}", status_code=204)
async def revoke_api_key(api_key_id: str, session: DbSession) -> Response:
    await _service(session).revoke(api_key_id, now=datetime.now(UTC))
    await session.commit()
    return Response(status_code=204)
