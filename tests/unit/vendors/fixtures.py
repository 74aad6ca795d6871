"""Reading the vendor payload fixtures and running them through the adapters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relay.vendors.base import InboundRequest, MappingOverrides, ParsedWebhook
from relay.vendors.registry import VENDORS

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vendors"


def fixture_bytes(vendor: str, name: str) -> bytes:
    return (FIXTURES / vendor / f"{name}.json").read_bytes()


def fixture_json(vendor: str, name: str) -> Any:
    return json.loads(fixture_bytes(vendor, name))


def fixture_names(vendor: str) -> list[str]:
    return sorted(path.stem for path in (FIXTURES / vendor).glob("*.json"))


def parse_body(
    vendor: str,
    body: bytes,
    overrides: MappingOverrides | None = None,
    *,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    max_json_depth: int = 64,
) -> ParsedWebhook:
    request = InboundRequest(
        body=body, headers=headers or {}, query=query or {}, max_json_depth=max_json_depth
    )
    return VENDORS[vendor].parse(request, overrides or MappingOverrides())


def parse_fixture(
    vendor: str,
    name: str,
    overrides: MappingOverrides | None = None,
    *,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ParsedWebhook:
    return parse_body(vendor, fixture_bytes(vendor, name), overrides, query=query, headers=headers)


def parse_json(
    vendor: str, document: Any, overrides: MappingOverrides | None = None
) -> ParsedWebhook:
    return parse_body(vendor, json.dumps(document).encode(), overrides)
