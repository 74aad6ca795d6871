from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from relay import __version__
from relay.core.errors import is_database_unavailable
from relay.core.responses import JSONResponse
from relay.db.migrations import current_revision, head_revision

router = APIRouter(tags=["health"])


def _answer(example: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": example}}}


@router.get(
    "/healthz",
    summary="The process is up",
    responses={200: _answer({"status": "ok", "version": __version__}, "Up.")},
)
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    summary="The database is reachable and migrated to head",
    responses={
        200: _answer({"status": "ready", "migrations": {"current": "0008"}}, "Ready."),
        503: _answer(
            {
                "status": "unavailable",
                "database": "reachable",
                "migrations": {"current": "0007", "head": "0008"},
                "hint": "run `relay migrate`",
            },
            "The database is unreachable, or not migrated to head.",
        ),
    },
)
async def readyz(request: Request) -> JSONResponse:
    engine: AsyncEngine = request.app.state.engine
    expected = head_revision()
    try:
        current = await current_revision(engine)
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    if current != expected:
        return JSONResponse(
            {
                "status": "unavailable",
                "database": "reachable",
                "migrations": {"current": current, "head": expected},
                "hint": "run `relay migrate`",
            },
            status_code=503,
        )
    return JSONResponse({"status": "ready", "migrations": {"current": current}})
