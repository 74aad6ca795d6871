"""sources, inbound requests, events, dedupe keys

Revision ID: 0001
Revises:
Create Date: 2026-11-22 15:40:10.608051+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("verification", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "mapping",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("rate_limit_per_second", sa.Float(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("slug", name=op.f("uq_sources_slug")),
    )
    op.create_table(
        "dedupe_keys",
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_dedupe_keys_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("source_id", "key", name=op.f("pk_dedupe_keys")),
    )
    op.create_index(op.f("ix_dedupe_keys_created_at"), "dedupe_keys", ["created_at"], unique=False)
    op.create_table(
        "inbound_requests",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("source_id", sa.String(length=40), nullable=True),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("body_size", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("accepted_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("duplicate_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "event_ids", postgresql.ARRAY(sa.String(length=40)), server_default="{}", nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_inbound_requests_source_id_sources"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_requests")),
    )
    op.create_index(
        "ix_inbound_requests_received_at_id",
        "inbound_requests",
        ["received_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_inbound_requests_source_id_received_at",
        "inbound_requests",
        ["source_id", "received_at"],
        unique=False,
    )
    op.create_table(
        "events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("request_id", sa.String(length=40), nullable=True),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("vendor_event_name", sa.String(length=200), nullable=False),
        sa.Column("vendor_event_id", sa.String(length=200), nullable=True),
        sa.Column("subject_kind", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["inbound_requests.id"],
            name=op.f("fk_events_request_id_inbound_requests"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_events_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_received_at_id", "events", ["received_at", "id"], unique=False)
    op.create_index(op.f("ix_events_request_id"), "events", ["request_id"], unique=False)
    op.create_index(
        "ix_events_source_id_received_at", "events", ["source_id", "received_at"], unique=False
    )
    op.create_index("ix_events_type_received_at", "events", ["type", "received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_events_type_received_at", table_name="events")
    op.drop_index("ix_events_source_id_received_at", table_name="events")
    op.drop_index(op.f("ix_events_request_id"), table_name="events")
    op.drop_index("ix_events_received_at_id", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_inbound_requests_source_id_received_at", table_name="inbound_requests")
    op.drop_index("ix_inbound_requests_received_at_id", table_name="inbound_requests")
    op.drop_table("inbound_requests")
    op.drop_index(op.f("ix_dedupe_keys_created_at"), table_name="dedupe_keys")
    op.drop_table("dedupe_keys")
    op.drop_table("sources")
