"""What a genuine sender puts on a request for a source's credentials: the other side of
`verify`, so the relay can send itself a test webhook that passes the real check."""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import assert_never

import jwt

from relay.verification.schemes import (
    BasicVerification,
    HeaderTokenVerification,
    HmacVerification,
    JwtVerification,
    NoVerification,
    OAuth2Verification,
    QueryTokenVerification,
    Scheme,
)
from relay.verification.verify import PARTNER_ID_HEADER, issue_oauth_token

# A test token only has to outlive the one request it is made for.
TEST_TOKEN_LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Header names are lower-case, as the ingest sees them."""

    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


def _utf8(value: str) -> bytes:
    # As `verify` encodes what it compares: any str, lone surrogates too.
    return value.encode("utf-8", "surrogatepass")


def _bearer_or_bare(header: str, token: str) -> dict[str, str]:
    if header.lower() == "authorization":
        return {"authorization": f"Bearer {token}"}
    return {header.lower(): token}


def credentials_for(
    scheme: Scheme, body: bytes, *, source_slug: str, now: datetime, default_ttl: timedelta
) -> Credentials:
    match scheme:
        case HmacVerification():
            digest = hmac.digest(_utf8(scheme.secret), body, scheme.algorithm)
            text = digest.hex() if scheme.encoding == "hex" else base64.b64encode(digest).decode()
            headers = {scheme.header.lower(): f"{scheme.prefix or ''}{text}"}
            if scheme.partner_id is not None:
                headers[PARTNER_ID_HEADER.lower()] = scheme.partner_id
            return Credentials(headers=headers)
        case BasicVerification():
            pair = _utf8(f"{scheme.username}:{scheme.password}")
            return Credentials(
                headers={"authorization": f"Basic {base64.b64encode(pair).decode()}"}
            )
        case HeaderTokenVerification():
            return Credentials(headers={scheme.header.lower(): scheme.token})
        case QueryTokenVerification():
            return Credentials(query={scheme.param: scheme.token})
        case JwtVerification():
            issued_at = int(now.timestamp())
            claims: dict[str, object] = {
                "iat": issued_at,
                "exp": issued_at + int(TEST_TOKEN_LIFETIME.total_seconds()),
            }
            if scheme.audience is not None:
                claims["aud"] = scheme.audience
            if scheme.issuer is not None:
                claims["iss"] = scheme.issuer
            token = jwt.encode(claims, scheme.secret, algorithm=scheme.algorithms[0])
            return Credentials(headers=_bearer_or_bare(scheme.header, token))
        case OAuth2Verification():
            token, _ = issue_oauth_token(
                scheme, source_slug=source_slug, now=now, default_ttl=default_ttl
            )
            return Credentials(headers={"authorization": f"Bearer {token}"})
        case NoVerification():
            return Credentials()
        case _:
            assert_never(scheme)
