"""`relay serve` as a new user runs it: no RELAY_DATABASE_URL, no token, nothing installed."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.support.processes import RelayServer
from tests.support.relay import (
    create_routestripe_source,
    routestripe_batch,
    routestripe_signature,
    visit_event,
)


def _fresh_env(data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(RELAY_DATA_DIR=str(data_dir), RELAY_LOG_FORMAT="json")
    return env


async def _stop(relay: RelayServer) -> int:
    assert relay.process is not None
    relay.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        return await relay.process.wait()


@pytest.mark.timeout(240)
async def test_the_embedded_default_starts_serves_stops_and_keeps_its_token(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "relay.log"
    relay = RelayServer(_fresh_env(data_dir), log, dispatcher=True)
    try:
        await relay.start(within=120)
        token_file = data_dir / "admin-token"
        token = token_file.read_text().strip()
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        assert (data_dir / "postgres" / "postmaster.pid").exists()
        async with httpx.AsyncClient(
            base_url=relay.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            ready = await api.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["status"] == "ready"
            await create_routestripe_source(api)
            body = routestripe_batch([visit_event()])
            posted = await api.post(
                "/ingest/rs", content=body, headers={"X-Signature": routestripe_signature(body)}
            )
            assert posted.status_code == 200, posted.text
            assert posted.json()["accepted"] == 1
        assert await _stop(relay) == 0
    finally:
        await relay.kill()
    # The embedded server stopped with the last relay process that used it.
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    first_log = log.read_text()
    assert first_log.count(token) == 2  # printed once, in the sentence and the example request

    again = RelayServer(_fresh_env(data_dir), tmp_path / "again.log", dispatcher=False)
    try:
        await again.start(within=120)
        assert (data_dir / "admin-token").read_text().strip() == token
        async with httpx.AsyncClient(base_url=again.base_url) as api:
            events = await api.get("/v1/events", headers={"Authorization": f"Bearer {token}"})
            assert events.status_code == 200, events.text
            assert len(events.json()["data"]) == 1
        assert await _stop(again) == 0
    finally:
        await again.kill()
    assert token not in (tmp_path / "again.log").read_text()
