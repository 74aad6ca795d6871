"""The OpenAPI document says what the API does: who may call it, how it refuses, what it takes
and answers, with examples; and its pages work on a host without internet."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.vendors.registry import VENDORS
from relay.verification.schemes import SCHEMES

FIXTURES = Path(__file__).parent.parent / "fixtures" / "vendors"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def _admin_operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        if path.startswith("/v1/"):
            for method, operation in operations.items():
                if method in METHODS:
                    yield path, method, operation


def _ingest(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    yield "/ingest/{slug}", "post", document["paths"]["/ingest/{slug}"]["post"]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _has_example(document: dict[str, Any], media: dict[str, Any]) -> bool:
    if media.get("example") is not None or media.get("examples"):
        return True
    schema = _resolve(document, media.get("schema", {}))
    if "anyOf" in schema:
        schema = _resolve(document, schema["anyOf"][0])
    if schema.get("type") == "array":
        schema = _resolve(document, schema.get("items", {}))
    return bool(schema.get("examples") or schema.get("example") is not None)


def test_every_admin_operation_takes_the_bearer_token(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    operations = list(_admin_operations(document))
    assert len(operations) > 20
    for path, method, operation in operations:
        assert operation.get("security") == [{"bearer": []}], (method, path)


def test_every_admin_operation_lists_its_errors_in_the_error_body(
    document: dict[str, Any],
) -> None:
    error_ref = "#/components/schemas/ErrorBody"
    error = document["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    for path, method, operation in _admin_operations(document):
        expected = {"401", "403", "422"} | ({"404"} if "{" in path else set())
        responses = operation["responses"]
        assert expected <= set(responses), (method, path, sorted(responses))
        for status in expected:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": error_ref}, (method, path, status)
    conflicts = {
        ("post", "/v1/sources"),
        ("post", "/v1/deliveries/{delivery_id}/retry"),
        ("post", "/v1/subscriptions/{subscription_id}/recover"),
    }
    for method, path in conflicts:
        assert "409" in document["paths"][path][method]["responses"], (method, path)
    assert "HTTPValidationError" not in document["components"]["schemas"]


async def test_the_documented_422_is_the_one_the_api_answers(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    response = await client.post("/v1/sources", json={"slug": 5})
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) <= set(document["components"]["schemas"]["ErrorDetail"]["properties"])


def test_every_request_body_and_error_answer_has_an_example(document: dict[str, Any]) -> None:
    missing = []
    for path, method, operation in [*_admin_operations(document), *_ingest(document)]:
        bodies = [("request", operation.get("requestBody", {}).get("content", {}))]
        bodies += [
            (status, answer.get("content", {}))
            for status, answer in operation["responses"].items()
            if status.startswith("4")
        ]
        for name, content in bodies:
            for media in content.values():
                if not _has_example(document, media):
                    missing.append(f"{method} {path} {name}")
    assert not missing, missing


def test_vendor_is_an_enum_of_the_vendors(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("SourceCreate", "SourceOut"):
        assert schemas[name]["properties"]["vendor"]["enum"] == sorted(VENDORS)


def test_verification_is_a_union_discriminated_by_type(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    accepted = schemas["SourceCreate"]["properties"]["verification"]
    assert accepted["discriminator"]["propertyName"] == "type"
    assert set(accepted["discriminator"]["mapping"]) == set(SCHEMES)
    assert len(accepted["oneOf"]) == len(SCHEMES)
    hmac = _resolve(document, {"$ref": accepted["discriminator"]["mapping"]["hmac"]})
    assert hmac["properties"]["secret"]["minLength"] == 8
    update = schemas["SourceUpdate"]["properties"]["verification"]["anyOf"][0]
    assert update["discriminator"] == accepted["discriminator"]
    shown = schemas["SourceOut"]["properties"]["verification"]["properties"]["current"]
    assert shown["discriminator"]["propertyName"] == "type"
    masked_hmac = _resolve(document, {"$ref": shown["discriminator"]["mapping"]["hmac"]})
    assert "minLength" not in masked_hmac["properties"]["secret"]


def test_the_ingest_body_is_documented_per_vendor(document: dict[str, Any]) -> None:
    content = document["paths"]["/ingest/{slug}"]["post"]["requestBody"]["content"]
    examples = content["application/json"]["examples"]
    assert set(examples) == set(VENDORS)
    for vendor, example in examples.items():
        fixtures = [json.loads(path.read_text()) for path in (FIXTURES / vendor).glob("*.json")]
        assert example["value"] in fixtures, vendor


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_their_assets_from_the_relay(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    urls = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', response.text)
    urls += re.findall(r"url: ['\"]([^'\"]+)['\"]", response.text)
    assets = [url for url in urls if not url.startswith("#")]
    assert any(url.endswith(".js") for url in assets), response.text
    for url in assets:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        assert (await client.get(url)).status_code == 200, url
