"""A worker's slot shares: slow start, the slow lane, and what the claim is told."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.dispatcher.shares import LANE_ADMISSIONS_PER_CLAIM, SLOW_AFTER, SlotShares


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stranger_gets_one_slot_and_gains_one_per_answer_up_to_its_limit() -> None:
    clock = Clock()
    shares = SlotShares(100, clock=clock)
    assert shares.for_claim().default == 1
    assert shares.for_claim().strangers == LANE_ADMISSIONS_PER_CLAIM
    for number in range(12):
        shares.start(f"d{number}", "sub")
        shares.finish(f"d{number}", answered=True, timed_out=False, max_concurrency=5)
    assert shares.for_claim().slots["sub"] == 5


def test_what_is_in_flight_counts_against_the_window() -> None:
    shares = SlotShares(100, clock=Clock())
    for number in range(3):
        shares.start(f"w{number}", "sub")
        shares.finish(f"w{number}", answered=True, timed_out=False, max_concurrency=10)
    assert shares.for_claim().slots["sub"] == 4
    shares.start("a", "sub")
    shares.start("b", "sub")
    assert shares.for_claim().slots["sub"] == 2


def test_hanging_subscriptions_share_half_the_slots_however_many_there_are() -> None:
    clock = Clock()
    shares = SlotShares(100, clock=clock)
    hanging = [f"hang{number}" for number in range(200)]
    # Each gets its stranger's slot; once their requests are old, they are slow.
    for number, subscription in enumerate(hanging):
        shares.start(f"d{number}", subscription)
    clock.now += SLOW_AFTER + 0.1
    rooms = shares.for_claim()
    # 200 in flight already: the lane (50) is over-full, none of them gets another slot.
    assert all(rooms.slots[subscription] == 0 for subscription in hanging)
    # A subscription that answers is still offered its window.
    assert rooms.default == 1


def test_the_slow_lane_is_split_evenly_a_few_at_a_time_and_never_exceeds_half() -> None:
    clock = Clock()
    shares = SlotShares(100, clock=clock)
    for number in range(10):
        shares.start(f"first{number}", f"hang{number}")
    clock.now += SLOW_AFTER + 0.1
    rooms = shares.for_claim()
    # A few new slow requests per claim, one per subscription in turn.
    given = [rooms.slots[f"hang{number}"] for number in range(10)]
    assert sum(given) == LANE_ADMISSIONS_PER_CLAIM
    assert max(given) == 1
    # Claim after claim, granting all that is offered: 10 slow subscriptions share 50 slots.
    started = 0
    for _ in range(100):
        for subscription, room in shares.for_claim().slots.items():
            for _ in range(room):
                shares.start(f"more{started}", subscription)
                started += 1
    assert [shares.in_flight[f"hang{number}"] for number in range(10)] == [5] * 10


def test_a_timeout_makes_a_subscription_slow_and_a_quick_answer_makes_it_fast_again() -> None:
    clock = Clock()
    shares = SlotShares(100, clock=clock)
    for number in range(6):
        shares.start(f"w{number}", "sub")
        shares.finish(f"w{number}", answered=True, timed_out=False, max_concurrency=100)
    assert shares.for_claim().slots["sub"] == 7
    shares.start("t", "sub")
    clock.now += 15
    shares.finish("t", answered=False, timed_out=True, max_concurrency=100)
    # Slow: an even share of the lane (no one else is in it), a few requests per claim.
    assert shares.for_claim().slots["sub"] == LANE_ADMISSIONS_PER_CLAIM
    shares.start("q", "sub")
    shares.finish("q", answered=True, timed_out=False, max_concurrency=100)
    # Fast again, and starting over from one slot (gained one with this answer).
    assert shares.for_claim().slots["sub"] == 2


def test_a_slow_answer_is_slow() -> None:
    clock = Clock()
    shares = SlotShares(100, clock=clock)
    shares.start("s", "sub")
    clock.now += 2
    shares.finish("s", answered=True, timed_out=False, max_concurrency=10)
    # The lane's, a few at a time; its own max_concurrency is the claim's to apply, across
    # workers.
    assert shares.for_claim().slots["sub"] == LANE_ADMISSIONS_PER_CLAIM


def test_forgotten_deliveries_free_their_slot_and_strangers_are_not_remembered() -> None:
    shares = SlotShares(100, clock=Clock())
    shares.start("a", "sub")
    shares.forget("a")
    shares.forget("a")
    assert shares.for_claim().slots == {}
    shares.start("b", "sub")
    shares.finish("b", answered=False, timed_out=False, max_concurrency=10)
    assert shares.seen == {}


@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.booleans(), st.booleans(), st.floats(0, 20)),
        max_size=200,
    )
)
def test_slow_subscriptions_never_hold_more_than_half_the_slots(
    steps: list[tuple[int, bool, bool, float]],
) -> None:
    """Whatever the history, granting every room the claim is told keeps the slow ones within
    the lane: what they hold plus what they are offered is at most half."""
    clock = Clock()
    shares = SlotShares(40, clock=clock)
    in_flight: list[str] = []
    for number, (subscription, answered, timed_out, elapsed) in enumerate(steps):
        clock.now += elapsed
        if in_flight and number % 3 == 0:
            shares.finish(
                in_flight.pop(0), answered=answered, timed_out=timed_out, max_concurrency=8
            )
        else:
            shares.start(f"d{number}", f"s{subscription}")
            in_flight.append(f"d{number}")
        slow = shares._slow_now()
        rooms = shares.for_claim()
        offered = sum(rooms.slots.get(name, 0) for name in slow)
        held = sum(shares.in_flight[name] for name in slow)
        assert offered == 0 or held + offered <= 20
