"""The cycle collector's settings for a long-running relay process.

CPython's cycle collector walks every tracked object of a generation each time it collects it.
A relay process holds about 150,000 objects from its start (modules, the app, its routes,
schemas and statements) that live as long as it does. Left in the collector's reach, they were
walked by every full collection, about 200 ms each on the benchmark machine, a stall of the
event loop every few seconds under load; collections took 10 % of a busy dispatcher's CPU
(measured with `gc.callbacks` while it drained a backlog: 4.7 s of collections in 10,000
deliveries, 1.6 s after this).
"""

from __future__ import annotations

import gc

# Allocations (less deallocations) before the youngest generation is collected; CPython's 700
# collects it for nearly every request the relay serves or sends, and promotes what the other
# requests in flight hold at that moment to the older generations, to be walked again there.
YOUNG_GENERATION_THRESHOLD = 10_000


def settle_startup_objects() -> None:
    """Called once a process has built what it keeps (before it serves or dispatches): what
    is alive then is never collected, and is never walked again."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)
