"""outbox invariants: the delivery state machine's rules as CHECK constraints; parked flags
that the upkeep lowers after a grace

The rules that lived in comments (a lease is a worker and an expiry together; held and parked
rows wait with no lease; a finished delivery has its completion time) are now enforced by the
database, so no write can leave a delivery in a state the claim does not expect. Rows that
broke a rule before are mended first: a finished row gets a completion time, a finished row
loses a lease it kept.

`subscription_throttles.lowered_at`: the ingest now writes a delivery for a subscription whose
backlog is parked straight into the parked set, so the claim no longer lowers that flag the
moment the parked rows run out (an ingest may be writing one behind it); the upkeep lowers it,
and the claims go on looking behind it for a while after.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 07:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As the models say at this revision (a migration keeps its own copy: the models move on).
_TABLES: tuple[tuple[str, dict[str, str]], ...] = (
    (
        "deliveries",
        {
            "status": "status IN ('pending', 'succeeded', 'failed')",
            "lease_whole": "(locked_by IS NULL) = (locked_until IS NULL)",
            "lease_pending": "locked_by IS NULL OR status = 'pending'",
            "held_waiting": "NOT held OR (status = 'pending' AND locked_by IS NULL)",
            "parked_waiting": "NOT parked OR (status = 'pending' AND locked_by IS NULL AND NOT held)",
            "completed_when_finished": "(status = 'pending') = (completed_at IS NULL)",
            "attempts_counted": "attempts >= 0",
        },
    ),
    (
        "delivery_attempts",
        {
            "outcome": "outcome IN ('pending', 'succeeded', 'failed')",
            "attempt_number": "attempt_number >= 1",
            "duration": "duration_ms >= 0",
        },
    ),
    (
        "subscriptions",
        {
            "state": "state IN ('active', 'degraded', 'disabled')",
            "max_concurrency": "max_concurrency >= 1",
            "rate_limit": "rate_limit_per_second IS NULL OR rate_limit_per_second > 0",
            "failures_counted": "consecutive_failures >= 0",
        },
    ),
)


def upgrade() -> None:
    op.execute(
        """
        UPDATE deliveries
        SET completed_at = coalesce(completed_at, updated_at),
            locked_by = NULL, locked_until = NULL, held = false, parked = false
        WHERE status <> 'pending'
          AND (completed_at IS NULL OR locked_by IS NOT NULL OR locked_until IS NOT NULL
               OR held OR parked)
        """
    )
    op.execute(
        """
        UPDATE deliveries
        SET completed_at = NULL, locked_by = NULL, locked_until = NULL
        WHERE status = 'pending'
          AND (completed_at IS NOT NULL OR (locked_by IS NULL) <> (locked_until IS NULL))
        """
    )
    op.execute(
        """
        UPDATE deliveries SET parked = false
        WHERE status = 'pending' AND parked AND (held OR locked_by IS NOT NULL)
        """
    )
    for table, rules in _TABLES:
        for name, rule in rules.items():
            op.create_check_constraint(op.f(f"ck_{table}_{name}"), table, rule)
    op.add_column(
        "subscription_throttles",
        sa.Column("lowered_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("subscription_throttles", "lowered_at")
    for table, rules in reversed(_TABLES):
        for name in rules:
            op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
