"""The states of a delivery and of a subscription, and what each means for the outbox.

A subscription's liveness is derived from three columns (`deleted_at`, `state`, `active`);
`LIVENESS_RULES` is the only place that says how, read by Python (`liveness`) and by SQL
(`liveness_sql`) alike, and a test holds the two to the same answers on real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class SubscriptionState(StrEnum):
    """The breaker's verdict, kept in `subscriptions.state`; a pause is `active = false`."""

    ACTIVE = "active"
    DEGRADED = "degraded"
    DISABLED = "disabled"


class Liveness(StrEnum):
    ACTIVE = "active"
    # Paused by an admin (`active: false`): new events still get deliveries, which wait.
    PAUSED = "paused"
    # The breaker is open: deliveries wait, one probe goes out per probe interval.
    DEGRADED = "degraded"
    # By a 410, by failing longer than RELAY_DISABLE_AFTER: no new deliveries, pending ones fail.
    DISABLED = "disabled"
    DELETED = "deleted"


class LivenessRule(NamedTuple):
    liveness: Liveness
    # The same condition twice, side by side: over the columns in SQL, over the values here.
    sql: str
    applies: Callable[[datetime | None, str, bool], bool]


def _deleted(deleted_at: datetime | None, state: str, active: bool) -> bool:
    return deleted_at is not None


def _disabled(deleted_at: datetime | None, state: str, active: bool) -> bool:
    return state == SubscriptionState.DISABLED


def _paused(deleted_at: datetime | None, state: str, active: bool) -> bool:
    return not active


def _degraded(deleted_at: datetime | None, state: str, active: bool) -> bool:
    return state == SubscriptionState.DEGRADED


# First match wins: a deleted subscription is deleted whatever else it is, a disabled one that
# is also paused is disabled (resuming it is what re-enables it).
LIVENESS_RULES: tuple[LivenessRule, ...] = (
    LivenessRule(Liveness.DELETED, "{s}.deleted_at IS NOT NULL", _deleted),
    LivenessRule(Liveness.DISABLED, "{s}.state = 'disabled'", _disabled),
    LivenessRule(Liveness.PAUSED, "NOT {s}.active", _paused),
    LivenessRule(Liveness.DEGRADED, "{s}.state = 'degraded'", _degraded),
)

# A subscription whose breaker a success closes: it had failures counted, or is degraded. A
# disabled one stays disabled (only resuming it re-enables it). Read by the breaker's own
# update (health.py) and by the outcome writer, which leaves such a subscription to it.
BREAKER_TO_CLOSE_SQL = (
    "{s}.state <> 'disabled' AND ({s}.consecutive_failures <> 0 OR {s}.state <> 'active'"
    " OR {s}.breaker_open_until IS NOT NULL)"
)

# Which liveness states take new deliveries (fan-out, replay) and which send them now.
TAKES_NEW_DELIVERIES = frozenset({Liveness.ACTIVE, Liveness.PAUSED, Liveness.DEGRADED})
HOLDS_DELIVERIES = frozenset({Liveness.PAUSED, Liveness.DEGRADED})
ENDS_PENDING_DELIVERIES = frozenset({Liveness.DISABLED, Liveness.DELETED})


def liveness(*, deleted_at: datetime | None, state: str, active: bool) -> Liveness:
    for rule in LIVENESS_RULES:
        if rule.applies(deleted_at, state, active):
            return rule.liveness
    return Liveness.ACTIVE


def liveness_sql(alias: str) -> str:
    """The liveness of the subscription row `alias`, as a SQL expression."""
    branches = " ".join(
        f"WHEN {sql.format(s=alias)} THEN '{value.value}'" for value, sql, _ in LIVENESS_RULES
    )
    return f"(CASE {branches} ELSE '{Liveness.ACTIVE.value}' END)"


def liveness_in_sql(alias: str, states: frozenset[Liveness]) -> str:
    """A SQL condition: the subscription row `alias` is in one of `states`."""
    listed = ", ".join(f"'{value.value}'" for value in sorted(states))
    return f"{liveness_sql(alias)} IN ({listed})"
