from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from relay.verification.schemes import (
    SCHEMES,
    BasicVerification,
    HeaderTokenVerification,
    HmacVerification,
    JwtVerification,
    NoVerification,
    QueryTokenVerification,
    Scheme,
    SourceVerification,
    parse_verification,
)

LONG_SECRET = "s3cr3t-value-long-enough-for-hs256-0123456789"
SHORT_SECRET = "pw-8char"
EXPIRES = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)

# One valid admin-API object per scheme, and the fields of it that are secrets.
VALID: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "hmac": ({"type": "hmac", "secret": LONG_SECRET, "partner_id": "partner-7"}, ("secret",)),
    "basic": (
        {"type": "basic", "username": "antsroute", "password": SHORT_SECRET},
        ("password",),
    ),
    "header_token": ({"type": "header_token", "token": LONG_SECRET}, ("token",)),
    "query_token": ({"type": "query_token", "token": LONG_SECRET}, ("token",)),
    "jwt": ({"type": "jwt", "secret": LONG_SECRET}, ("secret",)),
    "oauth2": (
        {"type": "oauth2", "client_id": "bringg", "client_secret": LONG_SECRET},
        ("client_secret",),
    ),
    "none": ({"type": "none"}, ()),
}


def errors_of(exc: ValidationError) -> dict[str, str]:
    return {
        ".".join(str(part) for part in error["loc"]): error["msg"]
        for error in exc.errors(include_url=False, include_input=False)
    }


def scheme(scheme_type: str) -> Scheme:
    return parse_verification(VALID[scheme_type][0], vendor_default_type="hmac").current


def test_every_scheme_has_a_valid_example() -> None:
    assert set(VALID) == set(SCHEMES)


@pytest.mark.parametrize("scheme_type", sorted(VALID))
def test_valid_object_parses_to_its_scheme(scheme_type: str) -> None:
    verification = parse_verification(VALID[scheme_type][0], vendor_default_type="hmac")

    assert isinstance(verification.current, SCHEMES[scheme_type])
    assert verification.previous is None
    assert verification.previous_expires_at is None


def test_type_defaults_to_the_vendors_default() -> None:
    verification = parse_verification(
        {"username": "ants", "password": SHORT_SECRET}, vendor_default_type="basic"
    )

    assert isinstance(verification.current, BasicVerification)


def test_explicit_type_wins_over_the_vendors_default() -> None:
    verification = parse_verification(
        {"type": "query_token", "token": LONG_SECRET}, vendor_default_type="hmac"
    )

    assert isinstance(verification.current, QueryTokenVerification)
    assert verification.current.param == "token"


def test_hmac_defaults() -> None:
    current = parse_verification({"secret": SHORT_SECRET}, vendor_default_type="hmac").current

    assert isinstance(current, HmacVerification)
    assert (current.header, current.algorithm, current.encoding) == ("X-Signature", "sha256", "hex")
    assert current.prefix is None
    assert current.partner_id is None


def test_jwt_defaults() -> None:
    current = parse_verification({"secret": LONG_SECRET}, vendor_default_type="jwt").current

    assert isinstance(current, JwtVerification)
    assert current.algorithms == ["HS256"]
    assert current.header == "Authorization"


def test_none_must_be_asked_for_explicitly() -> None:
    with pytest.raises(ValueError, match="set type to one of") as caught:
        parse_verification({}, vendor_default_type="none")

    assert "verification.type" in str(caught.value)
    explicit = parse_verification({"type": "none"}, vendor_default_type="none")
    assert isinstance(explicit.current, NoVerification)


def test_unknown_type_lists_the_known_types() -> None:
    with pytest.raises(ValueError, match="unknown type 'signature'") as caught:
        parse_verification({"type": "signature"}, vendor_default_type="hmac")

    message = str(caught.value)
    assert message.startswith("verification.type:")
    assert all(name in message for name in SCHEMES)


def test_type_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ValueError, match=r"verification\.type: must be a string"):
        parse_verification({"type": ["hmac"]}, vendor_default_type="hmac")


@pytest.mark.parametrize(
    ("scheme_type", "field"),
    [
        ("hmac", "secret"),
        ("basic", "username"),
        ("basic", "password"),
        ("header_token", "token"),
        ("query_token", "token"),
        ("jwt", "secret"),
        ("oauth2", "client_id"),
        ("oauth2", "client_secret"),
    ],
)
def test_missing_field_is_named(scheme_type: str, field: str) -> None:
    raw = {key: value for key, value in VALID[scheme_type][0].items() if key != field}

    with pytest.raises(ValidationError) as caught:
        parse_verification(raw, vendor_default_type="hmac")

    assert errors_of(caught.value) == {f"verification.{field}": "Field required"}


@pytest.mark.parametrize(
    ("scheme_type", "field", "minimum"),
    [
        ("hmac", "secret", 8),
        ("basic", "password", 8),
        ("header_token", "token", 16),
        ("query_token", "token", 16),
        ("jwt", "secret", 32),
        ("oauth2", "client_secret", 32),
    ],
)
def test_short_secret_is_refused_with_the_minimum(
    scheme_type: str, field: str, minimum: int
) -> None:
    too_short = "k" * (minimum - 1)
    raw = {**VALID[scheme_type][0], field: too_short}

    with pytest.raises(ValidationError) as caught:
        parse_verification(raw, vendor_default_type="hmac")

    assert errors_of(caught.value) == {
        f"verification.{field}": f"String should have at least {minimum} characters"
    }
    assert too_short not in str(caught.value)


def test_validation_errors_never_show_the_input() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_verification(
            {"type": "basic", "username": "a:b", "password": "hunter2"},
            vendor_default_type="hmac",
        )

    assert "hunter2" not in str(caught.value)
    assert set(errors_of(caught.value)) == {"verification.username", "verification.password"}


def test_unknown_field_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_verification({"secret": LONG_SECRET, "sekret": "x"}, vendor_default_type="hmac")

    assert errors_of(caught.value) == {"verification.sekret": "Extra inputs are not permitted"}


@pytest.mark.parametrize(
    ("raw", "field", "message_part"),
    [
        ({"type": "hmac", "secret": LONG_SECRET, "header": "X Signature"}, "header", "header name"),
        ({"type": "hmac", "secret": LONG_SECRET, "header": "X-Sig\n"}, "header", "header name"),
        ({"type": "hmac", "secret": LONG_SECRET, "algorithm": "md5"}, "algorithm", "sha256"),
        ({"type": "hmac", "secret": LONG_SECRET, "encoding": "base32"}, "encoding", "hex"),
        ({"type": "hmac", "secret": LONG_SECRET, "partner_id": ""}, "partner_id", "at least 1"),
        ({"type": "basic", "username": "a:b", "password": SHORT_SECRET}, "username", "':'"),
        ({"type": "basic", "username": "", "password": SHORT_SECRET}, "username", "at least 1"),
        (
            {"type": "header_token", "token": "with spaces inside it"},
            "token",
            "visible ASCII",
        ),
        ({"type": "header_token", "token": "tökentökentökentöken"}, "token", "visible ASCII"),
        ({"type": "jwt", "secret": LONG_SECRET, "algorithms": ["none"]}, "algorithms.0", "HS256"),
        ({"type": "jwt", "secret": LONG_SECRET, "algorithms": ["RS256"]}, "algorithms.0", "HS256"),
        ({"type": "jwt", "secret": LONG_SECRET, "algorithms": []}, "algorithms", "at least 1"),
        (
            {
                "type": "oauth2",
                "client_id": "b",
                "client_secret": LONG_SECRET,
                "token_ttl_seconds": 5,
            },
            "token_ttl_seconds",
            "greater than or equal to 60",
        ),
        (
            {**VALID["oauth2"][0], "token_ttl_seconds": 86401},
            "token_ttl_seconds",
            "less than or equal to 86400",
        ),
    ],
)
def test_bad_field_is_named(raw: dict[str, Any], field: str, message_part: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_verification(raw, vendor_default_type="hmac")

    errors = errors_of(caught.value)
    assert list(errors) == [f"verification.{field}"]
    assert message_part in errors[f"verification.{field}"]


@pytest.mark.parametrize(("algorithm", "needed"), [("HS384", 48), ("HS512", 64)])
def test_jwt_secret_must_be_as_long_as_the_hash(algorithm: str, needed: int) -> None:
    raw = {"type": "jwt", "secret": "k" * (needed - 1), "algorithms": ["HS256", algorithm]}

    with pytest.raises(ValidationError, match=f"secret must be at least {needed} bytes"):
        parse_verification(raw, vendor_default_type="hmac")
    long_enough = parse_verification({**raw, "secret": "k" * needed}, vendor_default_type="hmac")
    assert isinstance(long_enough.current, JwtVerification)


@pytest.mark.parametrize(("scheme_type", "field"), [("jwt", "secret"), ("oauth2", "client_secret")])
def test_public_key_is_not_an_hmac_secret(scheme_type: str, field: str) -> None:
    key = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 someone@example.com"

    with pytest.raises(ValidationError) as caught:
        parse_verification({**VALID[scheme_type][0], field: key}, vendor_default_type="hmac")

    assert "public key" in errors_of(caught.value)[f"verification.{field}"]


@pytest.mark.parametrize("scheme_type", sorted(VALID))
def test_masked_shows_no_secret(scheme_type: str) -> None:
    raw, secret_fields = VALID[scheme_type]
    verification = SourceVerification(
        current=scheme(scheme_type), previous=scheme(scheme_type), previous_expires_at=EXPIRES
    )

    shown = json.dumps(verification.masked())

    for name in secret_fields:
        assert raw[name] not in shown
        assert verification.masked()["current"][name].startswith("********")
        assert verification.masked()["previous"][name].startswith("********")
    assert verification.masked()["current"]["type"] == scheme_type


def test_masked_reveals_the_tail_of_long_secrets_only() -> None:
    long_one = SourceVerification(current=HmacVerification(secret="abcdefghijklmnop"))
    short_one = SourceVerification(current=HmacVerification(secret="abcdefghijklmno"))

    assert long_one.masked()["current"]["secret"] == "********mnop"
    assert short_one.masked()["current"]["secret"] == "********"


def test_masked_keeps_the_shape_and_the_other_fields() -> None:
    verification = SourceVerification(
        current=HmacVerification(secret=LONG_SECRET, partner_id="partner-7"),
        previous=BasicVerification(username="ants", password=SHORT_SECRET),
        previous_expires_at=EXPIRES,
    )

    masked = verification.masked()

    assert set(masked) == {"current", "previous", "previous_expires_at"}
    assert masked["current"]["partner_id"] == "partner-7"
    assert masked["previous"]["username"] == "ants"
    assert masked["previous_expires_at"] == "2025-01-02T12:00:00+00:00"


@pytest.mark.parametrize("scheme_type", sorted(VALID))
def test_repr_shows_no_secret(scheme_type: str) -> None:
    raw, secret_fields = VALID[scheme_type]
    verification = SourceVerification(current=scheme(scheme_type))

    for text in (repr(verification), str(verification), repr(verification.current)):
        assert all(raw[name] not in text for name in secret_fields)


@pytest.mark.parametrize("scheme_type", sorted(VALID))
def test_storage_round_trips(scheme_type: str) -> None:
    verification = SourceVerification(
        current=scheme(scheme_type), previous=scheme("hmac"), previous_expires_at=EXPIRES
    )

    stored = json.loads(json.dumps(verification.to_storage()))

    assert SourceVerification.model_validate(stored) == verification


def test_storage_keeps_the_secrets() -> None:
    stored = SourceVerification(current=HmacVerification(secret=LONG_SECRET)).to_storage()

    assert stored["current"]["secret"] == LONG_SECRET


def test_rotation_keeps_the_old_credentials_until_the_given_time() -> None:
    old = HmacVerification(secret="old-secret-1")
    new = HmacVerification(secret="new-secret-1")

    rotated = SourceVerification(current=old).rotated_to(new, previous_expires_at=EXPIRES)

    assert rotated.current == new
    assert rotated.previous == old
    assert rotated.previous_expires_at == EXPIRES


def test_rotation_without_an_end_drops_the_old_credentials() -> None:
    old = HmacVerification(secret="old-secret-1")
    new = HeaderTokenVerification(token=LONG_SECRET)

    rotated = SourceVerification(current=old).rotated_to(new, previous_expires_at=None)

    assert rotated == SourceVerification(current=new)


def test_second_rotation_forgets_the_oldest_credentials() -> None:
    first = HmacVerification(secret="first-secret")
    second = HmacVerification(secret="second-secret")
    third = HmacVerification(secret="third-secret")

    rotated = (
        SourceVerification(current=first)
        .rotated_to(second, previous_expires_at=EXPIRES)
        .rotated_to(third, previous_expires_at=EXPIRES + timedelta(days=1))
    )

    assert (rotated.current, rotated.previous) == (third, second)
    assert rotated.previous_expires_at == EXPIRES + timedelta(days=1)


def test_previous_expiry_is_kept_in_utc() -> None:
    paris = timezone(timedelta(hours=1))

    verification = SourceVerification(
        current=NoVerification(),
        previous=NoVerification(),
        previous_expires_at=datetime(2025, 1, 2, 13, 0, tzinfo=paris),
    )

    assert verification.previous_expires_at == EXPIRES
    assert verification.previous_expires_at is not None
    assert verification.previous_expires_at.utcoffset() == timedelta(0)


def test_naive_previous_expiry_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        SourceVerification.model_validate(
            {
                "current": {"type": "none"},
                "previous": {"type": "none"},
                "previous_expires_at": "2025-01-02T12:00:00",
            }
        )


@pytest.mark.parametrize(
    ("previous", "expires_at"), [({"type": "none"}, None), (None, "2025-01-02T12:00:00Z")]
)
def test_previous_and_its_expiry_come_together(
    previous: dict[str, str] | None, expires_at: str | None
) -> None:
    with pytest.raises(ValidationError, match="set together"):
        SourceVerification.model_validate(
            {"current": {"type": "none"}, "previous": previous, "previous_expires_at": expires_at}
        )


def test_header_names_cover_current_and_previous() -> None:
    verification = SourceVerification(
        current=HmacVerification(secret=LONG_SECRET, header="X-RS-Signature"),
        previous=JwtVerification(secret=LONG_SECRET, header="X-Bringg-Token"),
        previous_expires_at=EXPIRES,
    )

    assert verification.header_names() == {"X-RS-Signature", "X-Bringg-Token"}


@pytest.mark.parametrize(
    ("scheme_type", "expected"),
    [
        ("hmac", {"X-Signature"}),
        ("basic", {"Authorization"}),
        ("header_token", {"Authorization"}),
        ("query_token", set()),
        ("jwt", {"Authorization"}),
        ("oauth2", {"Authorization"}),
        ("none", set()),
    ],
)
def test_header_names_per_scheme(scheme_type: str, expected: set[str]) -> None:
    assert SourceVerification(current=scheme(scheme_type)).header_names() == expected


@pytest.mark.parametrize("model", [*SCHEMES.values(), SourceVerification])
def test_every_field_is_described(model: type[BaseModel]) -> None:
    undescribed = [name for name, field in model.model_fields.items() if not field.description]

    assert undescribed == []


@pytest.mark.parametrize("model", SCHEMES.values())
def test_schemes_refuse_unknown_fields(model: type[BaseModel]) -> None:
    assert model.model_config.get("extra") == "forbid"


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=40),
    st.lists(st.text(max_size=10), max_size=3),
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=2),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.dictionaries(
        st.sampled_from(
            ["type", "secret", "header", "token", "username", "password", "algorithms", "x"]
        ),
        json_values | st.sampled_from(sorted(SCHEMES)),
        max_size=6,
    ),
    vendor_default_type=st.sampled_from([*sorted(SCHEMES), "bogus"]),
)
def test_parse_only_ever_raises_what_callers_catch(
    raw: dict[str, Any], vendor_default_type: str
) -> None:
    try:
        parsed = parse_verification(raw, vendor_default_type=vendor_default_type)
    except (ValidationError, ValueError) as exc:
        message = str(exc)
    else:
        message = parsed.current.type
        assert parsed.current.type == raw.get("type", vendor_default_type)
    assert "verification" in message or message in SCHEMES
