"""A benchmark run that is killed takes the processes it started with it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

# A parent that starts a child the way a run does, prints its pid, and dies at once without
# stopping it (as a run killed with SIGKILL would).
PARENT = """
import os, sys
from pathlib import Path
from bench.procs import Process, base_env
child = Process("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"],
                env=base_env(), logs=Path(sys.argv[1]))
print(child.pid, flush=True)
os._exit(0)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_child_dies_with_the_run_that_started_it(tmp_path: Path) -> None:
    parent = subprocess.run(
        [sys.executable, "-c", PARENT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    child = int(parent.stdout.strip())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        psutil.Process(child).kill()
    assert not alive, "the child outlived the run that started it"
