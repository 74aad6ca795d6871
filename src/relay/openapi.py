"""The OpenAPI document as the relay really behaves, and `/docs` and `/redoc` without a CDN.

FastAPI describes what it can see in the routes; what happens elsewhere is added here: the
bearer token the auth middleware checks, the error body every error answer has (the validation
handler in `relay.core.errors` rewrites FastAPI's own 422), the verification schemes a source's
`verification` object is parsed into, and the vendor bodies the raw-bytes ingest route reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, TypeAdapter
from starlette.requests import Request
from starlette.responses import HTMLResponse

from relay.core.errors import ErrorBody
from relay.vendors.registry import VENDORS
from relay.verification.schemes import SCHEMES, TaggedScheme

BEARER = "bearer"
ERROR_SCHEMA_REF = "#/components/schemas/ErrorBody"
_REF_TEMPLATE = "#/components/schemas/{model}"
DOCS_ASSETS = "/docs-assets"
# Shipped inside the fastapi-offline package: the docs pages need no internet and the repository
# carries no copy of Swagger UI or ReDoc.
_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"

_ADMIN_ERRORS: dict[str, str] = {
    "401": "No token, or a token that is not the admin token or a live API key.",
    "403": "The API key's scope does not cover this operation.",
    "422": "A parameter or the body is not valid; `error.details` says which and why.",
}
_NOT_FOUND = "Nothing has the id in the path."

CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "The request clashes with the current state."}
}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}},
    }


def _add_schemas(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Moves a pydantic schema's $defs into the document's components; returns the rest."""
    components = document["components"]["schemas"]
    components.update(schema.pop("$defs", {}))
    return schema


def _verification_schemas(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The union of the schemes as requests send them, and as answers show them (secrets
    masked, so without the length rules of the secrets)."""
    accepted = _add_schemas(
        document, TypeAdapter(TaggedScheme).json_schema(ref_template=_REF_TEMPLATE)
    )
    components = document["components"]["schemas"]
    mapping: dict[str, str] = {}
    for name, model in SCHEMES.items():
        shown = json.loads(json.dumps(components[model.__name__]))
        for field_name, field in model.model_fields.items():
            if not field.repr:
                shown["properties"][field_name] = {
                    "type": "string",
                    "description": f"{field.description} Shown masked: ******** and the "
                    "last four characters of a long secret.",
                    "examples": ["********f00d"],
                }
        shown["title"] = f"{model.__name__}Shown"
        components[shown["title"]] = shown
        mapping[name] = f"#/components/schemas/{shown['title']}"
    shown_union = {
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }
    shown_verification = {
        "type": "object",
        "properties": {
            "current": shown_union,
            "previous": {"anyOf": [shown_union, {"type": "null"}]},
            "previous_expires_at": {
                "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]
            },
        },
        "required": ["current", "previous", "previous_expires_at"],
        "description": "The credentials requests are checked against, and during a rotation the "
        "replaced ones with the moment they stop working; secrets masked.",
    }
    return accepted, shown_verification


def _describe_sources(document: dict[str, Any]) -> None:
    accepted, shown = _verification_schemas(document)
    schemas = document["components"]["schemas"]
    vendors = {"type": "string", "enum": sorted(VENDORS)}
    for name in ("SourceCreate", "SourceOut"):
        vendor = schemas[name]["properties"]["vendor"]
        schemas[name]["properties"]["vendor"] = {**vendor, **vendors}
    create = schemas["SourceCreate"]["properties"]["verification"]
    schemas["SourceCreate"]["properties"]["verification"] = {
        **accepted,
        "description": create["description"],
    }
    update = schemas["SourceUpdate"]["properties"]["verification"]
    schemas["SourceUpdate"]["properties"]["verification"] = {
        "anyOf": [accepted, {"type": "null"}],
        "description": update["description"],
    }
    schemas["SourceOut"]["properties"]["verification"] = shown


def _vendor_examples() -> dict[str, Any]:
    examples = resources.files("relay.vendors") / "examples"
    return {
        name: {
            "summary": f"A {vendor.title} webhook",
            "value": json.loads((examples / f"{name}.json").read_text()),
        }
        for name, vendor in sorted(VENDORS.items())
    }


_INGEST_ANSWER = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer", "description": "Events stored."},
        "duplicates": {"type": "integer", "description": "Events the relay already had."},
        "event_ids": {"type": "array", "items": {"type": "string"}},
        "request_id": {"type": "string", "description": "The request log entry."},
        "ping": {"type": "boolean", "description": "Present, true, for a vendor's ping."},
    },
    "required": ["accepted", "duplicates", "event_ids", "request_id"],
    "examples": [
        {
            "accepted": 1,
            "duplicates": 0,
            "event_ids": ["evt_01JQ2VB3C4D5E6F7G8H9J0K1M2"],
            "request_id": "req_01JQ2VB3B0A1B2C3D4E5F6G7H8",
        }
    ],
}
_TOKEN_ANSWER = {
    "type": "object",
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "expires_in": {"type": "integer", "description": "Seconds the token is valid."},
    },
    "required": ["access_token", "token_type", "expires_in"],
    "examples": [
        {
            "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
            ".eyJpc3MiOiJyZWxheSIsInN1YiI6ImJyaW5nZy1jbGllbnQifQ.c2lnbmF0dXJl",
            "token_type": "Bearer",
            "expires_in": 3600,
        }
    ],
}


def _describe_ingest(document: dict[str, Any]) -> None:
    for path, answer, description in (
        ("/ingest/{slug}", _INGEST_ANSWER, "Stored (or known already) before this answer."),
        ("/ingest/{slug}/oauth/token", _TOKEN_ANSWER, "A token for the ingest endpoint."),
    ):
        document["paths"][path]["post"]["responses"]["200"] = {
            "description": description,
            "content": {"application/json": {"schema": answer}},
        }
    operation = document["paths"]["/ingest/{slug}"]["post"]
    operation["requestBody"] = {
        "required": True,
        "description": "The vendor's webhook as it sends it; its shape depends on the source's "
        "vendor. Read as raw bytes: verification covers the exact bytes sent.",
        "content": {
            "application/json": {"schema": {"type": "object"}, "examples": _vendor_examples()}
        },
    }


def _example_pages(document: dict[str, Any]) -> None:
    """A page's example is one item's example followed by no next page."""
    schemas = document["components"]["schemas"]
    for schema in schemas.values():
        items = schema.get("properties", {}).get("data", {}).get("items", {})
        ref = items.get("$ref", "")
        if "next_cursor" not in schema.get("properties", {}) or not ref:
            continue
        item = schemas[ref.rsplit("/", 1)[-1]]
        if item.get("examples"):
            schema["examples"] = [{"data": [item["examples"][0]], "next_cursor": None}]


def _relay_models() -> Iterator[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    waiting = list(BaseModel.__subclasses__())
    while waiting:
        model = waiting.pop()
        if model in seen:
            continue
        seen.add(model)
        waiting += model.__subclasses__()
        if model.__module__.startswith("relay."):
            yield model


def _copy_examples(intact: Any, stripped: Any) -> None:
    """Puts each `examples` of `intact` into the same place in `stripped`."""
    if isinstance(intact, dict) and isinstance(stripped, dict):
        if "examples" in intact:
            stripped["examples"] = intact["examples"]
        for key, value in intact.items():
            if key != "examples" and key in stripped:
                _copy_examples(value, stripped[key])
    elif isinstance(intact, list) and isinstance(stripped, list) and len(intact) == len(stripped):
        for inner, outer in zip(intact, stripped, strict=True):
            _copy_examples(inner, outer)


def _restore_examples(document: dict[str, Any]) -> None:
    """FastAPI writes the document without a single null (`exclude_none`), the nulls of every
    example with them, so examples of answers lose their null fields and no longer fit their
    own schema. They are put back from the models, whose schemas pydantic names as FastAPI does."""
    components = document["components"]["schemas"]
    for model in _relay_models():
        for mode in ("validation", "serialization"):
            schema = TypeAdapter(list[model]).json_schema(  # type: ignore[valid-type]
                ref_template=_REF_TEMPLATE, mode=mode
            )
            for name, intact in schema.get("$defs", {}).items():
                if name in components:
                    _copy_examples(intact, components[name])


def _describe_errors(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    schemas["ErrorBody"] = _add_schemas(
        document, ErrorBody.model_json_schema(ref_template=_REF_TEMPLATE)
    )
    document["components"].setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`relay api-keys create`) or RELAY_ADMIN_TOKEN.",
    }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                # Whatever FastAPI says, the validation handler answers with the error body.
                responses["422"] = _error_response(_ADMIN_ERRORS["422"])
            if not path.startswith("/v1/"):
                continue
            operation["security"] = [{BEARER: []}]
            for status, description in _ADMIN_ERRORS.items():
                responses[status] = _error_response(description)
            if "{" in path:
                responses.setdefault("404", _error_response(_NOT_FOUND))
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def install_openapi(app: FastAPI) -> None:
    """Builds the document once, on first request, and serves the docs pages from the
    relay's own assets."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            _restore_examples(document)
            _describe_errors(document)
            _describe_sources(document)
            _describe_ingest(document)
            _example_pages(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(DOCS_ASSETS, StaticFiles(directory=_ASSETS_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{app.title} API",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            # The fonts come from Google otherwise; ReDoc falls back to the system's.
            with_google_fonts=False,
        )
