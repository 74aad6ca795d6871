from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_UNIFIED_TYPE = re.compile(r"^(?=.{1,100}$)[a-z0-9_]+(?:\.[a-z0-9_]+)*$")


class MappingConfig(BaseModel):
    """Per-source fixes for format drift: JSON pointers (RFC 6901) into the vendor's event."""

    model_config = ConfigDict(extra="forbid")

    event_name_pointer: str | None = Field(None, description="Pointer to the event name.")
    event_id_pointer: str | None = Field(None, description="Pointer to the vendor's event id.")
    entity_id_pointer: str | None = Field(None, description="Pointer to the entity id.")
    event_time_pointer: str | None = Field(None, description="Pointer to the event time.")
    type_map: dict[str, str] = Field(
        default_factory=dict, description="Vendor event name -> unified event type."
    )

    @field_validator("type_map")
    @classmethod
    def _unified_types(cls, value: dict[str, str]) -> dict[str, str]:
        for vendor_event, unified in value.items():
            if not _UNIFIED_TYPE.match(unified):
                raise ValueError(
                    f"type_map['{vendor_event}'] = '{unified}' is not a unified type: use "
                    "dot-separated lower-case words, at most 100 characters (e.g. order.updated)"
                )
        return value

    @field_validator(
        "event_name_pointer", "event_id_pointer", "entity_id_pointer", "event_time_pointer"
    )
    @classmethod
    def _pointer(cls, value: str | None) -> str | None:
        if value is not None and value != "" and not value.startswith("/"):
            raise ValueError("a JSON pointer starts with '/', e.g. /task/id")
        return value or None


class SourceCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "slug": "routestripe-nl",
                    "vendor": "routestripe",
                    "verification": {"type": "hmac", "secret": "whsec-routestripe-2026"},
                    "description": "RouteStripe, Dutch fleet",
                }
            ]
        },
    )

    slug: str = Field(
        description="URL-safe name; vendors post to /ingest/{slug}. Lower-case letters, digits "
        "and dashes, 1-64 characters.",
        examples=["bringg-eu"],
    )
    vendor: str = Field(description="routigo, antsroute, bringg or routestripe.")
    verification: dict[str, Any] = Field(
        default_factory=dict,
        description="How requests are proven genuine: {'type': 'hmac'|'basic'|'header_token'|"
        "'query_token'|'jwt'|'oauth2'|'none', ...}. The vendor's default type when omitted.",
    )
    description: str = Field("", max_length=2000)
    active: bool = True
    mapping: MappingConfig = Field(default_factory=MappingConfig)
    rate_limit_per_second: float | None = Field(
        None,
        ge=0.01,
        le=100_000,
        description="Most webhooks a second this source may post (per `relay serve` process); "
        "beyond it the relay answers 429 with Retry-After. null for no limit.",
    )


class SourceUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "verification": {"type": "hmac", "secret": "whsec-routestripe-2027"},
                    "keep_previous_for_seconds": 86400,
                }
            ]
        },
    )

    verification: dict[str, Any] | None = Field(
        None, description="New credentials; replaces the current ones."
    )
    keep_previous_for_seconds: int = Field(
        0,
        ge=0,
        le=30 * 86400,
        description="With new credentials: how long the old ones keep working, so the vendor "
        "can be switched over without losing a webhook. 0 drops them at once.",
    )
    description: str | None = Field(None, max_length=2000)
    active: bool | None = None
    mapping: MappingConfig | None = None
    rate_limit_per_second: float | None = Field(
        None,
        ge=0.01,
        le=100_000,
        description="Most webhooks a second this source may post (per `relay serve` process); "
        "beyond it the relay answers 429 with Retry-After. null for no limit.",
    )


class SourceOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "src_01JQ2V5M7K8T9W3X4Y5Z6A7B8C",
                    "slug": "routestripe-nl",
                    "vendor": "routestripe",
                    "ingest_path": "/ingest/routestripe-nl",
                    "active": True,
                    "description": "RouteStripe, Dutch fleet",
                    "verification": {
                        "current": {
                            "type": "hmac",
                            "secret": "********2026",
                            "header": "X-Signature",
                            "algorithm": "sha256",
                            "encoding": "hex",
                            "prefix": None,
                            "partner_id": None,
                        },
                        "previous": None,
                        "previous_expires_at": None,
                    },
                    "verified": True,
                    "mapping": {
                        "event_name_pointer": None,
                        "event_id_pointer": None,
                        "entity_id_pointer": None,
                        "event_time_pointer": None,
                        "type_map": {},
                    },
                    "rate_limit_per_second": None,
                    "created_at": "2026-03-10T05:51:02Z",
                    "updated_at": "2026-03-10T05:51:02Z",
                }
            ]
        }
    )

    id: str
    slug: str
    vendor: str
    ingest_path: str
    active: bool
    description: str
    verification: dict[str, Any]
    verified: bool = Field(description="False when verification type is 'none'.")
    mapping: MappingConfig
    rate_limit_per_second: float | None
    created_at: datetime
    updated_at: datetime
