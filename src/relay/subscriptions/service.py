from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from relay.core.errors import Invalid, NotFound
from relay.core.ids import new_id
from relay.core.jsonutil import dumps
from relay.core.masking import masked
from relay.dispatcher.sender import DeliveryClient, OutgoingDelivery, send, signing_secrets
from relay.dispatcher.signing import generate_secret, mask_secret
from relay.events.envelope import ping_envelope
from relay.outbox import health, transitions
from relay.outbox.retry import validate_schedule
from relay.outbox.states import SubscriptionState
from relay.sources.repository import SourceRepository
from relay.sources.service import SourceService
from relay.subscriptions.destinations import DestinationChecker, validate_headers
from relay.subscriptions.filters import FilterError, validate_event_types, validate_filter
from relay.subscriptions.models import Subscription
from relay.subscriptions.repository import SubscriptionRepository
from relay.subscriptions.schemas import (
    SubscriptionCreate,
    SubscriptionOut,
    SubscriptionUpdate,
    TestDeliveryOut,
)
from relay.vendors.registry import VENDORS


def shown_headers(headers: dict[str, str]) -> dict[str, str]:
    """Custom headers as answers show them after creation: every value masked like the signing
    secret, since subscribers put API keys in headers under any name (X-Partner-Cred)."""
    return {name: masked(value) for name, value in headers.items()}


def _kept_values(stored: dict[str, str], incoming: dict[str, str]) -> dict[str, str]:
    # A client that sends back what GET showed it must not overwrite a value with its mask.
    return {
        name: stored[name] if name in stored and value == masked(stored[name]) else value
        for name, value in incoming.items()
    }


async def resolve_source_ids(session: AsyncSession, names: list[str] | None) -> list[str] | None:
    """Sources are named by id or slug here as everywhere; the subscription keeps their ids. An
    id no source has is kept as it was before slugs were taken (a source deleted, or one made
    later under a known id); a slug no source has is a typo, and a 422."""
    if names is None:
        return None
    sources = SourceService(SourceRepository(session))
    resolved = []
    for name in names:
        source = await sources.find(name)
        if source is None and not name.startswith("src_"):
            raise Invalid(f"source_ids: no source with id or slug '{name}'")
        resolved.append(source.id if source is not None else name)
    return resolved


def to_out(subscription: Subscription, *, reveal_secret: bool = False) -> SubscriptionOut:
    return SubscriptionOut(
        id=subscription.id,
        url=subscription.url,
        event_types=subscription.event_types,
        vendors=subscription.vendors,
        source_ids=subscription.source_ids,
        filter=subscription.filter,
        headers=subscription.headers if reveal_secret else shown_headers(subscription.headers),
        description=subscription.description,
        ordered=subscription.ordered,
        max_concurrency=subscription.max_concurrency,
        rate_limit_per_second=subscription.rate_limit_per_second,
        retry_schedule=subscription.retry_schedule,
        active=subscription.active,
        state=subscription.state,
        liveness=subscription.liveness,
        state_reason=subscription.state_reason,
        consecutive_failures=subscription.consecutive_failures,
        failing_since=subscription.failing_since,
        secret=subscription.secret if reveal_secret else mask_secret(subscription.secret),
        previous_secret_expires_at=subscription.previous_secret_expires_at,
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
    )


def _checked(field: str, check: Any, value: Any) -> Any:
    try:
        return check(value)
    except (ValueError, FilterError) as exc:
        raise Invalid(f"{field}: {exc}") from exc


def _check_vendors(vendors: list[str] | None) -> list[str] | None:
    if vendors is None:
        return None
    unknown = sorted(set(vendors) - set(VENDORS))
    if unknown:
        raise Invalid(
            f"vendors: unknown vendor(s) {', '.join(unknown)}; use {', '.join(sorted(VENDORS))}"
        )
    return vendors or None


def _check_schedule(schedule: list[float] | None) -> list[float] | None:
    if schedule is None:
        return None
    return list(_checked("retry_schedule", validate_schedule, schedule))


def _check_filter(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    _checked("filter", validate_filter, spec)
    return spec


class SubscriptionService:
    def __init__(
        self, repository: SubscriptionRepository, destinations: DestinationChecker
    ) -> None:
        self.repository = repository
        self.destinations = destinations

    async def _checked_url(self, url: str) -> str:
        try:
            return await self.destinations.check(url)
        except ValueError as exc:
            raise Invalid(f"url: {exc}") from exc

    async def create(self, payload: SubscriptionCreate) -> Subscription:
        subscription = Subscription(
            id=new_id("sub"),
            url=await self._checked_url(payload.url),
            event_types=_checked("event_types", validate_event_types, payload.event_types),
            vendors=_check_vendors(payload.vendors),
            source_ids=payload.source_ids or None,
            filter=_check_filter(payload.filter),
            headers=_checked("headers", validate_headers, payload.headers),
            description=payload.description,
            ordered=payload.ordered,
            max_concurrency=payload.max_concurrency,
            rate_limit_per_second=payload.rate_limit_per_second,
            retry_schedule=_check_schedule(payload.retry_schedule),
            active=payload.active,
            state=SubscriptionState.ACTIVE,
            state_reason="",
            consecutive_failures=0,
            secret=generate_secret(),
        )
        await self.repository.add(subscription)
        return subscription

    async def get(self, subscription_id: str) -> Subscription:
        subscription = await self.repository.get(subscription_id)
        if subscription is None:
            raise NotFound(f"no subscription with id '{subscription_id}'")
        return subscription

    async def list(self, *, limit: int, cursor: str | None) -> Sequence[Subscription]:
        return await self.repository.list(limit=limit, cursor=cursor)

    async def update(
        self, subscription_id: str, payload: SubscriptionUpdate, *, now: datetime
    ) -> Subscription:
        subscription = await self.get(subscription_id)
        session = self.repository.session
        given = payload.model_fields_set
        endpoint_changed = False
        if payload.url is not None:
            url = await self._checked_url(payload.url)
            endpoint_changed = url != subscription.url
            subscription.url = url
        if payload.event_types is not None:
            subscription.event_types = _checked(
                "event_types", validate_event_types, payload.event_types
            )
        if "vendors" in given:
            subscription.vendors = _check_vendors(payload.vendors)
        if "source_ids" in given:
            subscription.source_ids = payload.source_ids or None
        if "filter" in given:
            subscription.filter = _check_filter(payload.filter)
        if payload.headers is not None:
            headers = _checked(
                "headers",
                validate_headers,
                _kept_values(subscription.headers, payload.headers),
            )
            endpoint_changed = endpoint_changed or headers != subscription.headers
            subscription.headers = headers
        if payload.description is not None:
            subscription.description = payload.description
        ordering_changed = payload.ordered is not None and payload.ordered != subscription.ordered
        if payload.ordered is not None:
            subscription.ordered = payload.ordered
        if payload.max_concurrency is not None:
            subscription.max_concurrency = payload.max_concurrency
        if "rate_limit_per_second" in given:
            subscription.rate_limit_per_second = payload.rate_limit_per_second
        if "retry_schedule" in given:
            subscription.retry_schedule = _check_schedule(payload.retry_schedule)
        resumed = payload.active is True
        if payload.active is not None:
            subscription.active = payload.active
        await session.flush()
        if ordering_changed:
            await transitions.apply_ordering(session, subscription.id, ordered=subscription.ordered)
        if resumed or (endpoint_changed and subscription.state == SubscriptionState.DEGRADED):
            # Resuming, or fixing the URL or headers of a failing subscription, is the admin's
            # word that the endpoint works: the breaker closes and what it held goes out now.
            # A subscription disabled by the breaker or a 410 is re-enabled only by a resume.
            await health.reset(session, subscription.id, now=now)
            await session.refresh(subscription)
        return subscription

    async def rotate_secret(
        self, subscription_id: str, *, now: datetime, overlap_until: datetime
    ) -> Subscription:
        subscription = await self.get(subscription_id)
        subscription.previous_secret = subscription.secret
        subscription.previous_secret_expires_at = overlap_until
        subscription.secret = generate_secret()
        subscription.updated_at = now
        await self.repository.session.flush()
        return subscription

    async def send_test(
        self,
        subscription_id: str,
        *,
        client: DeliveryClient,
        attempt_timeout: float,
        now: datetime,
    ) -> TestDeliveryOut:
        """Sends a signed `relay.ping` at once, outside the queue, and reports how it went."""
        subscription = await self.get(subscription_id)
        event_id = new_id("evt")
        body = dumps(ping_envelope(event_id=event_id, subscription_id=subscription.id, now=now))
        result = await send(
            client,
            OutgoingDelivery(
                url=subscription.url,
                body=body,
                event_id=event_id,
                event_type="relay.ping",
                delivery_id="test",
                attempt_number=1,
                secrets=signing_secrets(
                    subscription.secret,
                    subscription.previous_secret,
                    subscription.previous_secret_expires_at,
                    now=now,
                ),
                custom_headers=subscription.headers,
            ),
            attempt_timeout=attempt_timeout,
        )
        status = result.status_code
        return TestDeliveryOut(
            succeeded=status is not None and 200 <= status < 300,
            status_code=status,
            duration_ms=result.duration_ms,
            response_excerpt=result.response_body[:1024] if result.response_body else None,
            error=result.error_message,
            event_id=event_id,
        )

    async def delete(self, subscription_id: str, *, now: datetime) -> None:
        subscription = await self.get(subscription_id)
        subscription.deleted_at = now
        subscription.active = False
        await self.repository.session.flush()
        await transitions.end_pending(
            self.repository.session, subscription_id, reason="subscription deleted", now=now
        )
