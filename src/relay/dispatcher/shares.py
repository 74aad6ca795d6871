"""How a worker shares its slots between subscriptions, so that none can take them all.

A worker has RELAY_DISPATCHER_CONCURRENCY slots, and a request holds its slot until it is
answered or times out. A subscriber that never answers holds every slot it is given for the
whole RELAY_DELIVERY_TIMEOUT, so slots are handed out by how a subscription has behaved in
this worker, and the claim takes no more of a subscription's deliveries than its room here:

- Window: a subscription starts with one slot and gains one for every answer it gives, up to
  its max_concurrency (slow start: the window doubles every round trip while it answers), so
  a newcomer cannot take a worker's slots before it has shown how it answers.
- Slow lane: a subscription whose last attempt timed out or took longer than SLOW_AFTER, or
  that has a request in flight for longer than that, is slow. The slow ones together hold at
  most half of the worker's slots, shared evenly among them (a slow one is not held to its
  window: it still gets its attempts, as many at once as its share); the other half always
  stays free for subscriptions that answer. A claim starts only a few slow requests, so their
  timeouts, and the work each brings, do not come all at once. A timeout also puts the window
  back to one slot, for when the subscription answers again.

A subscription this worker has not seen yet gets one slot, and a claim takes only a few such
strangers' deliveries (as many as it starts slow requests): fifty new subscribers that turn
out to hang start their requests a few at a time, not all at once. Shares are this worker's
own: each worker keeps half of its slots out of reach of slow subscribers, however many
workers there are.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from relay.outbox.claim import WorkerShares

# An answer slower than this marks its subscription slow; well above any healthy subscriber's
# answer time, well below the delivery timeout.
SLOW_AFTER = 1.0
INITIAL_WINDOW = 1
# Slow requests started per claim, at most. Slow subscribers time out together, and refilling
# all their freed slots at once would make them time out together again, forever: a burst of
# failures to write and connections to open every RELAY_DELIVERY_TIMEOUT that stalls the
# healthy deliveries around it. A few per claim spreads them out.
LANE_ADMISSIONS_PER_CLAIM = 4


@dataclass(slots=True)
class _Behaviour:
    window: int = INITIAL_WINDOW
    slow: bool = False


class SlotShares:
    def __init__(self, capacity: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.clock = clock
        self.seen: dict[str, _Behaviour] = {}
        self.in_flight: Counter[str] = Counter()
        # Delivery id -> (subscription, when its request started).
        self.started: dict[str, tuple[str, float]] = {}

    def start(self, delivery_id: str, subscription_id: str) -> None:
        self.in_flight[subscription_id] += 1
        self.started[delivery_id] = (subscription_id, self.clock())

    def finish(
        self, delivery_id: str, *, answered: bool, timed_out: bool, max_concurrency: int
    ) -> None:
        """After an attempt (`answered`: a status code came back), or a delivery ended unsent."""
        subscription_id, started = self.started.pop(delivery_id)
        self.in_flight[subscription_id] -= 1
        if self.in_flight[subscription_id] <= 0:
            del self.in_flight[subscription_id]
        behaviour = self.seen.setdefault(subscription_id, _Behaviour())
        if timed_out:
            behaviour.window = INITIAL_WINDOW
            behaviour.slow = True
        elif answered:
            behaviour.window = min(behaviour.window + 1, max_concurrency)
            behaviour.slow = self.clock() - started > SLOW_AFTER
        if (
            subscription_id not in self.in_flight
            and behaviour.window == INITIAL_WINDOW
            and not behaviour.slow
        ):
            # Nothing to remember that a stranger would not get anyway.
            del self.seen[subscription_id]

    def forget(self, delivery_id: str) -> None:
        """A delivery given back or held without an attempt: its slot is free, nothing learnt."""
        entry = self.started.pop(delivery_id, None)
        if entry is not None:
            self.in_flight[entry[0]] -= 1
            if self.in_flight[entry[0]] <= 0:
                del self.in_flight[entry[0]]

    def _slow_now(self) -> set[str]:
        cutoff = self.clock() - SLOW_AFTER
        slow = {subscription_id for subscription_id, seen in self.seen.items() if seen.slow}
        slow.update(
            subscription_id
            for subscription_id, started in self.started.values()
            if started < cutoff
        )
        return slow

    def for_claim(self) -> WorkerShares:
        """Each subscription's room in this worker now, for the next claim."""
        slow = self._slow_now()
        lane = self.capacity // 2
        lane_free = min(
            lane - sum(self.in_flight[subscription_id] for subscription_id in slow),
            LANE_ADMISSIONS_PER_CLAIM,
        )
        # An even split of the lane among the slow subscriptions, one slot at the least.
        even = max(1, lane // max(len(slow), 1))
        slots: dict[str, int] = {}
        for subscription_id in self.seen.keys() | self.in_flight.keys():
            if subscription_id not in slow:
                window = self.seen.get(subscription_id, _Behaviour()).window
                slots[subscription_id] = max(window - self.in_flight[subscription_id], 0)
        # The lane's free slots go round the slow subscriptions one at a time, those holding
        # the fewest first, each up to its even share.
        turn = sorted(slow, key=lambda s: (self.in_flight[s], s))
        rooms = dict.fromkeys(turn, 0)
        while lane_free > 0:
            given = 0
            for subscription_id in turn:
                if (
                    lane_free > 0
                    and self.in_flight[subscription_id] + rooms[subscription_id] < even
                ):
                    rooms[subscription_id] += 1
                    lane_free -= 1
                    given += 1
            if not given:
                break
        slots.update(rooms)
        return WorkerShares(
            slots=slots, default=INITIAL_WINDOW, strangers=LANE_ADMISSIONS_PER_CLAIM
        )
