from __future__ import annotations

import stat
from pathlib import Path

from relay.apikeys.auth import load_or_create_admin_token
from relay.core.settings import Settings


def test_first_start_generates_an_owner_only_token_then_reuses_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]

    token, created = load_or_create_admin_token(settings)
    again, created_again = load_or_create_admin_token(settings)

    assert created is True
    assert created_again is False
    assert again == token
    assert len(token) >= 40
    mode = stat.S_IMODE((tmp_path / "data" / "admin-token").stat().st_mode)
    assert mode == 0o600


def test_configured_token_wins_and_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        admin_token="configured-token-0123456789",  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )

    assert load_or_create_admin_token(settings) == ("configured-token-0123456789", False)
    assert not (tmp_path / "data").exists()
