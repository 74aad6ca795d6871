"""Checks an inbound request against its source's credentials, and issues OAuth 2.0 tokens.

Every comparison of a presented credential is constant-time, and no reason given back ever holds
a secret or the value the sender presented: reasons end up in responses and the request log.
"""

from __future__ import annotations

import base64
import hmac
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, assert_never

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
    SourceVerification,
)

# Vendors' clocks drift; half a minute is far less than any sensible token lifetime.
CLOCK_LEEWAY = timedelta(seconds=30)
OAUTH_ISSUER = "relay"
OAUTH_ALGORITHM = "HS256"
PARTNER_ID_HEADER = "X-Partner-ID"


@dataclass(frozen=True, slots=True)
class VerifiableRequest:
    """The parts of a request credentials can be in. Header names are lower-case."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """`reason` says what failed (or how it passed), never with a secret or presented value."""

    ok: bool
    reason: str


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Expired(_Refused):
    pass


class _WrongAudience(_Refused):
    pass


def oauth_audience(source_slug: str) -> str:
    return f"relay:ingest:{source_slug}"


def _as_bytes(value: str) -> bytes:
    # A str from outside may hold lone surrogates; surrogatepass encodes any str, so a
    # comparison can never raise.
    return value.encode("utf-8", "surrogatepass")


def _same(presented: str | bytes, expected: str | bytes) -> bool:
    left = presented if isinstance(presented, bytes) else _as_bytes(presented)
    right = expected if isinstance(expected, bytes) else _as_bytes(expected)
    return hmac.compare_digest(left, right)


def _header(request: VerifiableRequest, name: str) -> str:
    value = request.headers.get(name.lower())
    if value is None:
        raise _Refused(f"{name} header is missing")
    return value.strip()


def _bearer(value: str) -> str | None:
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def _check_hmac(config: HmacVerification, request: VerifiableRequest) -> None:
    presented = _header(request, config.header)
    if config.prefix:
        if presented[: len(config.prefix)].lower() != config.prefix.lower():
            raise _Refused(f"{config.header} header does not start with '{config.prefix}'")
        presented = presented[len(config.prefix) :].strip()
    try:
        signature = (
            bytes.fromhex(presented)
            if config.encoding == "hex"
            else base64.b64decode(presented, validate=True)
        )
    except ValueError:
        raise _Refused(
            f"{config.header} header is not {config.encoding}: check the encoding and prefix"
        ) from None
    expected = hmac.digest(_as_bytes(config.secret), request.body, config.algorithm)
    if len(signature) != len(expected):
        raise _Refused(
            f"signature is {len(signature)} bytes long, an HMAC-{config.algorithm.upper()} is "
            f"{len(expected)}: check the algorithm and encoding"
        )
    if not hmac.compare_digest(signature, expected):
        raise _Refused("signature does not match")
    if config.partner_id is not None and not _same(
        _header(request, PARTNER_ID_HEADER), config.partner_id
    ):
        raise _Refused(f"{PARTNER_ID_HEADER} header does not match the source's partner_id")


def _check_basic(config: BasicVerification, request: VerifiableRequest) -> None:
    scheme, _, encoded = _header(request, "Authorization").partition(" ")
    if scheme.lower() != "basic":
        raise _Refused("Authorization header is not Basic credentials")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        raise _Refused("Authorization header's Basic credentials are not base64") from None
    username, colon, password = decoded.partition(b":")
    if not colon:
        raise _Refused("Basic credentials have no ':' between user name and password")
    # Both are compared whatever the first outcome, so timing does not tell which was wrong.
    username_ok = _same(username, config.username)
    password_ok = _same(password, config.password)
    if not (username_ok and password_ok):
        raise _Refused("user name or password is wrong")


def _check_header_token(config: HeaderTokenVerification, request: VerifiableRequest) -> None:
    presented = _header(request, config.header)
    bearer = _bearer(presented)
    as_is_ok = _same(presented, config.token)
    bearer_ok = bearer is not None and _same(bearer, config.token)
    if not (as_is_ok or bearer_ok):
        raise _Refused(f"{config.header} header does not hold the token")


def _check_query_token(config: QueryTokenVerification, request: VerifiableRequest) -> None:
    presented = request.query.get(config.param)
    if presented is None:
        raise _Refused(f"query parameter '{config.param}' is missing")
    if not _same(presented, config.token):
        raise _Refused(f"query parameter '{config.param}' does not hold the token")


def _number_claim(claims: Mapping[str, Any], name: str, label: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Refused(f"{label} claim '{name}' is not a number")
    return float(value)


def _check_times(claims: Mapping[str, Any], now: datetime, label: str) -> None:
    # pyjwt can only compare with the wall clock; checking against `now` keeps verify a pure
    # function of its arguments.
    instant = now.timestamp()
    leeway = CLOCK_LEEWAY.total_seconds()
    expires = _number_claim(claims, "exp", label)
    if expires is not None and expires <= instant - leeway:
        raise _Expired(f"{label} has expired")
    not_before = _number_claim(claims, "nbf", label)
    if not_before is not None and not_before > instant + leeway:
        raise _Refused(f"{label} is not valid yet")
    issued_at = _number_claim(claims, "iat", label)
    if issued_at is not None and issued_at > instant + leeway:
        raise _Refused(f"{label} was issued in the future")


def _decode(
    token: str,
    *,
    key: str,
    algorithms: Sequence[str],
    audience: str | None,
    issuer: str | None,
    required: list[str],
    now: datetime,
    label: str,
) -> dict[str, Any]:
    if not token.isascii():
        raise _Refused(f"{label} is malformed")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(algorithms),
            audience=audience,
            issuer=issuer,
            options={
                "require": required,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": audience is not None,
            },
        )
    except jwt.InvalidAlgorithmError:
        raise _Refused(f"{label} algorithm is not one of {', '.join(algorithms)}") from None
    except jwt.InvalidSignatureError:
        raise _Refused(f"{label} signature does not match") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _Refused(f"{label} has no '{exc.claim}' claim") from None
    except jwt.InvalidAudienceError:
        raise _WrongAudience(f"{label} audience does not match") from None
    except jwt.InvalidIssuerError:
        raise _Refused(f"{label} issuer does not match") from None
    except jwt.DecodeError:
        raise _Refused(f"{label} is malformed") from None
    except jwt.PyJWTError:
        raise _Refused(f"{label} is not valid") from None
    _check_times(claims, now, label)
    return claims


def _check_jwt(config: JwtVerification, request: VerifiableRequest, now: datetime) -> None:
    presented = _header(request, config.header)
    bearer = _bearer(presented)
    if config.header.lower() == "authorization":
        if bearer is None:
            raise _Refused("Authorization header is not a Bearer token")
        token = bearer
    else:
        token = bearer if bearer is not None else presented
    _decode(
        token,
        key=config.secret,
        algorithms=config.algorithms,
        audience=config.audience,
        issuer=config.issuer,
        required=["exp"],
        now=now,
        label="JWT",
    )


def _check_oauth2(
    config: OAuth2Verification, request: VerifiableRequest, source_slug: str, now: datetime
) -> None:
    token = _bearer(_header(request, "Authorization"))
    if token is None:
        raise _Refused("Authorization header is not a Bearer token")
    try:
        claims = _decode(
            token,
            key=config.client_secret,
            algorithms=[OAUTH_ALGORITHM],
            audience=oauth_audience(source_slug),
            issuer=OAUTH_ISSUER,
            required=["exp", "aud", "iss", "sub"],
            now=now,
            label="access token",
        )
    except _Expired:
        raise _Refused(
            f"access token has expired: fetch a new one from /ingest/{source_slug}/oauth/token"
        ) from None
    except _WrongAudience:
        raise _Refused("access token was issued for another source") from None
    if not isinstance(claims["sub"], str) or not _same(claims["sub"], config.client_id):
        raise _Refused("access token was issued to another client")


def _check(scheme: Scheme, request: VerifiableRequest, source_slug: str, now: datetime) -> None:
    match scheme:
        case HmacVerification():
            _check_hmac(scheme, request)
        case BasicVerification():
            _check_basic(scheme, request)
        case HeaderTokenVerification():
            _check_header_token(scheme, request)
        case QueryTokenVerification():
            _check_query_token(scheme, request)
        case JwtVerification():
            _check_jwt(scheme, request, now)
        case OAuth2Verification():
            _check_oauth2(scheme, request, source_slug, now)
        case NoVerification():
            pass
        case _:
            assert_never(scheme)


def verify(
    verification: SourceVerification,
    request: VerifiableRequest,
    *,
    source_slug: str,
    now: datetime,
) -> VerificationResult:
    """The current credentials are tried first, then the previous ones while they last.

    When both fail, the reason is the current credentials' one: that is what the sender should
    be switching to.
    """
    try:
        _check(verification.current, request, source_slug, now)
    except _Refused as refused:
        previous, until = verification.previous, verification.previous_expires_at
        if previous is None or until is None or until <= now:
            return VerificationResult(ok=False, reason=refused.reason)
        try:
            _check(previous, request, source_slug, now)
        except _Refused:
            return VerificationResult(ok=False, reason=refused.reason)
        return VerificationResult(
            ok=True,
            reason=f"verified with the previous credentials, accepted until {until.isoformat()}",
        )
    if isinstance(verification.current, NoVerification):
        return VerificationResult(ok=True, reason="verification is off for this source")
    return VerificationResult(ok=True, reason="verified")


def check_client_credentials(
    config: OAuth2Verification, client_id: str, client_secret: str
) -> bool:
    # Both are compared whatever the first outcome, so timing does not tell which was wrong.
    id_ok = _same(client_id, config.client_id)
    secret_ok = _same(client_secret, config.client_secret)
    return id_ok and secret_ok


def issue_oauth_token(
    config: OAuth2Verification, *, source_slug: str, now: datetime, default_ttl: timedelta
) -> tuple[str, int]:
    """A bearer token for `verify`, signed with the client secret so rotating it revokes them."""
    lifetime = config.token_ttl_seconds or int(default_ttl.total_seconds())
    issued_at = int(now.timestamp())
    claims = {
        "iss": OAUTH_ISSUER,
        "aud": oauth_audience(source_slug),
        "sub": config.client_id,
        "iat": issued_at,
        "exp": issued_at + lifetime,
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, config.client_secret, algorithm=OAUTH_ALGORITHM), lifetime
