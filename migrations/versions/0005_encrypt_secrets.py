"""encrypt source credentials and subscription secrets at rest

Rewrites every existing row under the relay's keyring (RELAY_ENCRYPTION_KEY, else the key in
RELAY_DATA_DIR/encryption-key), in the migration's transaction: once it commits, no secret is
left in the clear, and the application only ever reads encrypted values. The columns keep
their types: `sources.verification` holds a JSON string (the token of the whole document),
the subscription secrets hold tokens as text. Downgrading decrypts them back.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 03:00:00.000000+00:00
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from relay.core.crypto import migration_keyring

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _has_rows() -> bool:
    # An empty database needs no key, so creating one (or a test template) never makes one.
    bind = op.get_bind()
    return bool(
        bind.execute(
            sa.text("SELECT EXISTS (SELECT 1 FROM sources) OR EXISTS (SELECT 1 FROM subscriptions)")
        ).scalar()
    )


def upgrade() -> None:
    if not _has_rows():
        return
    keyring = migration_keyring()
    bind = op.get_bind()
    sources = bind.execute(
        sa.text("SELECT id, verification FROM sources WHERE jsonb_typeof(verification) = 'object'")
    ).all()
    for source_id, verification in sources:
        bind.execute(
            sa.text(
                "UPDATE sources SET verification = to_jsonb(CAST(:token AS text)) WHERE id = :id"
            ),
            {"token": keyring.encrypt(json.dumps(verification)), "id": source_id},
        )
    subscriptions = bind.execute(sa.text("SELECT id, secret, previous_secret FROM subscriptions"))
    for subscription_id, secret, previous in subscriptions.all():
        bind.execute(
            sa.text(
                "UPDATE subscriptions SET secret = :secret, previous_secret = :previous WHERE id = :id"
            ),
            {
                "secret": keyring.encrypt(secret),
                "previous": None if previous is None else keyring.encrypt(previous),
                "id": subscription_id,
            },
        )


def downgrade() -> None:
    if not _has_rows():
        return
    keyring = migration_keyring()
    bind = op.get_bind()
    sources = bind.execute(
        sa.text("SELECT id, verification FROM sources WHERE jsonb_typeof(verification) = 'string'")
    ).all()
    for source_id, token in sources:
        bind.execute(
            sa.text("UPDATE sources SET verification = CAST(:document AS jsonb) WHERE id = :id"),
            {"document": keyring.decrypt(token), "id": source_id},
        )
    subscriptions = bind.execute(sa.text("SELECT id, secret, previous_secret FROM subscriptions"))
    for subscription_id, secret, previous in subscriptions.all():
        bind.execute(
            sa.text(
                "UPDATE subscriptions SET secret = :secret, previous_secret = :previous WHERE id = :id"
            ),
            {
                "secret": keyring.decrypt(secret),
                "previous": None if previous is None else keyring.decrypt(previous),
                "id": subscription_id,
            },
        )
