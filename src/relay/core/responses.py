"""The JSON response every relay endpoint answers with, encoded by the relay's one encoder."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse as StarletteJSONResponse

from relay.core.jsonutil import dumps


class JSONResponse(StarletteJSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content)
