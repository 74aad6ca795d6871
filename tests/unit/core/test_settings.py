from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from relay.core.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[3] / ".env.example"


def documented_names() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*(RELAY_[A-Z0-9_]+)=", line)
        if match:
            names.add(match.group(1))
    return names


def test_every_setting_is_documented_in_env_example() -> None:
    fields = {f"RELAY_{name.upper()}" for name in Settings.model_fields}

    assert fields == documented_names()


def test_every_setting_has_a_description() -> None:
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]

    assert undocumented == []


def test_env_example_values_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.max_body_bytes == 5 * 1024 * 1024
    assert settings.secret_rotation_overlap.total_seconds() == 24 * 3600
    assert settings.disable_after.days == 5


def test_database_url_must_be_postgresql() -> None:
    with pytest.raises(ValidationError, match="PostgreSQL URL"):
        Settings(database_url="sqlite:///relay.db", _env_file=None)  # type: ignore[call-arg]


def test_a_lease_shorter_than_an_attempt_is_refused_with_what_to_set() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(dispatcher_lease=timedelta(seconds=25), delivery_timeout=15, db_connect_timeout=5)
    assert "RELAY_DISPATCHER_LEASE (25 s) must be at least RELAY_DELIVERY_TIMEOUT" in str(
        refused.value
    )
    assert "(26 s)" in str(refused.value)
    assert Settings(
        dispatcher_lease=timedelta(seconds=26), delivery_timeout=15, db_connect_timeout=5
    )
