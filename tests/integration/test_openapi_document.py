"""The OpenAPI document says what the API does: who may call it, how it refuses, what it takes
and answers, with examples; and its pages work on a host without internet."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
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


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method in METHODS:
                yield path, method, operation


def _json_bodies(
    operation: dict[str, Any],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON body of an operation, the request's and each answer's, by name."""
    bodies = [("request", operation.get("requestBody", {}).get("content", {}))]
    bodies += [
        (status, answer.get("content", {})) for status, answer in operation["responses"].items()
    ]
    for name, content in bodies:
        for media_type, media in content.items():
            if media_type.endswith("json"):
                yield name, media


def test_every_request_and_response_body_has_an_example(document: dict[str, Any]) -> None:
    missing = []
    operations = list(_operations(document))
    for path, method, operation in operations:
        for name, media in _json_bodies(operation):
            if not _has_example(document, media):
                missing.append(f"{method} {path} {name}")
    assert not missing, missing
    assert len(operations) > 30
    # The ones that once had none: 2xx answers, and routes outside /v1.
    for path, method, status in [
        ("/v1/stats", "get", "200"),
        ("/v1/jobs", "get", "200"),
        ("/healthz", "get", "200"),
        ("/ingest/{slug}", "post", "200"),
    ]:
        media = document["paths"][path][method]["responses"][status]["content"]["application/json"]
        assert _has_example(document, media), (method, path, status)


def _strict(node: Any) -> Any:
    """The schema with no property left undeclared: an example with a misspelt field fails."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    strict = {key: _strict(value) for key, value in node.items()}
    if "properties" in node and "additionalProperties" not in node:
        strict["additionalProperties"] = False
    return strict


def _examples(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Every example in the document, with the schema it is an example of."""

    def within(where: str, schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
        for example in (
            schema.get("examples", []) if isinstance(schema.get("examples"), list) else []
        ):
            yield where, schema, example
        for name, field in schema.get("properties", {}).items():
            yield from within(f"{where}.{name}", field)

    for name, schema in document["components"]["schemas"].items():
        yield from within(name, schema)
    for path, method, operation in _operations(document):
        for name, media in _json_bodies(operation):
            where = f"{method} {path} {name}"
            if "example" in media:
                yield where, media.get("schema", {}), media["example"]
            for key, example in media.get("examples", {}).items():
                yield f"{where} {key}", media.get("schema", {}), example["value"]


def test_every_example_is_valid_for_its_schema(document: dict[str, Any]) -> None:
    components = _strict(document["components"])
    invalid = []
    checked = 0
    for where, schema, example in _examples(document):
        validator = jsonschema_rs.Draft202012Validator(
            {**_strict(schema), "components": components}
        )
        checked += 1
        invalid += [f"{where}: {error.message}" for error in validator.iter_errors(example)]
    assert not invalid, invalid
    assert checked > 50
    # The check can fail: an example with a field its schema does not have.
    subscription = document["components"]["schemas"]["SubscriptionOut"]
    wrong = {**subscription["examples"][0], "colour": "red"}
    validator = jsonschema_rs.Draft202012Validator(
        {**_strict(subscription), "components": components}
    )
    assert not validator.is_valid(wrong)


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
