"""indexes for the console's filters: failed attempts of a subscription, events by subject

The console's "errors only" switch lists a subscription's attempts that did not succeed,
newest first: a partial index holds only those, so the page reads 50 entries instead of
walking past every success (they are most of the table). Event search by subject id (an order
or route id) gets an index of its own instead of a scan of the event history.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 11:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_delivery_attempts_errors",
        "delivery_attempts",
        ["subscription_id", "id"],
        postgresql_where=sa.text("outcome <> 'succeeded'"),
    )
    op.create_index("ix_events_subject_id_id", "events", ["subject_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_subject_id_id", table_name="events")
    op.drop_index("ix_delivery_attempts_errors", table_name="delivery_attempts")
