"""How answers show a credential after it was set: enough to tell two apart, no more."""

from __future__ import annotations

MASK = "********"
# Below this length, even the last four characters give away too large a share of the secret.
MASK_REVEALS_TAIL_FROM = 16


def masked(value: str, *, mask: str = MASK) -> str:
    return mask + value[-4:] if len(value) >= MASK_REVEALS_TAIL_FROM else mask
