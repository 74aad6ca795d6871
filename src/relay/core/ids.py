"""Prefixed, time-sortable identifiers (`evt_01J...`): readable in logs, ordered by creation."""

from __future__ import annotations

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"
