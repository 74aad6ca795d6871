"""One HTTP attempt to a subscriber: signed request out, a bounded record of the answer back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from relay import __version__
from relay.core.netguard import DestinationBlocked, DestinationPolicy, Resolver, system_resolver
from relay.dispatcher.signing import sign
from relay.dispatcher.transport import GuardedTransport

RESPONSE_BODY_LIMIT = 16 * 1024
USER_AGENT = f"relay/{__version__}"


@dataclass(frozen=True, slots=True)
class OutgoingDelivery:
    url: str
    body: bytes
    event_id: str
    event_type: str
    delivery_id: str
    attempt_number: int
    secrets: Sequence[str]
    custom_headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class AttemptResult:
    started_at: datetime
    duration_ms: int
    request_headers: dict[str, str]
    status_code: int | None
    response_headers: dict[str, str] | None
    response_body: str | None
    error_class: str | None
    error_message: str | None


def signing_secrets(
    secret: str, previous: str | None, previous_expires_at: datetime | None, *, now: datetime
) -> list[str]:
    """The current secret, plus the previous one while the rotation overlap lasts."""
    if previous and previous_expires_at is not None and previous_expires_at > now:
        return [secret, previous]
    return [secret]


def build_headers(delivery: OutgoingDelivery, *, timestamp: int) -> dict[str, str]:
    headers = dict(delivery.custom_headers)
    headers.update(
        {
            "content-type": "application/json",
            # Only the first RESPONSE_BODY_LIMIT bytes of the answer are read; a compressed
            # answer could expand to far more than that from one network read.
            "accept-encoding": "identity",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(
                delivery.secrets,
                msg_id=delivery.event_id,
                timestamp=timestamp,
                body=delivery.body,
            ),
            "x-relay-event-type": delivery.event_type,
            "x-relay-delivery-id": delivery.delivery_id,
            "x-relay-attempt": str(delivery.attempt_number),
        }
    )
    return headers


def _excerpt(raw: bytes) -> str:
    return raw[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace").replace("\x00", "")


class DeliveryClient:
    """What deliveries go out through: httpx's transport, without httpx's `AsyncClient` on top.

    The client's layer (URL merging, default headers, cookies, auth, redirects, event hooks)
    cost about a fifth of each delivery's CPU, and deliveries want none of it. Redirects are
    never followed: a 3xx is the subscriber's answer, and following it would send the signed
    body somewhere nobody subscribed. No cookie is kept: one a subscriber set would go out with
    every later delivery to its host, other subscriptions' included.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def aclose(self) -> None:
        await self.transport.aclose()


# Seconds a connection to a subscriber may sit idle and still be reused. Below the 5 s after
# which uvicorn, Node.js and Apache close an idle keep-alive connection by default: a request
# written on a connection the server is closing at that moment is reset unanswered
# (`ReadError`), and waits a retry delay for nothing. httpx's own default is those 5 s.
IDLE_CONNECTION_EXPIRY = 4.0


def create_client(
    *, max_connections: int, policy: DestinationPolicy, resolver: Resolver = system_resolver
) -> DeliveryClient:
    """Only to destinations `policy` allows, each connection pinned to the address that was
    checked (see transport.py)."""
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=IDLE_CONNECTION_EXPIRY,
    )
    return DeliveryClient(GuardedTransport(policy, limits=limits, resolver=resolver))


async def send(
    client: DeliveryClient, delivery: OutgoingDelivery, *, attempt_timeout: float
) -> AttemptResult:
    """Makes one attempt. Never raises for anything the network or the subscriber does.

    `attempt_timeout` bounds the whole attempt, so a subscriber trickling its answer a byte at a
    time is cut off like one that never answers.
    """
    started_at = datetime.now(UTC)
    headers = build_headers(delivery, timestamp=int(started_at.timestamp()))
    clock = time.perf_counter()
    status_code: int | None = None
    response_headers: dict[str, str] | None = None
    body = b""
    error_class: str | None = None
    error_message: str | None = None
    try:
        request = httpx.Request(
            "POST",
            delivery.url,
            content=delivery.body,
            headers=headers,
            extensions={"timeout": httpx.Timeout(attempt_timeout).as_dict()},
        )
        async with asyncio.timeout(attempt_timeout):
            response = await client.transport.handle_async_request(request)
            try:
                status_code = response.status_code
                response_headers = dict(response.headers)
                assert isinstance(response.stream, httpx.AsyncByteStream)
                async for chunk in response.stream:
                    body += chunk
                    if len(body) >= RESPONSE_BODY_LIMIT:
                        break
            finally:
                await response.aclose()
    except DestinationBlocked as exc:
        error_class, error_message = "destination_blocked", str(exc)
    except TimeoutError:
        error_class, error_message = "timeout", f"no complete answer within {attempt_timeout:g} s"
    except httpx.TimeoutException as exc:
        error_class, error_message = "timeout", f"{type(exc).__name__}: {exc}".strip(": ")
    except httpx.HTTPError as exc:
        error_class, error_message = type(exc).__name__, str(exc) or type(exc).__name__
    except OSError as exc:
        error_class, error_message = type(exc).__name__, str(exc) or type(exc).__name__
    duration_ms = int((time.perf_counter() - clock) * 1000)
    if error_class is not None and status_code is not None:
        # Headers arrived but the body did not finish in time: the answer is incomplete, and
        # so is not trusted as a success.
        status_code = None
    return AttemptResult(
        started_at=started_at,
        duration_ms=duration_ms,
        request_headers=headers,
        status_code=status_code,
        response_headers=response_headers,
        response_body=_excerpt(body) if body or status_code is not None else None,
        error_class=error_class,
        error_message=error_message,
    )
