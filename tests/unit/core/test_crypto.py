from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.dialects import postgresql

from relay.core.crypto import (
    EncryptedJSON,
    EncryptedText,
    EncryptionError,
    Keyring,
    install_keyring,
    load_keyring,
    new_key,
)
from relay.core.settings import Settings

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", _env_file=None, **values)  # type: ignore[call-arg]


def test_first_start_generates_an_owner_only_key_then_reuses_it(tmp_path: Path) -> None:
    keyring, created = load_keyring(_settings(tmp_path))
    again, created_again = load_keyring(_settings(tmp_path))

    assert (created, created_again) == (True, False)
    path = tmp_path / "data" / "encryption-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert again.decrypt(keyring.encrypt("whsec_x")) == "whsec_x"
    Fernet(path.read_text().strip())


def test_configured_keys_win_and_write_nothing(tmp_path: Path) -> None:
    key = new_key()
    keyring, created = load_keyring(_settings(tmp_path, encryption_key=key))

    assert created is False
    assert not (tmp_path / "data").exists()
    assert Keyring([key]).decrypt(keyring.encrypt("s")) == "s"


@pytest.mark.parametrize("database_url", [None, "postgresql://db.internal/relay"])
def test_production_without_a_key_is_refused(tmp_path: Path, database_url: str | None) -> None:
    settings = _settings(tmp_path, env="production", database_url=database_url)

    with pytest.raises(EncryptionError) as refused:
        load_keyring(settings)

    assert "RELAY_ENCRYPTION_KEY is required when RELAY_ENV=production" in str(refused.value)
    assert "relay encryption new-key" in str(refused.value)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("value", "position"),
    [("not-a-key", 1), (f"{Fernet.generate_key().decode()},short", 2), ("A" * 22 + "==", 1)],
)
def test_a_malformed_key_is_named_by_position(value: str, position: int) -> None:
    with pytest.raises(EncryptionError) as refused:
        Keyring.parse(value)

    assert f"encryption key #{position} is not a Fernet key" in str(refused.value)


def test_an_empty_key_list_is_refused() -> None:
    with pytest.raises(EncryptionError, match="at least one encryption key"):
        Keyring.parse(" , ")


def test_newest_key_encrypts_every_key_decrypts_rotate_moves_to_the_newest() -> None:
    old, new = new_key(), new_key()
    under_old = Keyring([old]).encrypt("client-secret")
    both = Keyring.parse(f"{new}, {old}")

    assert both.decrypt(under_old) == "client-secret"
    under_new = both.encrypt("client-secret")
    assert Keyring([new]).decrypt(under_new) == "client-secret"
    with pytest.raises(EncryptionError):
        Keyring([old]).decrypt(under_new)
    rotated = both.rotate(under_old)
    assert Keyring([new]).decrypt(rotated) == "client-secret"
    with pytest.raises(EncryptionError, match="cannot be decrypted"):
        Keyring([new]).rotate(Keyring([new_key()]).encrypt("x"))


def test_ciphertext_is_authenticated_and_randomised() -> None:
    keyring = Keyring([new_key()])
    token = keyring.encrypt("whsec_same")

    assert token != keyring.encrypt("whsec_same")
    assert "whsec_same" not in token
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    for bad in (tampered, "whsec_same", ""):
        with pytest.raises(EncryptionError, match="cannot be decrypted"):
            keyring.decrypt(bad)


def test_column_types_encrypt_on_write_and_refuse_cleartext_on_read() -> None:
    keyring = Keyring([new_key()])
    install_keyring(keyring)
    text_column, json_column = EncryptedText(), EncryptedJSON()

    stored = text_column.process_bind_param("whsec_abc", DIALECT)
    assert stored is not None
    assert keyring.decrypt(stored) == "whsec_abc"
    assert text_column.process_result_value(stored, DIALECT) == "whsec_abc"
    assert text_column.process_bind_param(None, DIALECT) is None

    document = {"current": {"type": "hmac", "secret": "s" * 20}}
    sealed = json_column.process_bind_param(document, DIALECT)
    assert isinstance(sealed, str)
    assert "s" * 20 not in sealed
    assert json.loads(keyring.decrypt(sealed)) == document
    assert json_column.process_result_value(sealed, DIALECT) == document
    with pytest.raises(EncryptionError, match="in the clear"):
        json_column.process_result_value(document, DIALECT)
    with pytest.raises(EncryptionError):
        text_column.process_result_value("whsec_in_the_clear", DIALECT)
