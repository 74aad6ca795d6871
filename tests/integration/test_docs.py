"""Every fenced `sh` block of README.md and docs/*.md, run by bash against a real `relay serve`.

The blocks of all documents run in one shell, README first, so a document may use what an
earlier one set up (the README's walk-through exports RELAY_URL and sets $SOURCE, $EVENT...). A
block that needs what a test cannot have is marked `<!-- doc-test: skip (reason) -->` on the
line before it; there may only be a few of those.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support.processes import RelayServer, relay_env

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_SKIP = re.compile(r"^<!--\s*doc-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->$")
_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
# The quick start's `make run` / `make test` and `make bench`: a test cannot run those inside
# the test suite.
MOST_SKIPPED = 2
RUN_WITHIN = 240.0


@dataclass(frozen=True)
class Block:
    where: str
    code: str
    skip: str | None


def shell_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1
        if fence.group("lang") != "sh":
            continue
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        marker = _SKIP.match(previous.strip())
        where = f"{path.relative_to(ROOT)}:{start + 1}"
        blocks.append(Block(where, "\n".join(body), marker.group("reason") if marker else None))
    return blocks


ALL_BLOCKS = [block for path in DOCUMENTS for block in shell_blocks(path)]


def test_the_documents_have_shell_examples_and_few_are_skipped() -> None:
    assert len(ALL_BLOCKS) >= 8, [block.where for block in ALL_BLOCKS]
    skipped = [block for block in ALL_BLOCKS if block.skip is not None]
    assert len(skipped) <= MOST_SKIPPED, [(block.where, block.skip) for block in skipped]
    # Examples written as console sessions would not run: they must be plain commands.
    for block in ALL_BLOCKS:
        assert not block.code.lstrip().startswith("$ "), block.where


def script(blocks: list[Block]) -> str:
    parts = ["set -euo pipefail"]
    for block in blocks:
        if block.skip is None:
            parts.append(f"printf '\\n>>> %s\\n' '{block.where}' >&2")
            parts.append(block.code)
    parts.append("printf '\\n>>> all blocks ran\\n' >&2")
    return "\n".join(parts) + "\n"


@pytest.fixture
async def relay_server(module_database_url: str, tmp_path: Path, engine: Any) -> Any:
    env = relay_env(module_database_url, tmp_path / "relay-data", RELAY_LOG_LEVEL="warning")
    server = RelayServer(env, tmp_path / "serve.log", dispatcher=True)
    async with server.running():
        yield server


async def test_every_shell_example_runs_against_a_live_relay(
    relay_server: RelayServer, tmp_path: Path
) -> None:
    workdir = tmp_path / "reader"
    workdir.mkdir()
    # A curl that exits non-zero on an HTTP error, so an example the relay refuses fails here.
    (workdir / ".curlrc").write_text("fail-with-body\nsilent\nshow-error\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(
        HOME=str(workdir),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        RELAY_URL=relay_server.base_url,
        RELAY_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    output = tmp_path / "docs.out"
    with output.open("wb") as handle:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script(ALL_BLOCKS),
            cwd=workdir,
            env=env,
            stdout=handle,
            stderr=handle,
            start_new_session=True,
        )
    try:
        async with asyncio.timeout(RUN_WITHIN):
            code = await process.wait()
    finally:
        # Whatever a block left running in the background (a subscriber) goes with the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    log = output.read_text()
    ran = [line for line in log.splitlines() if line.startswith(">>> ")]
    assert code == 0, f"the example after {ran[-1] if ran else 'the start'} failed:\n{log[-4000:]}"
    assert ran[-1] == ">>> all blocks ran", log[-4000:]
