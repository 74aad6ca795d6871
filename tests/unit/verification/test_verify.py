from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from relay.verification.verify import (
    VerifiableRequest,
    VerificationResult,
    check_client_credentials,
    issue_oauth_token,
    verify,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SLUG = "bringg-eu"
BODY = b'{"event":"batch","id":"bth_1"}'
HMAC_SECRET = "routestripe-secret-0001"
PASSWORD = "ants-password-01"
TOKEN = "static-token-0123456789abcdef"
JWT_SECRET = "jwt-shared-secret-0123456789abcdefghij"
OTHER_JWT_SECRET = "another-shared-secret-0123456789abcdef"
CLIENT_SECRET = "oauth-client-secret-0123456789abcdefgh"
OTHER_CLIENT_SECRET = "oauth-client-secret-rotated-0123456789ab"
DEFAULT_TTL = timedelta(hours=1)
ALL_SECRETS = (
    HMAC_SECRET,
    PASSWORD,
    TOKEN,
    JWT_SECRET,
    OTHER_JWT_SECRET,
    CLIENT_SECRET,
    OTHER_CLIENT_SECRET,
)


def request(
    body: bytes = BODY, headers: dict[str, str] | None = None, query: dict[str, str] | None = None
) -> VerifiableRequest:
    return VerifiableRequest(
        body=body,
        headers={name.lower(): value for name, value in (headers or {}).items()},
        query=query or {},
    )


def check(
    scheme: Scheme, req: VerifiableRequest, *, slug: str = SLUG, now: datetime = NOW
) -> VerificationResult:
    return verify(SourceVerification(current=scheme), req, source_slug=slug, now=now)


def assert_refused(result: VerificationResult, reason: str, *presented: str) -> None:
    assert not result.ok
    assert reason in result.reason
    for value in (*ALL_SECRETS, *presented):
        assert value not in result.reason


HMAC = HmacVerification(secret=HMAC_SECRET)


def hmac_signature(
    body: bytes = BODY, secret: str = HMAC_SECRET, algorithm: str = "sha256"
) -> bytes:
    return hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).digest()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def signed_jwt(
    claims: dict[str, Any] | None = None,
    *,
    secret: str = JWT_SECRET,
    algorithm: str = "HS256",
) -> str:
    defaults = {"exp": int((NOW + timedelta(minutes=5)).timestamp()), "sub": "bringg"}
    return jwt.encode({**defaults, **(claims or {})}, secret, algorithm=algorithm)


def unsigned_jwt(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, None, algorithm="none")


OAUTH = OAuth2Verification(client_id="bringg-client", client_secret=CLIENT_SECRET)


def oauth_token(
    config: OAuth2Verification = OAUTH, *, slug: str = SLUG, issued: datetime = NOW
) -> str:
    token, _ = issue_oauth_token(config, source_slug=slug, now=issued, default_ttl=DEFAULT_TTL)
    return token


# HMAC


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "sha512"])
def test_hmac_hex_signature_passes(algorithm: str) -> None:
    scheme = HmacVerification(secret=HMAC_SECRET, algorithm=algorithm)
    signature = hmac_signature(algorithm=algorithm).hex()

    assert check(scheme, request(headers={"X-Signature": signature})).ok


def test_hmac_hex_is_case_insensitive() -> None:
    signature = hmac_signature().hex().upper()

    result = check(
        HmacVerification(secret=HMAC_SECRET), request(headers={"X-Signature": signature})
    )

    assert result == VerificationResult(ok=True, reason="verified")


def test_hmac_base64_signature_passes() -> None:
    scheme = HmacVerification(secret=HMAC_SECRET, encoding="base64")
    signature = base64.b64encode(hmac_signature()).decode()

    assert check(scheme, request(headers={"X-Signature": signature})).ok


def test_hmac_prefix_is_stripped() -> None:
    scheme = HmacVerification(secret=HMAC_SECRET, prefix="sha256=")
    signature = "sha256=" + hmac_signature().hex()

    assert check(scheme, request(headers={"X-Signature": signature})).ok


def test_hmac_in_another_header_passes() -> None:
    scheme = HmacVerification(secret=HMAC_SECRET, header="X-Hub-Signature")

    assert check(scheme, request(headers={"x-hub-signature": hmac_signature().hex()})).ok


def test_hmac_missing_header_is_refused() -> None:
    result = check(HMAC, request())

    assert_refused(result, "X-Signature header is missing")


def test_hmac_of_another_body_is_refused() -> None:
    signature = hmac_signature(body=b"{}").hex()

    result = check(
        HmacVerification(secret=HMAC_SECRET), request(headers={"X-Signature": signature})
    )

    assert_refused(result, "signature does not match", signature)


def test_hmac_with_another_key_is_refused() -> None:
    signature = hmac_signature(secret="someone-elses-key").hex()

    result = check(
        HmacVerification(secret=HMAC_SECRET), request(headers={"X-Signature": signature})
    )

    assert_refused(result, "signature does not match", signature)


def test_hmac_with_another_algorithm_is_refused() -> None:
    signature = hmac_signature(algorithm="sha1").hex()

    result = check(
        HmacVerification(secret=HMAC_SECRET), request(headers={"X-Signature": signature})
    )

    assert_refused(result, "check the algorithm", signature)
    assert "20 bytes" in result.reason


def test_hmac_in_another_encoding_is_refused() -> None:
    signature = base64.b64encode(hmac_signature()).decode()

    result = check(
        HmacVerification(secret=HMAC_SECRET), request(headers={"X-Signature": signature})
    )

    assert_refused(result, "X-Signature header is not hex", signature)


def test_hmac_hex_where_base64_is_expected_is_refused() -> None:
    scheme = HmacVerification(secret=HMAC_SECRET, encoding="base64")
    signature = hmac_signature().hex()

    result = check(scheme, request(headers={"X-Signature": signature}))

    assert_refused(result, "check the algorithm and encoding", signature)


def test_hmac_without_the_prefix_is_refused() -> None:
    scheme = HmacVerification(secret=HMAC_SECRET, prefix="sha256=")
    signature = hmac_signature().hex()

    result = check(scheme, request(headers={"X-Signature": signature}))

    assert_refused(result, "does not start with 'sha256='", signature)


def test_hmac_with_an_unexpected_prefix_is_refused() -> None:
    signature = "sha256=" + hmac_signature().hex()

    result = check(
        HmacVerification(secret=HMAC_SECRET), request(headers={"X-Signature": signature})
    )

    assert_refused(result, "not hex", signature)


def test_hmac_with_the_right_partner_passes() -> None:
    scheme = HmacVerification(secret=HMAC_SECRET, partner_id="partner-7")
    headers = {"X-Signature": hmac_signature().hex(), "X-Partner-ID": "partner-7"}

    assert check(scheme, request(headers=headers)).ok


def test_hmac_with_another_partner_is_refused() -> None:
    scheme = HmacVerification(secret=HMAC_SECRET, partner_id="partner-7")
    headers = {"X-Signature": hmac_signature().hex(), "X-Partner-ID": "partner-8"}

    result = check(scheme, request(headers=headers))

    assert_refused(result, "X-Partner-ID header does not match", "partner-8")


def test_hmac_without_the_partner_header_is_refused() -> None:
    scheme = HmacVerification(secret=HMAC_SECRET, partner_id="partner-7")

    result = check(scheme, request(headers={"X-Signature": hmac_signature().hex()}))

    assert_refused(result, "X-Partner-ID header is missing")


# Basic


BASIC = BasicVerification(username="antsroute", password=PASSWORD)


def test_basic_passes() -> None:
    assert check(BASIC, request(headers={"Authorization": basic("antsroute", PASSWORD)})).ok


def test_basic_scheme_name_is_case_insensitive() -> None:
    header = basic("antsroute", PASSWORD).replace("Basic", "bAsIc")

    assert check(BASIC, request(headers={"Authorization": header})).ok


def test_basic_password_may_hold_colons() -> None:
    scheme = BasicVerification(username="ants", password="pass:word:1")

    assert check(scheme, request(headers={"Authorization": basic("ants", "pass:word:1")})).ok


@pytest.mark.parametrize(
    ("username", "password"),
    [("antsroute", "wrong-password"), ("someone", PASSWORD), ("someone", "wrong-password")],
)
def test_basic_wrong_credentials_are_refused(username: str, password: str) -> None:
    result = check(BASIC, request(headers={"Authorization": basic(username, password)}))

    assert_refused(result, "user name or password is wrong", "wrong-password")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (f"Bearer {TOKEN}", "not Basic credentials"),
        ("Basic not*base64", "not base64"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "no ':'"),
        ("Basic", "no ':'"),
    ],
)
def test_basic_malformed_header_is_refused(header: str, reason: str) -> None:
    result = check(BASIC, request(headers={"Authorization": header}))

    assert_refused(result, reason)


def test_basic_missing_header_is_refused() -> None:
    assert_refused(check(BASIC, request()), "Authorization header is missing")


# Header token


@pytest.mark.parametrize("value", [TOKEN, f"Bearer {TOKEN}", f"bearer {TOKEN}", f" {TOKEN} "])
def test_header_token_passes(value: str) -> None:
    scheme = HeaderTokenVerification(token=TOKEN)

    assert check(scheme, request(headers={"Authorization": value})).ok


def test_header_token_in_another_header_passes() -> None:
    scheme = HeaderTokenVerification(header="X-Api-Key", token=TOKEN)

    assert check(scheme, request(headers={"x-api-key": TOKEN})).ok


@pytest.mark.parametrize(
    "value",
    [
        "Bearer wrong-token-0123456789",
        "wrong-token-0123456789",
        f"Basic {TOKEN}",
        "Bearer ",
        TOKEN[:-1],
    ],
)
def test_header_token_wrong_value_is_refused(value: str) -> None:
    scheme = HeaderTokenVerification(token=TOKEN)

    result = check(scheme, request(headers={"Authorization": value}))

    assert_refused(result, "Authorization header does not hold the token", value.strip())


def test_header_token_missing_header_is_refused() -> None:
    scheme = HeaderTokenVerification(header="X-Api-Key", token=TOKEN)

    result = check(scheme, request(headers={"Authorization": TOKEN}))

    assert_refused(result, "X-Api-Key header is missing")


# Query token


def test_query_token_passes() -> None:
    scheme = QueryTokenVerification(param="key", token=TOKEN)

    assert check(scheme, request(query={"key": TOKEN})).ok


def test_query_token_wrong_value_is_refused() -> None:
    scheme = QueryTokenVerification(token=TOKEN)

    result = check(scheme, request(query={"token": "wrong-token-0123456789"}))

    assert_refused(result, "query parameter 'token' does not hold the token", "wrong-token")


def test_query_token_missing_is_refused() -> None:
    scheme = QueryTokenVerification(token=TOKEN)

    result = check(scheme, request(headers={"Authorization": TOKEN}, query={"other": TOKEN}))

    assert_refused(result, "query parameter 'token' is missing")


# JWT


JWT = JwtVerification(secret=JWT_SECRET)


def test_jwt_bearer_passes() -> None:
    assert check(JWT, request(headers={"Authorization": f"Bearer {signed_jwt()}"})).ok


@pytest.mark.parametrize("form", ["{}", "Bearer {}"])
def test_jwt_in_another_header_passes_bare_or_bearer(form: str) -> None:
    scheme = JwtVerification(secret=JWT_SECRET, header="X-Bringg-Token")

    assert check(scheme, request(headers={"X-Bringg-Token": form.format(signed_jwt())})).ok


def test_jwt_bare_in_authorization_is_refused() -> None:
    result = check(JWT, request(headers={"Authorization": signed_jwt()}))

    assert_refused(result, "not a Bearer token")


def test_jwt_missing_header_is_refused() -> None:
    assert_refused(check(JWT, request()), "Authorization header is missing")


def test_jwt_expired_is_refused() -> None:
    token = signed_jwt({"exp": int((NOW - timedelta(minutes=1)).timestamp())})

    result = check(JWT, request(headers={"Authorization": f"Bearer {token}"}))

    assert_refused(result, "JWT has expired", token)


def test_jwt_just_expired_passes_within_the_clock_leeway() -> None:
    token = signed_jwt({"exp": int((NOW - timedelta(seconds=20)).timestamp())})

    assert check(JWT, request(headers={"Authorization": f"Bearer {token}"})).ok


def test_jwt_expiry_is_judged_by_now_not_the_wall_clock() -> None:
    token = signed_jwt()
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)

    assert check(JWT, request(headers={"Authorization": f"Bearer {token}"}), now=long_ago).ok
    later = check(JWT, request(headers={"Authorization": f"Bearer {token}"}), now=NOW + DEFAULT_TTL)
    assert_refused(later, "JWT has expired")


def test_jwt_without_expiry_is_refused() -> None:
    token = jwt.encode({"sub": "bringg"}, JWT_SECRET, algorithm="HS256")

    result = check(JWT, request(headers={"Authorization": f"Bearer {token}"}))

    assert_refused(result, "JWT has no 'exp' claim")


@pytest.mark.parametrize("expiry", ["tomorrow", True, float("inf"), None, [1]])
def test_jwt_expiry_that_is_not_a_number_is_refused(expiry: object) -> None:
    token = jwt.encode({"exp": expiry}, JWT_SECRET, algorithm="HS256")

    result = check(JWT, request(headers={"Authorization": f"Bearer {token}"}))

    assert not result.ok
    assert "'exp'" in result.reason


def test_jwt_not_yet_valid_is_refused() -> None:
    token = signed_jwt({"nbf": int((NOW + timedelta(minutes=2)).timestamp())})

    result = check(JWT, request(headers={"Authorization": f"Bearer {token}"}))

    assert_refused(result, "JWT is not valid yet")


def test_jwt_issued_in_the_future_is_refused() -> None:
    token = signed_jwt({"iat": int((NOW + timedelta(minutes=2)).timestamp())})

    result = check(JWT, request(headers={"Authorization": f"Bearer {token}"}))

    assert_refused(result, "JWT was issued in the future")


def test_jwt_alg_none_is_refused() -> None:
    token = unsigned_jwt({"exp": int((NOW + timedelta(minutes=5)).timestamp())})

    result = check(JWT, request(headers={"Authorization": f"Bearer {token}"}))

    assert_refused(result, "JWT algorithm is not one of HS256", token)


def test_jwt_signed_with_another_key_is_refused() -> None:
    token = signed_jwt(secret=OTHER_JWT_SECRET)

    result = check(JWT, request(headers={"Authorization": f"Bearer {token}"}))

    assert_refused(result, "JWT signature does not match", token)


def test_jwt_with_an_algorithm_not_allowed_is_refused() -> None:
    token = signed_jwt(secret=JWT_SECRET * 2, algorithm="HS512")
    scheme = JwtVerification(secret=JWT_SECRET * 2, algorithms=["HS256"])

    result = check(scheme, request(headers={"Authorization": f"Bearer {token}"}))

    assert_refused(result, "JWT algorithm is not one of HS256")


def test_jwt_with_an_allowed_stronger_algorithm_passes() -> None:
    token = signed_jwt(secret=JWT_SECRET * 2, algorithm="HS512")
    scheme = JwtVerification(secret=JWT_SECRET * 2, algorithms=["HS256", "HS512"])

    assert check(scheme, request(headers={"Authorization": f"Bearer {token}"})).ok


def test_jwt_audience_and_issuer_are_checked_when_set() -> None:
    scheme = JwtVerification(secret=JWT_SECRET, audience="relay", issuer="bringg")
    good = signed_jwt({"aud": "relay", "iss": "bringg"})
    wrong_aud = signed_jwt({"aud": "someone-else", "iss": "bringg"})
    wrong_iss = signed_jwt({"aud": "relay", "iss": "mallory"})
    no_aud = signed_jwt({"iss": "bringg"})

    def result(token: str) -> VerificationResult:
        return check(scheme, request(headers={"Authorization": f"Bearer {token}"}))

    assert result(good).ok
    assert_refused(result(wrong_aud), "JWT audience does not match", "someone-else")
    assert_refused(result(wrong_iss), "JWT issuer does not match", "mallory")
    assert_refused(result(no_aud), "JWT has no 'aud' claim")


def test_jwt_audience_is_ignored_when_not_configured() -> None:
    token = signed_jwt({"aud": "whatever-bringg-sends"})

    assert check(JWT, request(headers={"Authorization": f"Bearer {token}"})).ok


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "ünïcode.x.y", ""])
def test_jwt_malformed_is_refused(token: str) -> None:
    result = check(JWT, request(headers={"Authorization": f"Bearer {token}"}))

    assert not result.ok
    assert result.reason in {"JWT is malformed", "Authorization header is not a Bearer token"}


# OAuth 2.0


def test_oauth_token_passes() -> None:
    result = check(OAUTH, request(headers={"Authorization": f"Bearer {oauth_token()}"}))

    assert result == VerificationResult(ok=True, reason="verified")


def test_issued_token_claims() -> None:
    token, expires_in = issue_oauth_token(OAUTH, source_slug=SLUG, now=NOW, default_ttl=DEFAULT_TTL)

    claims = jwt.decode(
        token,
        CLIENT_SECRET,
        algorithms=["HS256"],
        audience=f"relay:ingest:{SLUG}",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert expires_in == 3600
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert claims["iss"] == "relay"
    assert claims["sub"] == "bringg-client"
    assert claims["iat"] == int(NOW.timestamp())
    assert claims["exp"] == int(NOW.timestamp()) + 3600
    assert claims["jti"]


def test_issued_tokens_are_unique() -> None:
    assert oauth_token() != oauth_token()


def test_source_ttl_overrides_the_default() -> None:
    config = OAuth2Verification(
        client_id="bringg-client", client_secret=CLIENT_SECRET, token_ttl_seconds=300
    )

    token, expires_in = issue_oauth_token(
        config, source_slug=SLUG, now=NOW, default_ttl=DEFAULT_TTL
    )

    assert expires_in == 300
    assert jwt.decode(token, options={"verify_signature": False})["exp"] == NOW.timestamp() + 300


def test_oauth_expired_token_is_refused() -> None:
    token = oauth_token(issued=NOW - DEFAULT_TTL - timedelta(minutes=1))

    result = check(OAUTH, request(headers={"Authorization": f"Bearer {token}"}))

    assert_refused(result, "access token has expired", token)
    assert f"/ingest/{SLUG}/oauth/token" in result.reason


def test_oauth_token_for_another_source_is_refused() -> None:
    token = oauth_token(slug="other-source")

    result = check(OAUTH, request(headers={"Authorization": f"Bearer {token}"}))

    assert_refused(result, "access token was issued for another source", token)


def test_oauth_token_for_another_client_is_refused() -> None:
    other_client = OAuth2Verification(client_id="someone-else", client_secret=CLIENT_SECRET)
    token = oauth_token(other_client)

    result = check(OAUTH, request(headers={"Authorization": f"Bearer {token}"}))

    assert_refused(result, "access token was issued to another client", token)


def test_oauth_token_signed_with_another_secret_is_refused() -> None:
    rotated = OAuth2Verification(client_id="bringg-client", client_secret=OTHER_CLIENT_SECRET)

    result = check(rotated, request(headers={"Authorization": f"Bearer {oauth_token()}"}))

    assert_refused(result, "access token signature does not match")


def test_oauth_token_not_made_by_the_relay_is_refused() -> None:
    forged = jwt.encode(
        {"sub": "bringg-client", "aud": f"relay:ingest:{SLUG}", "exp": NOW.timestamp() + 60},
        CLIENT_SECRET,
        algorithm="HS256",
    )

    result = check(OAUTH, request(headers={"Authorization": f"Bearer {forged}"}))

    assert_refused(result, "access token has no 'iss' claim")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "Authorization header is missing"),
        ({"Authorization": basic("bringg-client", CLIENT_SECRET)}, "not a Bearer token"),
        ({"Authorization": "Bearer"}, "not a Bearer token"),
    ],
)
def test_oauth_without_a_bearer_token_is_refused(headers: dict[str, str], reason: str) -> None:
    assert_refused(check(OAUTH, request(headers=headers)), reason)


@pytest.mark.parametrize(
    ("client_id", "client_secret", "expected"),
    [
        ("bringg-client", CLIENT_SECRET, True),
        ("bringg-client", OTHER_CLIENT_SECRET, False),
        ("someone-else", CLIENT_SECRET, False),
        ("", "", False),
        ("bringg-client", CLIENT_SECRET + "x", False),
        ("bringg-client\ud800", CLIENT_SECRET, False),
    ],
)
def test_client_credentials(client_id: str, client_secret: str, expected: bool) -> None:
    assert check_client_credentials(OAUTH, client_id, client_secret) is expected


# None


def test_none_accepts_anything() -> None:
    result = check(NoVerification(), request(body=b"\x00garbage"))

    assert result.ok
    assert "off" in result.reason


# Rotation: the previous credentials within and after their window


OLD_HMAC = HmacVerification(secret="routestripe-old-secret")
ROTATED = SourceVerification(current=OLD_HMAC).rotated_to(
    HmacVerification(secret=HMAC_SECRET), previous_expires_at=NOW + timedelta(hours=1)
)


def signed_with(secret: str) -> VerifiableRequest:
    return request(headers={"X-Signature": hmac_signature(secret=secret).hex()})


def test_current_credentials_pass_after_rotation() -> None:
    result = verify(ROTATED, signed_with(HMAC_SECRET), source_slug=SLUG, now=NOW)

    assert result == VerificationResult(ok=True, reason="verified")


def test_previous_credentials_pass_inside_their_window() -> None:
    result = verify(
        ROTATED,
        signed_with("routestripe-old-secret"),
        source_slug=SLUG,
        now=NOW + timedelta(minutes=59),
    )

    assert result.ok
    assert "previous credentials" in result.reason
    assert "routestripe-old-secret" not in result.reason


@pytest.mark.parametrize("after", [timedelta(hours=1), timedelta(days=3)])
def test_previous_credentials_are_refused_after_their_window(after: timedelta) -> None:
    result = verify(
        ROTATED, signed_with("routestripe-old-secret"), source_slug=SLUG, now=NOW + after
    )

    assert_refused(result, "signature does not match", "routestripe-old-secret")


def test_rotation_without_a_window_refuses_the_old_credentials_at_once() -> None:
    rotated = SourceVerification(current=OLD_HMAC).rotated_to(
        HmacVerification(secret=HMAC_SECRET), previous_expires_at=None
    )

    result = verify(rotated, signed_with("routestripe-old-secret"), source_slug=SLUG, now=NOW)

    assert_refused(result, "signature does not match")


def test_credentials_matching_neither_give_the_current_reason() -> None:
    rotated = SourceVerification(current=HeaderTokenVerification(token=TOKEN)).rotated_to(
        BASIC, previous_expires_at=NOW + timedelta(hours=1)
    )

    result = verify(rotated, request(), source_slug=SLUG, now=NOW)

    assert_refused(result, "Authorization header is missing")


def test_oauth_tokens_of_the_previous_secret_pass_inside_the_window_only() -> None:
    rotated = SourceVerification(current=OAUTH).rotated_to(
        OAuth2Verification(client_id="bringg-client", client_secret=OTHER_CLIENT_SECRET),
        previous_expires_at=NOW + timedelta(minutes=10),
    )
    old_token = request(headers={"Authorization": f"Bearer {oauth_token()}"})

    inside = verify(rotated, old_token, source_slug=SLUG, now=NOW + timedelta(minutes=5))
    after = verify(rotated, old_token, source_slug=SLUG, now=NOW + timedelta(minutes=10))

    assert inside.ok
    assert_refused(after, "access token signature does not match")


def test_oauth_previous_config_still_checks_the_slug() -> None:
    rotated = SourceVerification(current=OAUTH).rotated_to(
        OAuth2Verification(client_id="bringg-client", client_secret=OTHER_CLIENT_SECRET),
        previous_expires_at=NOW + timedelta(minutes=10),
    )
    token_for_other = request(headers={"Authorization": f"Bearer {oauth_token(slug='other')}"})

    result = verify(rotated, token_for_other, source_slug=SLUG, now=NOW)

    assert not result.ok


# Any input at all: a result, never an exception, never a secret in the reason


SCHEMES: list[Scheme] = [
    HmacVerification(secret=HMAC_SECRET, partner_id="partner-7"),
    HmacVerification(secret=HMAC_SECRET, encoding="base64", prefix="sha256="),
    BASIC,
    HeaderTokenVerification(token=TOKEN),
    QueryTokenVerification(token=TOKEN),
    JWT,
    JwtVerification(secret=JWT_SECRET, header="X-Token", audience="relay", issuer="bringg"),
    OAUTH,
    NoVerification(),
]
HEADER_NAMES = ["authorization", "x-signature", "x-partner-id", "x-token"]
header_values = st.one_of(
    st.text(max_size=80),
    st.text(max_size=80).map(lambda text: f"Bearer {text}"),
    st.text(max_size=80).map(lambda text: f"Basic {text}"),
    st.binary(max_size=40).map(lambda raw: "Basic " + base64.b64encode(raw).decode()),
    st.binary(max_size=64).map(bytes.hex),
    st.sampled_from([signed_jwt(), f"Bearer {signed_jwt()}", f"Bearer {oauth_token()}"]),
    st.lists(st.text(max_size=20), min_size=3, max_size=3).map(".".join),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    current=st.sampled_from(SCHEMES),
    previous=st.sampled_from(SCHEMES),
    body=st.binary(max_size=200),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_values),
    query=st.dictionaries(st.sampled_from(["token", "key"]), st.text(max_size=40)),
    offset=st.integers(min_value=-(10**6), max_value=10**6),
)
def test_verify_never_raises(
    current: Scheme,
    previous: Scheme,
    body: bytes,
    headers: dict[str, str],
    query: dict[str, str],
    offset: int,
) -> None:
    verification = SourceVerification(
        current=current, previous=previous, previous_expires_at=NOW + timedelta(minutes=1)
    )

    result = verify(
        verification,
        VerifiableRequest(body=body, headers=headers, query=query),
        source_slug=SLUG,
        now=NOW + timedelta(seconds=offset),
    )

    assert isinstance(result, VerificationResult)
    assert result.reason
    assert not any(secret in result.reason for secret in ALL_SECRETS)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda scheme: scheme.type)
def test_lone_surrogates_do_not_crash(scheme: Scheme) -> None:
    odd = "\ud800\udfff"
    req = request(
        headers={name: odd for name in HEADER_NAMES} | {"authorization": f"Bearer {odd}"},
        query={"token": odd},
    )

    result = check(scheme, req)

    assert result.ok is isinstance(scheme, NoVerification)
