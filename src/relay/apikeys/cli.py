"""`relay api-keys`: manage API keys straight in the database, as `relay migrate` does, so the
first key can be made without one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from relay.apikeys.repository import ApiKeyRepository
from relay.apikeys.schemas import ApiKeyCreate
from relay.apikeys.service import ApiKeyService, as_scope, to_out
from relay.core.crypto import EncryptionError
from relay.core.errors import RelayError, is_database_unavailable
from relay.core.logging import configure_logging
from relay.core.scopes import SCOPES
from relay.core.settings import get_settings
from relay.db.engine import create_engine, create_session_factory, resolve_database_url
from relay.db.migrations import upgrade_to_head

T = TypeVar("T")

app = typer.Typer(help="Create, list and revoke API keys for the admin API.", no_args_is_help=True)


def _run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    url = resolve_database_url(settings)

    async def run() -> T:
        engine = create_engine(url, settings)
        try:
            await upgrade_to_head(url)
            async with create_session_factory(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except RelayError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    except EncryptionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        typer.echo(
            f"error: cannot reach the database ({type(exc).__name__}): check RELAY_DATABASE_URL "
            "and that PostgreSQL is running",
            err=True,
        )
        raise typer.Exit(1) from exc


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2))


@app.command()
def create(
    scope: Annotated[str, typer.Option(help=f"One of {', '.join(SCOPES)}.")],
    name: Annotated[str, typer.Option(help="Who or what holds the key.")] = "cli",
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it once: it cannot be shown again."""
    if scope not in SCOPES:
        typer.echo(f"error: --scope must be one of {', '.join(SCOPES)}", err=True)
        raise typer.Exit(2)
    created = _run(
        lambda session: ApiKeyService(ApiKeyRepository(session)).create(
            ApiKeyCreate(name=name, scope=as_scope(scope)), now=datetime.now(UTC)
        )
    )
    if as_json:
        _print_json(created.model_dump(mode="json"))
        return
    typer.echo(f"created {created.scope} key {created.prefix} ({created.id}); it is shown once:")
    typer.echo(created.key)


@app.command("list")
def list_keys(as_json: JsonOption = False) -> None:
    """List keys: prefix, name, scope, and whether they are revoked. Never the keys."""

    async def fetch(session: AsyncSession) -> list[dict[str, object]]:
        keys = await ApiKeyService(ApiKeyRepository(session)).list(limit=10_000, cursor=None)
        return [to_out(key).model_dump(mode="json") for key in keys]

    rows = _run(fetch)
    if as_json:
        _print_json({"data": rows})
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        typer.echo(f"{row['id']}  {row['prefix']}  {row['scope']:<5}  {state:<10}  {row['name']}")


@app.command()
def revoke(
    api_key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    _run(
        lambda session: ApiKeyService(ApiKeyRepository(session)).revoke(
            api_key_id, now=datetime.now(UTC)
        )
    )
    if as_json:
        _print_json({"revoked": api_key_id})
        return
    typer.echo(f"revoked {api_key_id}")
