"""Standard Webhooks signatures on outgoing deliveries, and the secrets they are made with.

A secret is `whsec_` + base64 of random bytes; the key is those bytes. The `webhook-signature`
header holds `v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">` once per secret, so
during a rotation a receiver holding either the new or the old secret accepts the delivery.
Receivers can verify with the `standardwebhooks` or `svix` libraries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from secrets import token_bytes

from relay.core.masking import masked

# The format marker of every secret, not a secret itself.
SECRET_PREFIX = "whsec_"  # noqa: S105
SECRET_BYTES = 32
MASK = "****"


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(token_bytes(SECRET_BYTES)).decode("ascii")


def mask_secret(secret: str) -> str:
    """`whsec_****` and the last four characters: enough to tell secrets apart, no more."""
    return SECRET_PREFIX + masked(secret.removeprefix(SECRET_PREFIX), mask=MASK)


def secret_key_bytes(secret: str) -> bytes:
    """The HMAC key in a secret; missing base64 padding is tolerated, as the libraries do."""
    body = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(
            f"signing secret {mask_secret(secret)} is not {SECRET_PREFIX} followed by base64"
        ) from exc
    if not key:
        raise ValueError(f"signing secret {mask_secret(secret)} holds no key bytes")
    return key


def sign(secrets: Sequence[str], *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one `v1,` signature per secret, current secret first."""
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    signed_content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1,"
        + base64.b64encode(
            hmac.new(secret_key_bytes(secret), signed_content, hashlib.sha256).digest()
        ).decode("ascii")
        for secret in secrets
    )
