"""Secrets the relay generates for itself and keeps in its data directory, owner-only."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def read_or_create_owner_only(path: Path, generate: Callable[[], str]) -> tuple[str, bool]:
    """The file's content, or a newly generated one written with mode 0600; and whether it is
    new. Processes starting at once agree on one value: the file appears complete or not at
    all (written aside, then hard-linked into place, which fails if another process won)."""
    if path.exists():
        return _read(path), False
    path.parent.mkdir(parents=True, exist_ok=True)
    value = generate()
    aside = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        try:
            os.link(aside, path)
        except FileExistsError:
            return _read(path), False
    finally:
        aside.unlink(missing_ok=True)
    return value, True


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        raise ValueError(f"{path} is empty; restore it from a backup")
    return value
