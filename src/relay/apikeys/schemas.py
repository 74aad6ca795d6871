"""The API keys API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from relay.core.scopes import Scope


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "grafana", "scope": "read"}]},
    )

    name: str = Field(
        min_length=1, max_length=200, description="Who or what holds the key, e.g. 'grafana'."
    )
    scope: Scope = Field(
        description="read: GET only; ops: read, plus retry, replay, recover and test; "
        "admin: everything."
    )


_API_KEY_EXAMPLE: dict[str, Any] = {
    "id": "key_01JQ2WC4D5E6F7G8H9J0K1M2N3",
    "name": "grafana",
    "scope": "read",
    "prefix": "rk_ed95640b2207",
    "created_at": "2026-03-10T05:40:00Z",
    "last_used_at": "2026-03-10T09:14:00Z",
    "revoked_at": None,
}


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_API_KEY_EXAMPLE]})

    id: str
    name: str
    scope: Scope
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    created_at: datetime
    last_used_at: datetime | None = Field(
        description="Last successful use, to the minute; null if never used."
    )
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_API_KEY_EXAMPLE,
                    "last_used_at": None,
                    "key": "rk_ed95640b2207_6v7Jez-tC2PRwYIFc-vaf-4AkHpoAym13fZF5octDRY",
                }
            ]
        }
    )

    key: str = Field(
        description="The whole key: shown once, store it now. Send it as "
        "'Authorization: Bearer <key>'."
    )
