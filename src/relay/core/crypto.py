"""Encryption at rest for source credentials and subscription signing secrets.

Values are Fernet tokens (AES-128-CBC with an HMAC-SHA256 tag, from `cryptography`) under a key
list (`MultiFernet`): the first key encrypts, every key decrypts. A key is rotated by putting a
new one first in RELAY_ENCRYPTION_KEY, running `relay encryption rotate` (which rewrites every
row under the new key), then dropping the old one.

The column types below encrypt on write and decrypt on read, so no code path can store a secret
in the clear by forgetting to call something. They have no request or session to carry a key,
so each process installs its keyring once, from its settings, before it touches the database:
`create_engine` does it, as every process makes its engine from its settings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from relay.core.logging import get_logger
from relay.core.secretfile import read_or_create_owner_only
from relay.core.settings import Settings, get_settings

log = get_logger(__name__)

ENCRYPTION_KEY_FILE = "encryption-key"
# Decrypted tokens kept per keyring (see Keyring.__init__).
DECRYPTED_KEPT = 4096


class EncryptionError(Exception):
    """The keyring is missing or cannot decrypt a stored value; the message says what to do."""


class Keyring:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise EncryptionError("at least one encryption key is needed")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.strip()))
            except ValueError as exc:
                raise EncryptionError(
                    f"encryption key #{position} is not a Fernet key (32 url-safe base64-encoded "
                    "bytes); make one with `relay encryption new-key`"
                ) from exc
        self._fernet = MultiFernet(fernets)
        # A token always decrypts to the same text under the same keys, and the same few
        # (each subscription's secret and headers) are read with every claimed delivery: a
        # third of the claim's Python time was spent decrypting them again.
        self._decrypted = lru_cache(maxsize=DECRYPTED_KEPT)(self._decrypt)

    @classmethod
    def parse(cls, value: str) -> Keyring:
        return cls([part for part in value.split(",") if part.strip()])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        return self._decrypted(token)

    def _decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise EncryptionError(
                "a stored secret cannot be decrypted with any key in RELAY_ENCRYPTION_KEY: "
                "the key that encrypted it was removed, or the row was written in the clear "
                "or altered"
            ) from exc

    def rotate(self, token: str) -> str:
        """The same secret, encrypted under the newest key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError) as exc:
            raise EncryptionError(
                "a stored secret cannot be decrypted with any key in RELAY_ENCRYPTION_KEY"
            ) from exc


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def load_keyring(settings: Settings) -> tuple[Keyring, bool]:
    """The configured keys, else the data directory's generated key; and whether it is new.

    A production relay does not generate a key: it would sit next to the data it protects (or
    on a disk the database's backups never see, where losing it loses every secret), so the
    operator has to choose where the key lives.
    """
    if settings.encryption_key is not None:
        return Keyring.parse(settings.encryption_key.get_secret_value()), False
    if settings.env == "production":
        raise EncryptionError(
            "RELAY_ENCRYPTION_KEY is required when RELAY_ENV=production: make a key with "
            "`relay encryption new-key`, keep it in your secret store and set "
            "RELAY_ENCRYPTION_KEY to it"
        )
    path: Path = settings.data_dir / ENCRYPTION_KEY_FILE
    key, created = read_or_create_owner_only(path, new_key)
    if created:
        log.warning("encryption_key_generated", path=str(path))
    return Keyring([key]), created


_installed: Keyring | None = None


def install_keyring(keyring: Keyring) -> None:
    global _installed
    _installed = keyring


def install_from_settings(settings: Settings) -> Keyring:
    keyring, _ = load_keyring(settings)
    install_keyring(keyring)
    return keyring


def installed_keyring() -> Keyring:
    if _installed is None:
        raise EncryptionError(
            "no encryption keyring installed in this process; call install_keyring() at startup"
        )
    return _installed


def migration_keyring() -> Keyring:
    """The keyring a migration encrypts with: the running relay's, or, under the bare
    `alembic` command, the one the settings name."""
    if _installed is not None:
        return _installed
    return install_from_settings(get_settings())


class EncryptedText(TypeDecorator[str]):
    """A text column holding a Fernet token; Python code sees the plaintext."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else installed_keyring().encrypt(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else decrypt_text(value)


def decrypt_text(token: str) -> str:
    """The text a Fernet token of the installed keyring holds."""
    return installed_keyring().decrypt(token)


def decrypt_json(token: str) -> Any:
    """The JSON document a Fernet token of the installed keyring holds."""
    return json.loads(installed_keyring().decrypt(token))


class EncryptedJSON(TypeDecorator[dict[str, Any]]):
    """A JSONB column holding one JSON string, the Fernet token of the whole document."""

    impl = JSONB
    cache_ok = True

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> str | None:
        return None if value is None else installed_keyring().encrypt(json.dumps(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, Any] | None:
        return decrypt_json_column(value)


def decrypt_json_column(value: Any) -> dict[str, Any] | None:
    """An EncryptedJSON column's document, from the value the driver read."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise EncryptionError("an encrypted JSON column holds a document in the clear")
    document: dict[str, Any] = decrypt_json(value)
    return document
