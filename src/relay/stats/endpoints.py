"""GET /v1/stats."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends

from relay.apikeys.auth import require_admin
from relay.db.session import DbSession
from relay.stats.schemas import StatsOut
from relay.stats.service import StatsService

router = APIRouter(prefix="/v1", tags=["stats"], dependencies=[Depends(require_admin)])


@router.get("/stats", response_model=StatsOut, summary="Delivery numbers of the last hour and day")
async def get_stats(session: DbSession) -> StatsOut:
    return await StatsService(session).stats(now=datetime.now(UTC))
