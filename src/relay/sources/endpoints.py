from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Response

from relay.apikeys.auth import require_admin
from relay.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, checked_cursor
from relay.db.session import DbSession
from relay.openapi import CONFLICT
from relay.sources.repository import SourceRepository
from relay.sources.schemas import SourceCreate, SourceOut, SourceUpdate
from relay.sources.service import SourceService, to_out

router = APIRouter(prefix="/v1/sources", tags=["sources"], dependencies=[Depends(require_admin)])


def _service(session: DbSession) -> SourceService:
    return SourceService(SourceRepository(session))


@router.post("", status_code=201, response_model=SourceOut, responses=CONFLICT)
async def create_source(payload: SourceCreate, session: DbSession) -> SourceOut:
    source = await _service(session).create(payload)
    await session.commit()
    return to_out(source)


@router.get("", response_model=Page[SourceOut])
async def list_sources(
    session: DbSession, limit: LimitQuery = DEFAULT_LIMIT, cursor: CursorQuery = None
) -> Page[SourceOut]:
    sources = await _service(session).list(limit=limit, cursor=checked_cursor(cursor))
    next_cursor = sources[-1].id if len(sources) == limit else None
    return Page[SourceOut](data=[to_out(source) for source in sources], next_cursor=next_cursor)


@router.get("/{source_id}", response_model=SourceOut)
async def get_source(source_id: str, session: DbSession) -> SourceOut:
    return to_out(await _service(session).get(source_id))


@router.patch("/{source_id}", response_model=SourceOut)
async def update_source(source_id: str, payload: SourceUpdate, session: DbSession) -> SourceOut:
    source = await _service(session).update(source_id, payload, now=datetime.now(UTC))
    await session.commit()
    return to_out(source)


@router.delete("/{source_id}", status_code=204)
async def delete_source(source_id: str, session: DbSession) -> Response:
    await _service(session).delete(source_id)
    await session.commit()
    return Response(status_code=204)
