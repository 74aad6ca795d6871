"""SSRF over real sockets: a subscriber on 127.0.0.1 is a loopback destination, refused unless
RELAY_ALLOWED_DESTINATION_NETWORKS opens 127.0.0.0/8 (the test settings do; `strict` does not)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Any

import httpcore
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.netguard import DestinationPolicy, IPNetwork, embedded_ipv4
from relay.core.settings import Settings
from relay.dispatcher.sender import AttemptResult, DeliveryClient, OutgoingDelivery, send
from relay.dispatcher.transport import GuardedTransport, SocketOption
from relay.subscriptions.destinations import normalised_url
from tests.conftest import ADMIN_TOKEN
from tests.support.relay import (
    create_routestripe_source,
    post_routestripe,
    relay_client,
    running_dispatcher,
    visit_event,
)
from tests.support.subscriber import Answer, Subscriber, eventually


@pytest.fixture
def strict_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "allowed_destination_networks": [],
            "dispatcher_poll_interval": 0.2,
            "shutdown_grace": 1.0,
        }
    )


@pytest.fixture
async def strict(
    strict_settings: Settings, module_database_url: str, client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """A second relay on the same database with the default policy (public addresses only)."""
    async with relay_client(strict_settings, module_database_url, admin_token=ADMIN_TOKEN) as http:
        yield http


async def _attempts(client: httpx.AsyncClient, subscription_id: str) -> list[dict[str, Any]]:
    page = await client.get("/v1/deliveries", params={"subscription_id": subscription_id})
    [summary] = page.json()["data"]
    detail = await client.get(f"/v1/deliveries/{summary['id']}")
    attempts: list[dict[str, Any]] = detail.json()["attempts"]
    return attempts


async def test_a_loopback_subscriber_is_refused_at_creation_and_on_update(
    strict: httpx.AsyncClient, client: httpx.AsyncClient, subscriber: Subscriber
) -> None:
    created = await strict.post("/v1/subscriptions", json={"url": subscriber.url()})
    assert created.status_code == 422, created.text
    message = created.json()["error"]["message"]
    assert message.startswith("url: destination 127.0.0.1 is a loopback address")
    assert "RELAY_ALLOWED_DESTINATION_NETWORKS (e.g. 127.0.0.0/8)" in message

    public = await strict.post("/v1/subscriptions", json={"url": "https://93.184.215.14/hook"})
    assert public.status_code == 201, public.text
    for url in (subscriber.url(), "http://169.254.169.254/latest/meta-data", "http://[::1]/"):
        patched = await strict.patch(f"/v1/subscriptions/{public.json()['id']}", json={"url": url})
        assert patched.status_code == 422, patched.text
        assert "RELAY_ALLOWED_DESTINATION_NETWORKS" in patched.json()["error"]["message"]
    unchanged = await strict.get(f"/v1/subscriptions/{public.json()['id']}")
    assert unchanged.json()["url"] == "https://93.184.215.14/hook"

    # Where 127.0.0.0/8 is allowed, the same URL is accepted.
    allowed = await client.post("/v1/subscriptions", json={"url": subscriber.url()})
    assert allowed.status_code == 201, allowed.text
    assert subscriber.received == []


async def test_the_check_at_send_time_blocks_without_connecting_and_allows_when_opened(
    strict: httpx.AsyncClient,
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    strict_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    # Created while 127.0.0.0/8 was allowed; the operator has since closed it.
    created = await client.post(
        "/v1/subscriptions", json={"url": subscriber.url(), "retry_schedule": [1, 1]}
    )
    subscription = created.json()
    assert (await post_routestripe(client, [visit_event()])).status_code == 200

    async with running_dispatcher(strict_settings, session_factory, module_database_url):
        await eventually(lambda: _attempts(client, subscription["id"]), within=20)
    [blocked] = await _attempts(client, subscription["id"])
    assert blocked["error_class"] == "destination_blocked"
    assert "127.0.0.1 is a loopback address" in blocked["error_message"]
    assert blocked["response_status"] is None
    assert subscriber.received == []

    tested = (await strict.post(f"/v1/subscriptions/{subscription['id']}/test")).json()
    assert tested["succeeded"] is False
    assert "loopback" in tested["error"]
    assert subscriber.received == []

    # Blocked attempts are retried on the schedule, so reopening the network lets it through.
    opened = settings.model_copy(update={"dispatcher_poll_interval": 0.2, "shutdown_grace": 1.0})
    async with running_dispatcher(opened, session_factory, module_database_url):
        await subscriber.wait_for(1, within=20)
    [request] = subscriber.received
    assert request.headers["x-relay-attempt"] == "2"


async def test_a_redirect_is_recorded_not_followed(
    client: httpx.AsyncClient, subscriber: Subscriber
) -> None:
    subscriber.script(
        "/moved", then=Answer(302, headers={"location": subscriber.url("/elsewhere")}, body=b"")
    )
    created = await client.post("/v1/subscriptions", json={"url": subscriber.url("/moved")})
    tested = (await client.post(f"/v1/subscriptions/{created.json()['id']}/test")).json()
    assert tested["status_code"] == 302
    assert tested["succeeded"] is False
    assert len(subscriber.on("/moved")) == 1
    assert subscriber.on("/elsewhere") == []


# Every way found of writing an internal address in a subscriber URL. Ports vary so that the
# send-time check is seen to connect to the checked address on the URL's port.
URL_FORMS = [
    # IPv4 loopback: decimal, hex, octal, short and mixed notations.
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/hook",
    "https://127.0.0.1/",
    "http://127.255.255.254/",
    "http://127.0.0.1./",
    "http://2130706433/",
    "http://2130706433:9000/",
    "http://0x7f000001/",
    "http://0X7F000001/",
    "http://0x7f.1/",
    "http://0x7f.0.1/",
    "http://0x7f.0x0.0x0.0x1/",
    "http://0x7f.00.00.01/",
    "http://0177.0.0.1/",
    "http://0177.0.0.01/",
    "http://0177.1/",
    "http://017700000001/",
    "http://127.000.000.001/",
    "http://127.1/",
    "http://127.0.1/",
    "http://127.1.:8080/",
    "http://127\u30020\u30020\u30021/",
    # IPv6 encodings of IPv4 loopback.
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::FFFF:7F00:1]:8443/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/",
    "http://[0000:0000:0000:0000:0000:ffff:7f00:0001]/",
    "http://[::127.0.0.1]/",
    "http://[::7f00:1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::127.0.0.1]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:7f00:1::1]/",
    "http://[2002:7f00:0001:ffff::]/",
    "http://[::ffff:0:7f00:1]/",
    "http://[::ffff:0:127.0.0.1]/",
    "http://[0:0:0:0:ffff:0:7f00:1]/",
    "http://[::ffff:0:a9fe:a9fe]/",
    "http://[::ffff:0:808:808]/",
    # IPv6 loopback and unspecified.
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::0001]:8080/",
    "http://[::]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://0x0/",
    # Names that are loopback by definition, with and without the trailing dot.
    "http://localhost/",
    "http://localhost./",
    "http://LOCALHOST./",
    "http://localhost:8080/",
    "http://api.localhost/",
    "http://api.localhost./",
    # Private, shared and link-local IPv4, in several notations.
    "http://10.0.0.1/",
    "http://167772161/",
    "http://012.0.0.1/",
    "http://[::ffff:10.0.0.1]/",
    "http://192.168.1.1/",
    "http://3232235777/",
    "http://0xc0.0xa8.1.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[fd00:ec2::254]/",
    # Other special-purpose IPv4.
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    "http://198.18.0.1/",
    "http://192.0.2.1/",
    "http://192.0.0.9/",
    # Other special-purpose and reserved IPv6.
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://[64:ff9b:1::a00:1]/",
    "http://[100::1]/",
    "http://[2001::1]/",
    "http://[2001:2::1]/",
    "http://[2001:20::1]/",
    "http://[2001:db8::1]/",
    "http://[3fff::1]/",
    "http://[5f00::1]/",
    "http://[200::1]/",
    "http://[4000::1]/",
    "http://[fe00::1]/",
    # Parser confusion: the URL itself is refused whatever the policy (see SYNTAX_REFUSED).
    "http://user@127.0.0.1/",
    "http://user:pass@127.0.0.1/",
    "http://example.com@127.0.0.1/",
    "http://example.com:80@127.0.0.1/",
    "http://user@2130706433/",
    "http://user@[::ffff:127.0.0.1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fe80::a9fe:a9fe%251]/",
]
# Refused at creation even where the network is open, because the URL is wrong in itself:
# credentials belong in the subscription's headers (encrypted), and a zone id names an
# interface of one machine. The send-time check still judges the address they lead to.
SYNTAX_REFUSED = {url for url in URL_FORMS if "@" in url or "%25" in url}
_SUGGESTED = re.compile(r"RELAY_ALLOWED_DESTINATION_NETWORKS \(e\.g\. ([0-9a-f.:/]+)\)")


class _RecordingBackend(httpcore.AsyncNetworkBackend):
    """Records where the transport would connect and connects nowhere: an opened network must
    not make the test reach any address other than 127.0.0.1."""

    def __init__(self) -> None:
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append((host, port))
        raise httpcore.ConnectError("recorded, not connected")


async def _send_time(url: str, networks: Sequence[IPNetwork]) -> tuple[AttemptResult, list[Any]]:
    """One delivery attempt through the dispatcher's transport and `send`."""
    backend = _RecordingBackend()
    transport = GuardedTransport(
        DestinationPolicy(allowed_networks=tuple(networks)),
        limits=httpx.Limits(max_connections=1),
        inner=backend,
    )
    async with contextlib.aclosing(DeliveryClient(transport)) as client:
        result = await send(
            client,
            OutgoingDelivery(
                url=url,
                body=b"{}",
                event_id="evt_1",
                event_type="relay.ping",
                delivery_id="dlv_1",
                attempt_number=1,
                secrets=["whsec_" + "A" * 43],
                custom_headers={},
            ),
            attempt_timeout=5,
        )
    return result, backend.connected


async def test_no_spelling_of_an_internal_address_is_accepted_unless_its_network_is_opened(
    strict: httpx.AsyncClient, settings: Settings, module_database_url: str
) -> None:
    assert len(URL_FORMS) >= 70
    public = await strict.post("/v1/subscriptions", json={"url": "https://93.184.215.14/hook"})
    public_id = public.json()["id"]
    opened_relays: dict[tuple[IPNetwork, ...], tuple[httpx.AsyncClient, str]] = {}
    async with contextlib.AsyncExitStack() as stack:
        for url in URL_FORMS:
            created = await strict.post("/v1/subscriptions", json={"url": url})
            assert created.status_code == 422, (url, created.text)
            patched = await strict.patch(f"/v1/subscriptions/{public_id}", json={"url": url})
            assert patched.status_code == 422, (url, patched.text)
            if url not in SYNTAX_REFUSED:
                assert "RELAY_ALLOWED_DESTINATION_NETWORKS" in created.json()["error"]["message"]

            # At send time: a subscription saved earlier (stored normalised, as creation does)
            # whose network is closed now.
            stored = normalised_url(url)
            networks: list[IPNetwork] = []
            result, connected = await _send_time(stored, networks)
            assert result.error_class == "destination_blocked", (url, result)
            assert connected == []
            # Opening the networks the messages name lets it through, at most two of them
            # (a localhost name is both 127.0.0.1 and ::1).
            while result.error_class == "destination_blocked" and len(networks) < 2:
                [suggested] = _SUGGESTED.findall(result.error_message or "")
                networks.append(ip_network(suggested))
                result, connected = await _send_time(stored, networks)
            assert result.error_class != "destination_blocked", (url, result)
            parsed = httpx.URL(stored)
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            # Each address of the host is tried in turn (the recorder refuses them all).
            assert connected, url
            for host, connected_port in connected:
                assert connected_port == port
                address = ip_address(host)
                carried = (
                    embedded_ipv4(address) if isinstance(address, IPv6Address) else None
                ) or address
                assert any(address in net or carried in net for net in networks), (url, host)

            # At creation and on PATCH, where the same networks are open.
            key = tuple(networks)
            if key not in opened_relays:
                opened = settings.model_copy(update={"allowed_destination_networks": networks})
                relay = await stack.enter_async_context(
                    relay_client(opened, module_database_url, admin_token=ADMIN_TOKEN)
                )
                made = await relay.post("/v1/subscriptions", json={"url": "https://1.1.1.1/"})
                opened_relays[key] = relay, made.json()["id"]
            relay, existing_id = opened_relays[key]
            created = await relay.post("/v1/subscriptions", json={"url": url})
            patched = await relay.patch(f"/v1/subscriptions/{existing_id}", json={"url": url})
            if url in SYNTAX_REFUSED:
                assert created.status_code == patched.status_code == 422, url
                message = created.json()["error"]["message"]
                assert "credentials" in message or "zone id" in message, (url, message)
            else:
                assert created.status_code == 201, (url, created.text)
                assert created.json()["url"] == stored
                assert patched.status_code == 200, (url, patched.text)
                assert patched.json()["url"] == stored

    unchanged = await strict.get(f"/v1/subscriptions/{public_id}")
    assert unchanged.json()["url"] == "https://93.184.215.14/hook"
