"""index the deliveries a worker holds, per subscription

The claim counts, for each subscription with work, the deliveries any worker holds right now,
so that `max_concurrency` holds across every worker, not per process. The index holds only
the leased rows: as many as are in flight, whatever the backlog or the history.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_leased",
        "deliveries",
        ["subscription_id", "locked_until"],
        postgresql_where=sa.text("locked_by IS NOT NULL AND status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_leased", table_name="deliveries")
