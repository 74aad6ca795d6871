"""`relay listen`: the Standard Webhooks check on what it receives."""

from __future__ import annotations

from relay.client.listen import verdict
from relay.dispatcher.signing import generate_secret, sign

BODY = b'{"id": "evt_1", "type": "order.created"}'


def _headers(secret: str, timestamp: int) -> dict[str, str]:
    return {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign([secret], msg_id="evt_1", timestamp=timestamp, body=BODY),
    }


def test_signatures_are_checked_against_the_secret_and_the_clock() -> None:
    secret, other = generate_secret(), generate_secret()
    now = 1_700_000_000
    assert verdict(secret, _headers(secret, now), BODY, now=now) == "verified"
    assert verdict(None, _headers(secret, now), BODY, now=now) == "unverified"
    assert verdict(other, _headers(secret, now), BODY, now=now).startswith("bad signature")
    assert verdict(secret, _headers(secret, now), BODY + b" ", now=now).startswith("bad signature")
    assert "5 minutes" in verdict(secret, _headers(secret, now - 600), BODY, now=now)
    assert verdict(secret, {}, BODY, now=now).startswith("not signed")
