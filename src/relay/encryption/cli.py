"""`relay encryption`: make a key, and rewrite every stored secret under the newest key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.crypto import EncryptionError, new_key
from relay.core.logging import configure_logging
from relay.core.settings import get_settings
from relay.db.engine import create_engine, create_session_factory, resolve_database_url
from relay.db.migrations import upgrade_to_head
from relay.encryption.repository import EncryptionRepository
from relay.encryption.service import EncryptionService

BATCH_SIZE = 500

app = typer.Typer(
    help="Keys that encrypt source credentials and subscription secrets at rest.",
    no_args_is_help=True,
)


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command("new-key")
def new_key_command(as_json: JsonOption = False) -> None:
    """Print a new random key for RELAY_ENCRYPTION_KEY (nothing is stored)."""
    key = new_key()
    typer.echo(json.dumps({"key": key}) if as_json else key)


Step = Callable[[EncryptionService, str], Awaitable[list[str]]]


async def _rotate_table(factory: async_sessionmaker[AsyncSession], step: Step) -> int:
    # One transaction per batch: a rotation stopped halfway is simply run again, since every
    # key of the keyring still decrypts what was not rewritten yet.
    done = 0
    cursor = ""
    while True:
        async with factory() as session:
            ids = await step(EncryptionService(EncryptionRepository(session)), cursor)
            await session.commit()
        if not ids:
            return done
        done += len(ids)
        cursor = ids[-1]


@app.command()
def rotate(as_json: JsonOption = False) -> None:
    """Re-encrypt every stored secret under the first key of RELAY_ENCRYPTION_KEY.

    Put the new key first, restart the relay (it then decrypts with both and encrypts with the
    new one), run this, then remove the old key."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> tuple[int, int]:
        url = resolve_database_url(settings)
        engine = create_engine(url, settings)
        try:
            await upgrade_to_head(url)
            factory = create_session_factory(engine)
            sources = await _rotate_table(
                factory, lambda s, after: s.rotate_sources(after=after, limit=BATCH_SIZE)
            )
            subscriptions = await _rotate_table(
                factory, lambda s, after: s.rotate_subscriptions(after=after, limit=BATCH_SIZE)
            )
            return sources, subscriptions
        finally:
            await engine.dispose()

    try:
        sources, subscriptions = asyncio.run(run())
    except EncryptionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps({"sources": sources, "subscriptions": subscriptions}))
        return
    typer.echo(
        f"re-encrypted under the newest key: {sources} sources, {subscriptions} subscriptions"
    )
