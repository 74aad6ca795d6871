"""What a relay process holds from its start is frozen out of the cycle collector's walks."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from relay.core.heap import YOUNG_GENERATION_THRESHOLD, settle_startup_objects


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector_restored")
def test_startup_objects_are_never_walked_again_and_young_ones_are_collected_less_often() -> None:
    kept = [{"route": number, "schema": [number]} for number in range(50_000)]
    walked_before = len(gc.get_objects())
    assert walked_before > 100_000
    settle_startup_objects()
    # Frozen: out of every generation a collection walks, and still alive.
    assert len(gc.get_objects()) < walked_before // 10
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD
    assert kept[-1]["schema"] == [49_999]
