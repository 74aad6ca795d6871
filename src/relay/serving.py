"""How `relay serve` runs its HTTP API: in its own process, or in N processes on one port.

With `--workers N` (RELAY_WORKERS) the `relay serve` process becomes a supervisor: it binds the
port once and uvicorn's multiprocess supervisor hands that socket to N spawned processes, each
one a whole relay API (its own database pool, connection limits and, unless --no-dispatcher,
dispatcher; the claim lets any number of dispatchers share the queue). The supervisor prepares
the database before they start and passes them its URL and the admin token, so there is one
embedded PostgreSQL, migrated once, whichever process answers.

A process that dies while serving is replaced; one that fails to start stops them all, and
`relay serve` exits 1. SIGTERM or SIGINT stops every process gracefully (each drains within
RELAY_SHUTDOWN_GRACE), then the supervisor; SIGHUP replaces the processes one by one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from relay.app import create_app
from relay.core.heap import settle_startup_objects
from relay.core.logging import configure_logging, get_logger
from relay.core.serving import guarded_protocol
from relay.core.settings import Settings, get_settings
from relay.observability.metrics import MULTIPROCESS_DIRECTORY_VARIABLE

log = get_logger(__name__)

# Seconds a worker has to answer the supervisor's ping, the first one included: a worker still
# importing the relay on a loaded machine took longer than uvicorn's 5 s, and was killed and
# replaced in a loop. Only a process whose every thread is stuck misses it once started.
WORKER_HEALTHCHECK_TIMEOUT = 60


def server_options(settings: Settings, *, host: str, port: int) -> dict[str, Any]:
    """uvicorn's settings, the same in a lone `relay serve` and in each of its workers."""
    return {
        "host": host,
        "port": port,
        # uvicorn's own handlers would write plain text; its lines go through the relay's
        # logging instead (see configure_logging).
        "log_config": None,
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": int(settings.shutdown_grace) or None,
    }


def worker_options(settings: Settings, *, host: str, port: int, workers: int) -> dict[str, Any]:
    """uvicorn's settings for `relay serve --workers`: one process's, and the supervisor's."""
    return {
        **server_options(settings, host=host, port=port),
        "workers": workers,
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK_TIMEOUT,
    }


class WorkerConfig(uvicorn.Config):
    """What each API process is started with. uvicorn pickles it across to the spawned process,
    which cannot take an app or the protocol class (it is made per server); both are built
    there instead, when the server loads its configuration, from the same settings."""

    def __init__(
        self, *, database_url: str, admin_token: str, dispatcher: bool, **options: Any
    ) -> None:
        # Only a name here (uvicorn's workers take no app object); `load` builds the app.
        super().__init__("relay.app:create_app", **options)
        self.database_url = database_url
        self.admin_token = admin_token
        self.dispatcher = dispatcher

    def load(self) -> None:
        settings = get_settings()
        configure_logging(settings.log_level, settings.log_format)
        application = create_app(
            settings, database_url=self.database_url, run_dispatcher=self.dispatcher
        )
        application.state.admin_token = self.admin_token
        self.app = application
        # The protocol caps connections itself (RELAY_MAX_CONNECTIONS), answering in JSON; with
        # a connection book per class, so the limits count per process.
        self.http = guarded_protocol(settings)
        super().load()
        settle_startup_objects()


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, remembering whether it stopped because it was asked to: otherwise
    a process failed to start, and `relay serve` fails with it."""

    asked_to_stop = False

    def handle_int(self) -> None:
        self.asked_to_stop = True
        super().handle_int()

    def handle_term(self) -> None:
        self.asked_to_stop = True
        super().handle_term()

    def keep_subprocess_alive(self) -> None:
        before = [process.pid for process in self.processes]
        super().keep_subprocess_alive()
        for died, process in zip(before, self.processes, strict=True):
            if process.pid != died:
                # uvicorn says so at info level, below the level its lines are kept at.
                log.warning("api_process_replaced", died=died, pid=process.pid)


@contextmanager
def shared_metrics_directory() -> Iterator[str]:
    """A fresh directory, private to this run, where the workers keep their counters: a
    leftover file of an earlier run would add its counts to this one's."""
    directory = tempfile.mkdtemp(prefix="relay-metrics-")
    previous = os.environ.get(MULTIPROCESS_DIRECTORY_VARIABLE)
    # The spawned workers inherit it, before they import prometheus-client.
    os.environ[MULTIPROCESS_DIRECTORY_VARIABLE] = directory
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROCESS_DIRECTORY_VARIABLE, None)
        else:
            os.environ[MULTIPROCESS_DIRECTORY_VARIABLE] = previous
        shutil.rmtree(directory, ignore_errors=True)


def run_workers(config: WorkerConfig) -> bool:
    """Serves with `config.workers` processes until SIGTERM or SIGINT (True), or until one of
    them fails to start (False)."""
    socket = config.bind_socket()
    try:
        supervisor = _Supervisor(config, sockets=[socket])
        supervisor.run()
    finally:
        socket.close()
    return supervisor.asked_to_stop
