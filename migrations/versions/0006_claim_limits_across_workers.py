"""claim limits across workers: parked deliveries, leased index, subscription throttles

`max_concurrency` and `rate_limit_per_second` are now enforced by the claim, for all workers
together. A delivery over its subscription's limit is parked: it leaves the due index, so a
large backlog of one subscription never stands in front of another's work, and it is taken
again, oldest first, as its subscription gets room. `subscription_throttles` is the claim's
memory: which subscriptions have parked deliveries, and each rate limit's token bucket.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "deliveries",
        sa.Column("parked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending' AND NOT held AND NOT parked"),
    )
    op.create_index(
        "ix_deliveries_parked",
        "deliveries",
        ["subscription_id", "next_attempt_at", "id"],
        postgresql_where=sa.text("status = 'pending' AND parked"),
    )
    op.create_index(
        "ix_deliveries_leased",
        "deliveries",
        ["subscription_id", "locked_until"],
        postgresql_where=sa.text("locked_by IS NOT NULL AND status = 'pending'"),
    )
    op.create_table(
        "subscription_throttles",
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("parked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=True),
        sa.Column("refilled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_throttles_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_subscription_throttles")),
    )
    op.create_index(
        "ix_subscription_throttles_parked",
        "subscription_throttles",
        ["subscription_id"],
        postgresql_where=sa.text("parked"),
    )


def downgrade() -> None:
    op.drop_index("ix_subscription_throttles_parked", table_name="subscription_throttles")
    op.drop_table("subscription_throttles")
    op.drop_index("ix_deliveries_leased", table_name="deliveries")
    op.drop_index("ix_deliveries_parked", table_name="deliveries")
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending' AND NOT held"),
    )
    op.drop_column("deliveries", "parked")
