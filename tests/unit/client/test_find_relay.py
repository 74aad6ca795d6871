"""One way to find the relay and its token, for `relay serve` and every CLI command alike."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relay.client.http import ApiError, find_relay
from relay.core.settings import Settings


@pytest.fixture(autouse=True)
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of our own with no RELAY_* variables, as a fresh shell in a fresh clone."""
    for name in list(os.environ):
        if name.startswith("RELAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_port_and_host_from_env_file_or_environment(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert find_relay(None, None).url == "http://127.0.0.1:8080"
    (here / ".env").write_text("RELAY_PORT=18080\n")
    assert find_relay(None, None).url == "http://127.0.0.1:18080"
    monkeypatch.setenv("RELAY_HOST", "0.0.0.0")
    monkeypatch.setenv("RELAY_PORT", "18081")
    assert find_relay(None, None).url == "http://127.0.0.1:18081"


def test_url_order(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_PORT", "18080")
    monkeypatch.setenv("RELAY_PUBLIC_URL", "https://relay.example.com/")
    assert find_relay(None, None).url == "https://relay.example.com"
    (here / ".env").write_text("RELAY_URL=http://10.0.0.5:9000\n")
    assert find_relay(None, None).url == "http://10.0.0.5:9000"
    assert find_relay("http://127.0.0.1:7000", None).url == "http://127.0.0.1:7000"


def test_the_server_announces_the_same_url() -> None:
    settings = Settings(port=18080)
    assert settings.relay_url() == "http://127.0.0.1:18080"
    assert settings.relay_url(host="::", port=9) == "http://[::1]:9"


def test_the_token_file_only_goes_to_the_embedded_relay(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (here / ".relay").mkdir()
    (here / ".relay" / "admin-token").write_text("rla_stale\n")
    assert find_relay(None, None).token == "rla_stale"
    assert find_relay("http://127.0.0.1:8080", None).token is None
    monkeypatch.setenv("RELAY_URL", "http://elsewhere:8080")
    assert find_relay(None, None).token is None
    monkeypatch.delenv("RELAY_URL")
    monkeypatch.setenv("RELAY_DATABASE_URL", "postgresql://relay@db/relay")
    assert find_relay(None, None).token is None
    (here / ".env").write_text("RELAY_ADMIN_TOKEN=from-dotenv\n")
    assert find_relay(None, None).token == "from-dotenv"
    assert find_relay(None, "from-flag").token == "from-flag"


def test_bad_settings_are_one_line_saying_which(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_PORT", "eighty")
    with pytest.raises(ApiError, match="RELAY_PORT"):
        find_relay(None, None)
