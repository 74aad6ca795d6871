from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Sequence

import pytest
import standardwebhooks.webhooks
import svix.webhooks
from hypothesis import given
from hypothesis import strategies as st

from relay.dispatcher.signing import generate_secret, mask_secret, secret_key_bytes, sign

BODY = '{"id":"evt_01","type":"order.completed","data":{"city":"Besançon"}}'.encode()
MSG_ID = "evt_01JDXYZ"

Verify = Callable[[str, bytes, dict[str, str]], None]


def verify_with_standardwebhooks(secret: str, body: bytes, headers: dict[str, str]) -> None:
    standardwebhooks.webhooks.Webhook(secret).verify(body, headers, json_parse=False)


def verify_with_svix(secret: str, body: bytes, headers: dict[str, str]) -> None:
    svix.webhooks.Webhook(secret).verify(body, headers)


VERIFIERS = pytest.mark.parametrize(
    "verify", [verify_with_standardwebhooks, verify_with_svix], ids=["standardwebhooks", "svix"]
)
REJECTED = (
    standardwebhooks.webhooks.WebhookVerificationError,
    svix.webhooks.WebhookVerificationError,
)


def signed_headers(secrets: Sequence[str], *, body: bytes = BODY) -> dict[str, str]:
    # The libraries only accept timestamps within five minutes of their clock, so sign with it.
    timestamp = int(time.time())
    return {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, msg_id=MSG_ID, timestamp=timestamp, body=body),
    }


def test_matches_the_published_svix_test_vector() -> None:
    signature = sign(
        ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body=b'{"test": 2432232314}',
    )

    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@VERIFIERS
def test_one_secret_verifies(verify: Verify) -> None:
    secret = generate_secret()

    verify(secret, BODY, signed_headers([secret]))


@VERIFIERS
def test_during_rotation_both_old_and_new_secret_verify(verify: Verify) -> None:
    new, old = generate_secret(), generate_secret()
    headers = signed_headers([new, old])

    verify(new, BODY, headers)
    verify(old, BODY, headers)


@VERIFIERS
def test_tampered_body_is_rejected(verify: Verify) -> None:
    secret = generate_secret()
    headers = signed_headers([secret])

    with pytest.raises(REJECTED):
        verify(secret, BODY.replace(b"order", b"route"), headers)


@VERIFIERS
def test_another_secret_is_rejected(verify: Verify) -> None:
    new, old = generate_secret(), generate_secret()
    headers = signed_headers([new, old])

    with pytest.raises(REJECTED):
        verify(generate_secret(), BODY, headers)


@VERIFIERS
def test_another_message_id_or_timestamp_is_rejected(verify: Verify) -> None:
    secret = generate_secret()
    headers = signed_headers([secret])

    with pytest.raises(REJECTED):
        verify(secret, BODY, headers | {"webhook-id": "evt_other"})
    with pytest.raises(REJECTED):
        verify(
            secret,
            BODY,
            headers | {"webhook-timestamp": str(int(headers["webhook-timestamp"]) - 1)},
        )


def test_signature_lists_one_v1_entry_per_secret_current_first() -> None:
    new, old = generate_secret(), generate_secret()

    both = sign([new, old], msg_id=MSG_ID, timestamp=1700000000, body=BODY)
    only_new = sign([new], msg_id=MSG_ID, timestamp=1700000000, body=BODY)
    only_old = sign([old], msg_id=MSG_ID, timestamp=1700000000, body=BODY)

    assert both == f"{only_new} {only_old}"
    assert only_new.startswith("v1,")
    assert len(base64.b64decode(only_new.removeprefix("v1,"), validate=True)) == 32


def test_signing_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one signing secret"):
        sign([], msg_id=MSG_ID, timestamp=1700000000, body=BODY)


def test_generated_secret_is_prefixed_base64_of_32_random_bytes() -> None:
    secret = generate_secret()

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert generate_secret() != secret


def test_secret_key_bytes_decodes_the_base64_after_the_prefix() -> None:
    key = bytes(range(24))
    encoded = base64.b64encode(key).decode()

    assert secret_key_bytes(f"whsec_{encoded}") == key
    assert secret_key_bytes(encoded) == key
    assert secret_key_bytes("whsec_" + base64.b64encode(b"\x01\x02").decode().rstrip("=")) == (
        b"\x01\x02"
    )


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("whsec_", "signing secret whsec_**** holds no key bytes"),
        ("whsec_not base64!", "signing secret whsec_**** is not whsec_ followed by base64"),
        ("whsec_a", "signing secret whsec_**** is not whsec_ followed by base64"),
        ("whsec_====x", "signing secret whsec_**** is not whsec_ followed by base64"),
        (
            "whsec_" + "A" * 40 + "!",
            "signing secret whsec_****AAA! is not whsec_ followed by base64",
        ),
    ],
)
def test_malformed_secret_is_refused_without_showing_it(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        secret_key_bytes(secret)


def test_mask_keeps_prefix_and_shows_the_last_four_characters() -> None:
    secret = generate_secret()

    assert mask_secret(secret) == f"whsec_****{secret[-4:]}"


@pytest.mark.parametrize(
    ("secret", "masked"),
    [
        ("whsec_short", "whsec_****"),
        ("", "whsec_****"),
        ("whsec_", "whsec_****"),
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_****LaSw"),
    ],
)
def test_mask_reveals_nothing_of_short_or_empty_secrets(secret: str, masked: str) -> None:
    assert mask_secret(secret) == masked


@given(st.text(max_size=80))
def test_mask_reveals_at_most_four_characters(secret: str) -> None:
    masked = mask_secret(secret)
    revealed = masked.removeprefix("whsec_****")

    assert masked.startswith("whsec_****")
    assert len(revealed) <= 4
    assert secret.endswith(revealed)
