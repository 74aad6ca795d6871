"""a token bucket per subscription, kept by the claim

`rate_limit_per_second` holds across every worker: the claim takes no more of a subscription's
deliveries than its bucket holds, and spends them in the same statement. NULL means a full
bucket (never spent).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 09:40:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("rate_tokens", sa.Float(), nullable=True))
    op.add_column(
        "subscriptions", sa.Column("rate_refilled_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("subscriptions", "rate_refilled_at")
    op.drop_column("subscriptions", "rate_tokens")
