"""The API keys API's request and response bodies."""

from __future__ import annotations

from datetime import datetime

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


class ApiKeyOut(BaseModel):
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
    key: str = Field(
        description="The whole key: shown once, store it now. Send it as "
        "'Authorization: Bearer <key>'."
    )
