"""What a real `relay serve` writes: JSON lines only when its output is not a terminal, its HTTP
server's lines included, and no line per malformed request above debug level."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.processes import RelayServer, relay_env

GARBAGE = [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GET / HTTP/9.9 nonsense\r\n\r\n"]


async def _send_garbage(port: int) -> bytes:
    """One connection that sends invalid HTTP twice and reads until the relay closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for chunk in GARBAGE:
            with contextlib.suppress(ConnectionError):
                writer.write(chunk)
                await writer.drain()
            await asyncio.sleep(0.1)
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.mark.timeout(120)
async def test_uvicorn_lines_are_json_debug_lines_at_most_once_per_connection(
    module_database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    # `auto`, the default: the output is a file, not a terminal.
    env = relay_env(module_database_url, tmp_path / "data", RELAY_LOG_LEVEL="debug")
    env["RELAY_LOG_FORMAT"] = "auto"
    log = tmp_path / "relay.log"
    relay = RelayServer(env, log, dispatcher=False)
    async with relay.running():
        answers = [await _send_garbage(relay.port) for _ in range(3)]
        async with httpx.AsyncClient(base_url=relay.base_url, timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200
        await asyncio.sleep(0.5)

    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 400 ")
    lines = log.read_bytes().splitlines()
    assert lines
    entries = []
    for line in lines:
        try:
            entries.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pytest.fail(f"a line that is not JSON: {line[:200]!r}")
    invalid = [entry for entry in entries if entry["event"] == "Invalid HTTP request received."]
    assert len(invalid) == len(answers)
    assert {entry["level"] for entry in invalid} == {"debug"}
    assert {entry["logger"] for entry in invalid} == {"uvicorn.error"}
