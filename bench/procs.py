"""The processes of a benchmark run: starting them, waiting until they listen, sampling their
memory, and stopping them (only the ones this run started, by their own pid). A run that is
killed takes them with it: an orphaned worker left spinning would skew every later run."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# prctl(2): the signal the kernel sends this process when the one that started it dies.
_PR_SET_PDEATHSIG = 1


# Looked up here, not in the child: between fork and exec the child only makes the call.
_prctl: Any = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    # SIGTERM, not SIGKILL: `relay serve --workers` then stops its own workers too.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def relay_executable() -> str:
    candidate = Path(sys.executable).parent / "relay"
    if not candidate.exists():
        raise SystemExit(f"no `relay` command next to {sys.executable}: run `make install` first")
    return str(candidate)


class Process:
    """A child process whose output goes to a log file (shown when it fails)."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(  # noqa: S603 - our own commands, no shell
            args,
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check_running(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_listening(self, port: int, *, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.check_running()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {port} within {within:g} s")

    def stop(self, *, grace: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


class MemorySampler:
    """Samples the resident memory of a process and its children in a background thread.

    The children are looked up once a second, not at every sample: finding them reads every
    process on the machine, and four samplers doing that 20 times a second took a third of a
    core from the processes they measured."""

    def __init__(self, pid: int, *, interval: float = 0.05, children_interval: float = 1.0) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.children_interval = children_interval
        self.tree: list[psutil.Process] = [self.process]
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        total = 0
        for process in self.tree:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def _run(self) -> None:
        children_at = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= children_at:
                with contextlib.suppress(psutil.Error):
                    self.tree = [self.process, *self.process.children(recursive=True)]
                children_at = time.monotonic() + self.children_interval
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic(), self._rss()))
            self._stop.wait(self.interval)

    def peak_mb(self, start: float = 0.0, end: float = float("inf")) -> float:
        inside = [rss for moment, rss in self.samples if start <= moment <= end]
        return max(inside, default=0) / 2**20

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def base_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(extra)
    return env


class CpuUse:
    """CPU seconds (user and system) that named processes, and PostgreSQL's server processes
    together, use between `start()` and `stop()`: where a figure's CPU goes on a machine whose
    cores every process shares."""

    def __init__(self, **pids: int) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._started: dict[str, float] = {}
        self._postgres_started: dict[int, float] = {}

    def start(self) -> None:
        self._started = {name: _cpu_seconds(process) for name, process in self.processes.items()}
        self._postgres_started = _postgres_cpu()

    def stop(self) -> dict[str, float]:
        used = {
            name: _cpu_seconds(process) - self._started[name]
            for name, process in self.processes.items()
        }
        # A server process that began meanwhile (a new connection) counts in full; one that
        # ended meanwhile is lost, which costs an idle pool's connections nothing.
        used["postgres"] = sum(
            seconds - self._postgres_started.get(pid, 0.0)
            for pid, seconds in _postgres_cpu().items()
        )
        return used


def _cpu_seconds(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        times = process.cpu_times()
        return float(times.user + times.system)
    return 0.0


def _postgres_cpu() -> dict[int, float]:
    return {
        process.pid: _cpu_seconds(process)
        for process in psutil.process_iter(["name"])
        if process.info["name"] == "postgres"
    }
