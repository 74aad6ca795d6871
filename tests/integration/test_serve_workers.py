"""`relay serve --workers N` as real processes: every worker answers on the one port, /metrics
sums the counters of all of them, a worker that dies is replaced, SIGHUP replaces them all, and
SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import RELAY, RelayServer, relay_env
from tests.support.relay import create_routestripe_source, post_routestripe, visit_event
from tests.support.subscriber import eventually


def _log_entries(log: Path) -> list[dict[str, object]]:
    entries = []
    for line in log.read_bytes().splitlines():
        if line.startswith(b"{"):
            entries.append(orjson.loads(line))
    return entries


def _metrics_directory(log: Path) -> Path:
    (listening,) = [entry for entry in _log_entries(log) if entry["event"] == "relay_listening"]
    return Path(str(listening["metrics_directory"]))


def _children_of(parent: int, *, marked: bytes = b"") -> set[int]:
    """The processes `parent` started whose command line holds `marked`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; the fields follow the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and marked in command:
            found.add(int(entry.name))
    return found


def _workers_of(parent: int) -> set[int]:
    """The API processes `relay serve` spawned (not multiprocessing's resource tracker)."""
    return _children_of(parent, marked=b"spawn_main")


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _accepted_per_process(directory: Path, scratch: Path) -> dict[int, float]:
    """Each process's own count of accepted webhooks, read from its file alone."""
    counts: dict[int, float] = {}
    for file in directory.glob("counter_*.db"):
        pid = int(file.stem.removeprefix("counter_"))
        alone = scratch / str(pid)
        alone.mkdir(exist_ok=True)
        shutil.copy(file, alone / file.name)
        for metric in MultiProcessCollector(None, path=str(alone)).collect():  # type: ignore[no-untyped-call]
            for sample in metric.samples:
                if sample.name == "relay_inbound_requests_total" and (
                    sample.labels.get("verdict") == "accepted"
                ):
                    counts[pid] = counts.get(pid, 0.0) + sample.value
    return counts


async def _accepted_on_metrics(relay: RelayServer) -> float:
    async with relay.admin(timeout=10) as api:
        response = await api.get("/metrics")
    assert response.status_code == 200, response.text
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "relay_inbound_requests_total" and (
                sample.labels.get("verdict") == "accepted"
            ):
                total += sample.value
    return total


async def _post_until_counted_by(
    relay: RelayServer, pids: set[int], directory: Path, scratch: Path, *, within: float
) -> int:
    """Posts one webhook per new connection until each of `pids` has counted one; how many.
    A worker just started may not accept yet: the bound is time, not a number of webhooks."""
    posted = 0
    counted: dict[int, float] = {}
    try:
        async with asyncio.timeout(within):
            while not all(counted.get(pid, 0) > 0 for pid in pids):
                # A new connection each time: whichever worker accepts it first answers.
                async with httpx.AsyncClient(base_url=relay.base_url, timeout=10) as http:
                    answer = await post_routestripe(http, [visit_event()])
                assert answer.status_code == 200, answer.text
                posted += 1
                counted = _accepted_per_process(directory, scratch)
    except TimeoutError:
        raise AssertionError(f"{posted} webhooks, not all to {pids}: {counted}") from None
    return posted


@pytest.mark.timeout(420)
async def test_two_workers_answer_sum_their_counters_are_replaced_and_stop_on_sigterm(
    module_database_url: str, tmp_path: Path
) -> None:
    env = relay_env(module_database_url, tmp_path / "data", RELAY_SHUTDOWN_GRACE="2")
    log = tmp_path / "relay.log"
    relay = RelayServer(env, log, dispatcher=True, workers=2)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    try:
        await relay.start()
        assert relay.process is not None
        serve = relay.process.pid
        await eventually(lambda: len(_workers_of(serve)) == 2, within=30)
        workers = _workers_of(serve)
        directory = _metrics_directory(log)
        assert directory.is_dir()
        async with relay.admin(timeout=10) as api:
            await create_routestripe_source(api)

        posted = await _post_until_counted_by(relay, workers, directory, scratch, within=60)
        per_process = _accepted_per_process(directory, scratch)
        assert set(per_process) == workers
        assert sum(per_process.values()) == posted
        assert await _accepted_on_metrics(relay) == posted

        # Each worker runs a dispatcher of its own.
        started = [e for e in _log_entries(log) if e["event"] == "dispatcher_started"]
        assert {int(str(e["worker"]).split(":")[1]) for e in started} == workers

        # A worker that dies is replaced; what it counted still counts.
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        await eventually(
            lambda: len(_workers_of(serve)) == 2 and killed not in _workers_of(serve), within=60
        )
        (replacement,) = _workers_of(serve) - workers
        posted += await _post_until_counted_by(relay, {replacement}, directory, scratch, within=60)
        assert await _accepted_on_metrics(relay) == posted

        # SIGHUP replaces every worker, one at a time: the one replaced stops only once its
        # replacement serves, so there are never fewer than two.
        before = _workers_of(serve)
        relay.process.send_signal(signal.SIGHUP)
        fewest = 2

        def all_replaced() -> bool:
            nonlocal fewest
            now = _workers_of(serve)
            fewest = min(fewest, len(now))
            return len(now) == 2 and not now & before

        # Each replacement has the supervisor's 60 s health check to become ready.
        await eventually(all_replaced, within=150)
        assert fewest >= 2
        async with relay.admin(timeout=10) as api:
            assert (await api.get("/readyz")).status_code == 200

        survivors = _workers_of(serve)
        started_by_serve = _children_of(serve)
        relay.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await relay.process.wait() == 0
        for pid in survivors:
            assert not _alive(pid), f"worker {pid} outlived relay serve"
        # Nothing else it started is left either (multiprocessing's resource tracker ends when
        # it reads the end of its pipe, a moment after).
        await eventually(lambda: not any(_alive(pid) for pid in started_by_serve), within=10)
        assert not directory.exists()
        stopped = [e for e in _log_entries(log) if e["event"] == "dispatcher_stopped"]
        assert {int(str(e["worker"]).split(":")[1]) for e in stopped} >= survivors
    finally:
        await relay.kill()


@pytest.mark.parametrize(
    ("arguments", "variables", "says"),
    [
        (["--workers", "0"], {}, "--workers"),
        ([], {"RELAY_WORKERS": "0"}, "RELAY_WORKERS: Input should be greater than or equal to 1"),
        ([], {"RELAY_WORKERS": "many"}, "RELAY_WORKERS: Input should be a valid integer"),
    ],
)
def test_a_worker_count_below_one_is_refused_with_what_to_fix(
    tmp_path: Path, arguments: list[str], variables: dict[str, str], says: str
) -> None:
    env = relay_env("postgresql://nobody@127.0.0.1:1/none", tmp_path / "data", **variables)
    result = subprocess.run(
        [RELAY, "serve", *arguments], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(240)
async def test_workers_share_one_embedded_postgres_that_stops_with_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(RELAY_DATA_DIR=str(data_dir), RELAY_LOG_FORMAT="json", RELAY_SHUTDOWN_GRACE="2")
    log = tmp_path / "relay.log"
    relay = RelayServer(env, log, dispatcher=True, workers=2)
    try:
        await relay.start(within=120)
        assert relay.process is not None
        serve = relay.process.pid
        await eventually(lambda: len(_workers_of(serve)) == 2, within=60)
        token = (data_dir / "admin-token").read_text().strip()
        async with httpx.AsyncClient(
            base_url=relay.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            for _ in range(10):
                ready = await api.get("/readyz", headers={"Connection": "close"})
                assert ready.status_code == 200, ready.text
        await eventually(
            lambda: len([e for e in _log_entries(log) if e["event"] == "dispatcher_started"]) == 2,
            within=60,
        )
        relay.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            assert await relay.process.wait() == 0
    finally:
        await relay.kill()
    # Started once, by `relay serve` itself, and stopped with it.
    entries = _log_entries(log)
    assert [e["event"] for e in entries].count("embedded_postgres_ready") == 1
    assert [e["event"] for e in entries].count("migrations_applied") == 1
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert log.read_text().count(token) == 2  # announced once, by the parent


_FAILS_TO_START = """
import sys

from uvicorn.config import STARTUP_FAILURE

from relay.serving import WorkerConfig, run_workers


class FailsToStart(WorkerConfig):
    def load(self) -> None:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    config = FailsToStart(
        database_url="postgresql://nobody@127.0.0.1:1/none",
        admin_token="unused",
        dispatcher=False,
        workers=2,
        host="127.0.0.1",
        port=0,
        log_config=None,
    )
    print("stopped" if run_workers(config) else "failed")
"""


def test_a_worker_that_fails_to_start_stops_the_supervisor_which_says_so(tmp_path: Path) -> None:
    script = tmp_path / "fails_to_start.py"
    script.write_text(_FAILS_TO_START)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # Before it, the log lines of the supervisor (not configured here: on stdout).
    assert result.stdout.splitlines()[-1] == "failed"
