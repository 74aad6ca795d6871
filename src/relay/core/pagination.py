"""Cursor pagination over prefixed ULID ids, newest first.

Ids sort by creation time, so the last id of a page is a stable cursor even while rows arrive.
"""

from __future__ import annotations

import re
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from relay.core.errors import Invalid

T = TypeVar("T")

_CURSOR = re.compile(r"^[a-z]{2,4}_[0-9A-HJKMNP-TV-Z]{26}$")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None


def checked_cursor(cursor: str | None) -> str | None:
    if cursor is not None and not _CURSOR.match(cursor):
        raise Invalid("cursor is not valid: pass the next_cursor value of the previous page")
    return cursor


LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1-500).")]
CursorQuery = Annotated[str | None, Query(description="next_cursor of the previous page.")]
