"""GET /metrics: the Prometheus exposition of this process's counters and the queue's gauges."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from relay.apikeys.auth import require_admin
from relay.core.settings import Settings
from relay.db.session import DbSession
from relay.observability.metrics import Metrics
from relay.observability.repository import MetricsRepository

router = APIRouter(tags=["observability"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(request: Request, session: DbSession) -> Response:
    settings: Settings = request.app.state.settings
    if not settings.metrics_public:
        await require_admin(request)
    repository = MetricsRepository(session)
    backlog = await repository.backlog(now=datetime.now(UTC))
    breakers = await repository.breakers()
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(backlog, breakers), media_type=CONTENT_TYPE_LATEST)
