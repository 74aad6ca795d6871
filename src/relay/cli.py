"""The `relay` command."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
import uvicorn
from prometheus_client import start_http_server
from pydantic import ValidationError

from relay import __version__
from relay.apikeys.auth import load_or_create_admin_token
from relay.apikeys.cli import app as api_keys_app
from relay.background import BackgroundWork
from relay.client import commands as client_commands
from relay.client.listen import listen as listen_command
from relay.client.tail import tail as tail_command
from relay.core.crypto import EncryptionError, install_from_settings
from relay.core.heap import settle_startup_objects
from relay.core.logging import configure_logging, get_logger
from relay.core.serving import guarded_protocol
from relay.core.settings import Settings, get_settings
from relay.db.engine import create_engine, create_session_factory, resolve_database_url
from relay.db.migrations import upgrade_to_head
from relay.encryption.cli import app as encryption_app
from relay.observability.metrics import process_default
from relay.retention.service import Purger

app = typer.Typer(
    name="relay",
    help="Self-hosted webhook relay for last-mile delivery platforms.",
    no_args_is_help=True,
    add_completion=False,
)
log = get_logger("relay.cli")


def _settings() -> Settings:
    try:
        settings = get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            # A validator's own message names the setting and what to write already.
            if error["type"] == "value_error":
                typer.echo(f"error: {error['ctx']['error']}", err=True)
                continue
            name = f"RELAY_{str(error['loc'][0]).upper()}: " if error["loc"] else ""
            typer.echo(f"error: {name}{error['msg']}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    # First, so a relay that could not read or write its secrets never starts serving.
    try:
        install_from_settings(settings)
    except EncryptionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    return settings


def _prepare_database(settings: Settings) -> str:
    url = resolve_database_url(settings)
    asyncio.run(upgrade_to_head(url))
    log.info("migrations_applied")
    return url


def _announce_new_token(token: str, base_url: str) -> None:
    # Printed once, to the terminal, on the start that created it; never logged.
    print(
        "\nA new admin token was generated and saved in the data directory:\n\n"
        f"    {token}\n\n"
        "Try it:\n\n"
        f"    curl -H 'Authorization: Bearer {token}' {base_url}/v1/sources\n\n"
        f"or sign in with it to the web console at {base_url}/console\n",
        file=sys.stderr,
        flush=True,
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (RELAY_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (RELAY_PORT).")] = None,
    dispatcher: Annotated[
        bool,
        typer.Option(
            "--dispatcher/--no-dispatcher",
            help="Also deliver events from this process (run `relay worker` elsewhere if not).",
        ),
    ] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="API processes to run on the one port, each with its own dispatcher unless "
            "--no-dispatcher (RELAY_WORKERS).",
        ),
    ] = None,
) -> None:
    """Apply pending migrations and run the relay's HTTP API (and, by default, a dispatcher)."""
    from relay.app import create_app
    from relay.serving import (
        WorkerConfig,
        run_workers,
        server_options,
        shared_metrics_directory,
        worker_options,
    )

    settings = _settings()
    bind_host = host or settings.host
    bind_port = port or settings.port
    processes = workers or settings.workers
    url = _prepare_database(settings)
    token, created = load_or_create_admin_token(settings)
    if created:
        _announce_new_token(token, settings.relay_url(host=bind_host, port=bind_port))
    if processes > 1:
        with shared_metrics_directory() as metrics_directory:
            log.info(
                "relay_listening",
                host=bind_host,
                port=bind_port,
                version=__version__,
                workers=processes,
                metrics_directory=metrics_directory,
            )
            config = WorkerConfig(
                database_url=url,
                admin_token=token,
                dispatcher=dispatcher,
                **worker_options(settings, host=bind_host, port=bind_port, workers=processes),
            )
            if not run_workers(config):
                typer.echo("error: an API process failed to start; see the log above", err=True)
                raise typer.Exit(1)
        return
    application = create_app(settings, database_url=url, run_dispatcher=dispatcher)
    application.state.admin_token = token
    settle_startup_objects()
    log.info("relay_listening", host=bind_host, port=bind_port, version=__version__)
    # uvicorn re-raises the signal it shut down for once it is done; exiting normally instead
    # lets atexit hooks run, among them the one that stops the embedded PostgreSQL.
    signal.signal(signal.SIGTERM, _exit_quietly)
    signal.signal(signal.SIGINT, _exit_quietly)
    # The protocol caps connections itself (RELAY_MAX_CONNECTIONS), answering in JSON.
    uvicorn.run(
        application,
        **server_options(settings, host=bind_host, port=bind_port),
        http=guarded_protocol(settings),
    )


def _exit_quietly(_signum: int, _frame: object) -> None:
    sys.exit(0)


@app.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve this worker's attempt counters on :PORT/metrics (Prometheus), without "
            "authentication: needs RELAY_METRICS_PUBLIC=true."
        ),
    ] = None,
) -> None:
    """Run a dispatcher alone: claim due deliveries and send them, until SIGTERM or Ctrl-C."""
    settings = _settings()
    if metrics_port is not None and not settings.metrics_public:
        # The worker's metrics server has no token check, unlike /metrics on `relay serve`.
        typer.echo(
            "error: --metrics-port serves metrics without authentication; set "
            "RELAY_METRICS_PUBLIC=true to allow that, or read them from `relay serve`'s /metrics",
            err=True,
        )
        raise typer.Exit(2)
    url = _prepare_database(settings)
    if metrics_port is not None:
        start_http_server(metrics_port, addr=settings.host, registry=process_default().registry)
    settle_startup_objects()
    asyncio.run(_run_worker(settings, url))


async def _run_worker(settings: Settings, url: str) -> None:
    engine = create_engine(url, settings)
    background = BackgroundWork(settings, create_session_factory(engine), url)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, background.stop)
    try:
        await background.run()
    finally:
        await engine.dispose()


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command()
def migrate(as_json: JsonOption = False) -> None:
    """Apply pending database migrations, then exit."""
    _prepare_database(_settings())
    if as_json:
        typer.echo(json.dumps({"migrated": True}))
        return
    typer.echo("database is at the latest migration")


@app.command()
def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would go, per table.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Purge what is past its retention window now (RELAY_RETENTION_DAYS and friends)."""
    settings = _settings()
    counts = asyncio.run(_purge(settings, resolve_database_url(settings), dry_run=dry_run))
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, "counts": counts}))
        return
    typer.echo("would remove:" if dry_run else "removed:")
    for table, count in counts.items():
        typer.echo(f"  {table:<22}{count:>12,}")


async def _purge(settings: Settings, url: str, *, dry_run: bool) -> dict[str, int]:
    engine = create_engine(url, settings)
    try:
        purger = Purger(settings, create_session_factory(engine))
        now = datetime.now(UTC)
        if dry_run:
            return await purger.preview(now=now)
        return (await purger.purge(now=now)).removed
    finally:
        await engine.dispose()


@app.command()
def version(as_json: JsonOption = False) -> None:
    """Print the relay's version."""
    typer.echo(json.dumps({"version": __version__}) if as_json else __version__)


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(__version__)
        raise typer.Exit


@app.callback()
def _main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the relay's version and exit.",
        ),
    ] = False,
) -> None:
    """Self-hosted webhook relay for last-mile delivery platforms."""


app.add_typer(client_commands.sources, name="sources")
app.add_typer(client_commands.subscriptions, name="subscriptions")
app.add_typer(client_commands.events, name="events")
app.add_typer(client_commands.deliveries, name="deliveries")
app.add_typer(client_commands.requests, name="requests")
app.add_typer(client_commands.jobs, name="jobs")
app.command("event-types")(client_commands.event_types)
app.command("recover")(client_commands.recover)
app.command("tail")(tail_command)
app.command("listen")(listen_command)
app.command("stats")(client_commands.stats)
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(encryption_app, name="encryption")


def main() -> None:
    app()
