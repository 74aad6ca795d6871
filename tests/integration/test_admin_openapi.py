"""schemathesis against the relay's own OpenAPI document: every admin route, fed what the schema
allows, answers without a 5xx and with a body the schema describes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from relay.core.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.relay import create_routestripe_source, post_routestripe, visit_event
from tests.support.server import serving


@pytest.fixture
async def base_url(
    settings: Settings, module_database_url: str, client: httpx.AsyncClient
) -> AsyncIterator[str]:
    # Something to list, read and page through.
    await create_routestripe_source(client)
    assert (await post_routestripe(client, [visit_event() for _ in range(3)])).status_code == 200
    async with serving(settings, module_database_url) as (host, port):
        yield f"http://{host}:{port}"


async def test_admin_api_conforms_to_its_openapi_schema(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        document = (await http.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document).include(path_regex="^/v1/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20, "the admin API should be in the schema"
    checked: set[str] = set()
    statuses: set[int] = set()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    # Valid input and input the schema forbids (which must be a 4xx, not a 5xx).
    cases = st.one_of(
        *(
            schema.as_strategy(generation_mode=mode, headers=admin)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        )
    )

    # Enough examples that reaching fewer than 20 routes is not a matter of luck (at 120 it
    # happened about once in eight runs).
    @settings(
        max_examples=400,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            base_url=base_url,
            checks=[not_a_server_error, response_schema_conformance],
            timeout=30,
        )
        checked.add(f"{case.method} {case.path}")
        statuses.add(response.status_code)

    await asyncio.to_thread(check)
    # Bounded, yet reaching most routes and both accepted and refused requests.
    assert len(checked) > 20, checked
    assert 200 in statuses, statuses
    assert {404, 422} <= statuses, statuses


@pytest.mark.parametrize(
    ("method", "path", "payload", "status"),
    [
        ("POST", "/v1/api-keys", {"json": {"name": "ops\u0000key", "scope": "read"}}, 422),
        ("GET", "/v1/events", {"params": {"source": "rs-\u0000"}}, 422),
        ("GET", "/v1/activity", {"params": {"since": "0493-08-08T05:47:54-02:28"}}, 200),
    ],
)
async def test_values_postgresql_cannot_take_are_refused_or_handled_not_a_500(
    client: httpx.AsyncClient, method: str, path: str, payload: dict[str, Any], status: int
) -> None:
    """Found by the run above: NUL characters and moments before 1970 used to be 500s."""
    response = await client.request(method, path, **payload)
    assert response.status_code == status, response.text
    if status == 422:
        assert "NUL" in response.json()["error"]["message"]
    assert (await client.get("/v1/api-keys")).status_code == 200
