"""config_version: a number that goes up whenever what the ingest reads of sources and
subscriptions changes

The ingest keeps sources and the live subscriptions in memory (ingest/directory.py) and writes a
webhook only while the number it read them at is still current. Triggers bump it: on any change
to `sources`, on added or removed subscriptions, and on updates of the subscription columns that
decide which events a subscription takes. Updates that only touch delivery bookkeeping (the
breaker's failure counts and probe times, written after every batch of attempts) leave it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 11:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What fan-out reads of a subscription (ingest/repository.py `_LOOKUP`, outbox liveness).
_FANOUT_COLUMNS = (
    "active",
    "state",
    "deleted_at",
    "event_types",
    "vendors",
    "source_ids",
    "filter",
    "ordered",
)


def upgrade() -> None:
    op.create_table(
        "config_version",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_config_version_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_config_version"),
    )
    op.execute("INSERT INTO config_version (id, version) VALUES (1, 0)")
    # An upsert, so that the number still goes up after the row was removed.
    op.execute(
        """
        CREATE FUNCTION relay_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO config_version (id, version) VALUES (1, 1)
            ON CONFLICT (id) DO UPDATE SET version = config_version.version + 1;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER sources_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
        "ON sources FOR EACH STATEMENT EXECUTE FUNCTION relay_config_changed()"
    )
    op.execute(
        "CREATE TRIGGER subscriptions_added_or_removed AFTER INSERT OR DELETE OR TRUNCATE "
        "ON subscriptions FOR EACH STATEMENT EXECUTE FUNCTION relay_config_changed()"
    )
    old = ", ".join(f"OLD.{column}" for column in _FANOUT_COLUMNS)
    new = ", ".join(f"NEW.{column}" for column in _FANOUT_COLUMNS)
    op.execute(
        "CREATE TRIGGER subscriptions_fanout_changed AFTER UPDATE ON subscriptions "
        f"FOR EACH ROW WHEN (({old}) IS DISTINCT FROM ({new})) "
        "EXECUTE FUNCTION relay_config_changed()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER subscriptions_fanout_changed ON subscriptions")
    op.execute("DROP TRIGGER subscriptions_added_or_removed ON subscriptions")
    op.execute("DROP TRIGGER sources_config_changed ON sources")
    op.execute("DROP FUNCTION relay_config_changed()")
    op.drop_table("config_version")
