"""One JSON encoder for everything the relay writes: orjson, UTC timestamps with a Z."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson


def isoformat(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)
