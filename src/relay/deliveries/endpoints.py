from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query

from relay.apikeys.auth import require_admin
from relay.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, checked_cursor
from relay.db.session import DbSession
from relay.deliveries.repository import DeliveryQuery
from relay.deliveries.schemas import AttemptOut, DeliveryDetail, DeliveryOut
from relay.deliveries.service import DeliveryService
from relay.openapi import CONFLICT
from relay.outbox.models import Delivery, DeliveryAttempt

router = APIRouter(prefix="/v1", tags=["deliveries"], dependencies=[Depends(require_admin)])

_STATUS = "^(pending|succeeded|failed)$"


def delivery_out(delivery: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        event_id=delivery.event_id,
        subscription_id=delivery.subscription_id,
        status=delivery.status,
        attempt_count=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        updated_at=delivery.updated_at,
        completed_at=delivery.completed_at,
    )


def attempt_out(attempt: DeliveryAttempt) -> AttemptOut:
    return AttemptOut.model_validate(attempt, from_attributes=True)


@router.get("/deliveries", response_model=Page[DeliveryOut])
async def list_deliveries(
    session: DbSession,
    subscription_id: str | None = Query(None),
    event_id: str | None = Query(None),
    status: str | None = Query(None, pattern=_STATUS, description="pending, succeeded or failed."),
    since: datetime | None = Query(None, description="Created at or after (ISO 8601)."),
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> Page[DeliveryOut]:
    deliveries = await DeliveryService(session).list(
        DeliveryQuery(
            subscription_id=subscription_id, event_id=event_id, status=status, since=since
        ),
        limit=limit,
        cursor=checked_cursor(cursor),
    )
    return Page[DeliveryOut](
        data=[delivery_out(delivery) for delivery in deliveries],
        next_cursor=deliveries[-1].id if len(deliveries) == limit else None,
    )


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
async def get_delivery(delivery_id: str, session: DbSession) -> DeliveryDetail:
    service = DeliveryService(session)
    delivery = await service.get(delivery_id)
    attempts = await service.attempts(delivery_id)
    return DeliveryDetail(
        **delivery_out(delivery).model_dump(), attempts=[attempt_out(a) for a in attempts]
    )


@router.post("/deliveries/{delivery_id}/retry", response_model=DeliveryOut, responses=CONFLICT)
async def retry_delivery(delivery_id: str, session: DbSession) -> DeliveryOut:
    delivery = await DeliveryService(session).retry(delivery_id, now=datetime.now(UTC))
    await session.commit()
    return delivery_out(delivery)


@router.get("/subscriptions/{subscription_id}/attempts", response_model=Page[AttemptOut])
async def list_subscription_attempts(
    subscription_id: str,
    session: DbSession,
    errors_only: bool = Query(False, description="Only attempts that did not succeed."),
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> Page[AttemptOut]:
    attempts = await DeliveryService(session).subscription_attempts(
        subscription_id, errors_only=errors_only, limit=limit, cursor=checked_cursor(cursor)
    )
    return Page[AttemptOut](
        data=[attempt_out(attempt) for attempt in attempts],
        next_cursor=attempts[-1].id if len(attempts) == limit else None,
    )
