from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from relay.apikeys.auth import require_admin
from relay.core.netguard import DestinationPolicy
from relay.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, checked_cursor
from relay.core.settings import Settings
from relay.db.session import DbSession
from relay.dispatcher.sender import DeliveryClient
from relay.subscriptions.destinations import DestinationChecker
from relay.subscriptions.repository import SubscriptionRepository
from relay.subscriptions.schemas import (
    SecretOut,
    SubscriptionCreate,
    SubscriptionOut,
    SubscriptionUpdate,
    TestDeliveryOut,
)
from relay.subscriptions.service import SubscriptionService, resolve_source_ids, to_out

router = APIRouter(
    prefix="/v1/subscriptions", tags=["subscriptions"], dependencies=[Depends(require_admin)]
)


def _service(session: DbSession, request: Request) -> SubscriptionService:
    settings: Settings = request.app.state.settings
    return SubscriptionService(
        SubscriptionRepository(session),
        DestinationChecker(DestinationPolicy.from_settings(settings)),
    )


@router.post("", status_code=201, response_model=SubscriptionOut)
async def create_subscription(
    payload: SubscriptionCreate, request: Request, session: DbSession
) -> SubscriptionOut:
    payload = payload.model_copy(
        update={"source_ids": await resolve_source_ids(session, payload.source_ids)}
    )
    subscription = await _service(session, request).create(payload)
    await session.commit()
    return to_out(subscription, reveal_secret=True)


@router.get("", response_model=Page[SubscriptionOut])
async def list_subscriptions(
    request: Request,
    session: DbSession,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> Page[SubscriptionOut]:
    service = _service(session, request)
    subscriptions = await service.list(limit=limit, cursor=checked_cursor(cursor))
    return Page[SubscriptionOut](
        data=[to_out(subscription) for subscription in subscriptions],
        next_cursor=subscriptions[-1].id if len(subscriptions) == limit else None,
    )


@router.get("/{subscription_id}", response_model=SubscriptionOut)
async def get_subscription(
    subscription_id: str, request: Request, session: DbSession
) -> SubscriptionOut:
    return to_out(await _service(session, request).get(subscription_id))


@router.patch("/{subscription_id}", response_model=SubscriptionOut)
async def update_subscription(
    subscription_id: str, payload: SubscriptionUpdate, request: Request, session: DbSession
) -> SubscriptionOut:
    if payload.source_ids is not None:
        payload = payload.model_copy(
            update={"source_ids": await resolve_source_ids(session, payload.source_ids)}
        )
    service = _service(session, request)
    subscription = await service.update(subscription_id, payload, now=datetime.now(UTC))
    await session.commit()
    return to_out(subscription)


@router.delete("/{subscription_id}", status_code=204)
async def delete_subscription(
    subscription_id: str, request: Request, session: DbSession
) -> Response:
    await _service(session, request).delete(subscription_id, now=datetime.now(UTC))
    await session.commit()
    return Response(status_code=204)


@router.post("/{subscription_id}/rotate-secret", response_model=SecretOut)
async def rotate_secret(subscription_id: str, request: Request, session: DbSession) -> SecretOut:
    settings: Settings = request.app.state.settings
    now = datetime.now(UTC)
    subscription = await _service(session, request).rotate_secret(
        subscription_id, now=now, overlap_until=now + settings.secret_rotation_overlap
    )
    await session.commit()
    return SecretOut(
        id=subscription.id,
        secret=subscription.secret,
        previous_secret_expires_at=subscription.previous_secret_expires_at,
    )


@router.post("/{subscription_id}/test", response_model=TestDeliveryOut)
async def test_subscription(
    subscription_id: str, request: Request, session: DbSession
) -> TestDeliveryOut:
    settings: Settings = request.app.state.settings
    client: DeliveryClient = request.app.state.http_client
    return await _service(session, request).send_test(
        subscription_id,
        client=client,
        attempt_timeout=settings.delivery_timeout,
        now=datetime.now(UTC),
    )
