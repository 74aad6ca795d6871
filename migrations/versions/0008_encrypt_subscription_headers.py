"""encrypt subscription custom headers at rest

Subscribers put credentials in custom headers under any name (`X-Partner-Cred`), so every
header value is a secret: the whole `headers` document is now stored as the Fernet token of
its JSON, like `sources.verification` since 0005, under the relay's keyring. Existing rows are
rewritten in the migration's transaction; the column loses its default (an empty object in the
clear, which the relay could not read). Downgrading decrypts them back.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 08:10:00.000000+00:00
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from relay.core.crypto import migration_keyring

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("subscriptions", "headers", server_default=None)
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id, headers FROM subscriptions WHERE jsonb_typeof(headers) = 'object'")
    ).all()
    if not rows:
        # An empty database needs no key, so creating one (or a test template) never makes one.
        return
    keyring = migration_keyring()
    for subscription_id, headers in rows:
        bind.execute(
            sa.text(
                "UPDATE subscriptions SET headers = to_jsonb(CAST(:token AS text)) WHERE id = :id"
            ),
            {"token": keyring.encrypt(json.dumps(headers)), "id": subscription_id},
        )


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id, headers FROM subscriptions WHERE jsonb_typeof(headers) = 'string'")
    ).all()
    if rows:
        keyring = migration_keyring()
        for subscription_id, token in rows:
            bind.execute(
                sa.text(
                    "UPDATE subscriptions SET headers = CAST(:document AS jsonb) WHERE id = :id"
                ),
                {"document": keyring.decrypt(token), "id": subscription_id},
            )
    op.alter_column("subscriptions", "headers", server_default=sa.text("'{}'::jsonb"))
