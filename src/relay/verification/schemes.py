"""How a source proves its webhooks genuine: one model per scheme, and credential rotation.

A scheme field declared with `repr=False` holds a secret: it never shows in a repr, and
`SourceVerification.masked()` masks exactly those fields, so marking a field is all it takes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidKeyError
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails

from relay.core.masking import masked

JwtAlgorithm = Literal["HS256", "HS384", "HS512"]
# RFC 7518 section 3.2: an HMAC key must be at least as long as the hash output.
JWT_KEY_BYTES: dict[JwtAlgorithm, int] = {"HS256": 32, "HS384": 48, "HS512": 64}

# RFC 9110 section 5.1: a field name is a token.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")

_SCHEME_CONFIG = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError("must be an HTTP header name, e.g. X-Signature")
    return value


def _hmac_key(value: str) -> str:
    # pyjwt refuses keys that look like PEM or SSH public keys; say so when the source is saved,
    # not on every webhook.
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(value)
    except InvalidKeyError:
        raise ValueError(
            "looks like a public key or certificate: use a shared secret string"
        ) from None
    return value


def _default_jwt_algorithms() -> list[JwtAlgorithm]:
    return ["HS256"]


HeaderName = Annotated[str, AfterValidator(_header_name)]
HmacKey = Annotated[str, AfterValidator(_hmac_key)]


class HmacVerification(BaseModel):
    """A keyed hash of the raw body in a header (RouteStripe)."""

    model_config = _SCHEME_CONFIG

    type: Literal["hmac"] = Field("hmac", description="HMAC signature of the raw body.")
    secret: str = Field(
        min_length=8, repr=False, description="Shared secret the vendor signs with (>= 8 chars)."
    )
    header: HeaderName = Field("X-Signature", description="Header carrying the signature.")
    algorithm: Literal["sha256", "sha1", "sha512"] = Field(
        "sha256", description="Hash function of the HMAC."
    )
    encoding: Literal["hex", "base64"] = Field(
        "hex", description="How the signature bytes are written in the header."
    )
    prefix: str | None = Field(
        None,
        description="Text before the signature in the header, e.g. 'sha256='; stripped "
        "before comparing.",
    )
    partner_id: str | None = Field(
        None, min_length=1, description="When set, the X-Partner-ID header must equal it."
    )

    def credential_headers(self) -> set[str]:
        return {self.header}


class BasicVerification(BaseModel):
    """HTTP Basic authentication, RFC 7617 (AntsRoute)."""

    model_config = _SCHEME_CONFIG

    type: Literal["basic"] = Field("basic", description="HTTP Basic authentication.")
    username: str = Field(
        min_length=1, description="User name the vendor sends; may not contain ':'."
    )
    password: str = Field(
        min_length=8, repr=False, description="Password the vendor sends (>= 8 chars)."
    )

    @field_validator("username")
    @classmethod
    def _no_colon(cls, value: str) -> str:
        if ":" in value:
            raise ValueError("may not contain ':' (RFC 7617 uses it to end the user name)")
        return value

    def credential_headers(self) -> set[str]:
        return {"Authorization"}


class HeaderTokenVerification(BaseModel):
    """A static token in a header, as is or as `Bearer <token>` (RoutiGo, Bringg)."""

    model_config = _SCHEME_CONFIG

    type: Literal["header_token"] = Field("header_token", description="Static header token.")
    header: HeaderName = Field("Authorization", description="Header carrying the token.")
    token: str = Field(
        min_length=16,
        repr=False,
        description="The token (>= 16 chars, visible ASCII: it travels in a header).",
    )

    @field_validator("token")
    @classmethod
    def _sendable_in_header(cls, value: str) -> str:
        if not _VISIBLE_ASCII.fullmatch(value):
            raise ValueError("may only hold visible ASCII characters, no spaces")
        return value

    def credential_headers(self) -> set[str]:
        return {self.header}


class QueryTokenVerification(BaseModel):
    """A static token in a query parameter of the webhook URL (RoutiGo)."""

    model_config = _SCHEME_CONFIG

    type: Literal["query_token"] = Field("query_token", description="Static query token.")
    param: str = Field("token", min_length=1, description="Query parameter carrying the token.")
    token: str = Field(min_length=16, repr=False, description="The token (>= 16 chars).")

    def credential_headers(self) -> set[str]:
        return set()


class JwtVerification(BaseModel):
    """A JWT the vendor signs with a shared secret; it does not cover the body (Bringg)."""

    model_config = _SCHEME_CONFIG

    type: Literal["jwt"] = Field("jwt", description="HMAC-signed JWT in a header.")
    secret: HmacKey = Field(
        min_length=32,
        repr=False,
        description="Shared signing secret: >= 32 bytes for HS256, 48 for HS384, 64 for HS512.",
    )
    algorithms: list[JwtAlgorithm] = Field(
        default_factory=_default_jwt_algorithms,
        min_length=1,
        description="Signing algorithms accepted.",
    )
    header: HeaderName = Field(
        "Authorization",
        description="Header carrying the JWT: 'Bearer <jwt>' in Authorization, the bare JWT "
        "or the Bearer form in any other.",
    )
    audience: str | None = Field(None, description="When set, the aud claim must hold it.")
    issuer: str | None = Field(None, description="When set, the iss claim must equal it.")

    @model_validator(mode="after")
    def _key_long_enough(self) -> JwtVerification:
        for algorithm in self.algorithms:
            needed = JWT_KEY_BYTES[algorithm]
            if len(self.secret.encode()) < needed:
                raise ValueError(
                    f"secret must be at least {needed} bytes long for {algorithm} "
                    "(RFC 7518 section 3.2)"
                )
        return self

    def credential_headers(self) -> set[str]:
        return {self.header}


class OAuth2Verification(BaseModel):
    """OAuth 2.0 client credentials: the vendor fetches a token here, then sends it (Bringg)."""

    model_config = _SCHEME_CONFIG

    type: Literal["oauth2"] = Field("oauth2", description="OAuth 2.0 client credentials.")
    client_id: str = Field(min_length=1, description="Client id the vendor presents.")
    client_secret: HmacKey = Field(
        min_length=32,
        repr=False,
        description="Client secret the vendor presents; also signs the issued tokens "
        "(>= 32 chars).",
    )
    token_ttl_seconds: int | None = Field(
        None,
        ge=60,
        le=86400,
        description="Lifetime of issued tokens in seconds; the relay's default when unset.",
    )

    def credential_headers(self) -> set[str]:
        return {"Authorization"}


class NoVerification(BaseModel):
    """Every request is accepted: only ever chosen explicitly."""

    model_config = _SCHEME_CONFIG

    type: Literal["none"] = Field("none", description="No verification at all.")

    def credential_headers(self) -> set[str]:
        return set()


Scheme = (
    HmacVerification
    | BasicVerification
    | HeaderTokenVerification
    | QueryTokenVerification
    | JwtVerification
    | OAuth2Verification
    | NoVerification
)
TaggedScheme = Annotated[Scheme, Field(discriminator="type")]

SCHEMES: dict[str, type[Scheme]] = {
    "hmac": HmacVerification,
    "basic": BasicVerification,
    "header_token": HeaderTokenVerification,
    "query_token": QueryTokenVerification,
    "jwt": JwtVerification,
    "oauth2": OAuth2Verification,
    "none": NoVerification,
}


def _masked_scheme(scheme: Scheme) -> dict[str, Any]:
    shown = scheme.model_dump(mode="json")
    for name, field in type(scheme).model_fields.items():
        if not field.repr:
            shown[name] = masked(getattr(scheme, name))
    return shown


class SourceVerification(BaseModel):
    """A source's credentials: the current ones, and the replaced ones for a while after."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    current: TaggedScheme = Field(description="Credentials requests are checked against.")
    previous: TaggedScheme | None = Field(
        None, description="Replaced credentials, still accepted until previous_expires_at."
    )
    previous_expires_at: AwareDatetime | None = Field(
        None, description="When the previous credentials stop being accepted (UTC)."
    )

    @field_validator("previous_expires_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    @model_validator(mode="after")
    def _previous_has_an_end(self) -> SourceVerification:
        if (self.previous is None) != (self.previous_expires_at is None):
            raise ValueError("previous and previous_expires_at are set together or not at all")
        return self

    def masked(self) -> dict[str, Any]:
        return {
            "current": _masked_scheme(self.current),
            "previous": _masked_scheme(self.previous) if self.previous is not None else None,
            "previous_expires_at": (
                self.previous_expires_at.isoformat()
                if self.previous_expires_at is not None
                else None
            ),
        }

    def to_storage(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def rotated_to(
        self, new: Scheme, *, previous_expires_at: datetime | None
    ) -> SourceVerification:
        return SourceVerification(
            current=new,
            previous=self.current if previous_expires_at is not None else None,
            previous_expires_at=previous_expires_at,
        )

    def header_names(self) -> set[str]:
        names = self.current.credential_headers()
        if self.previous is not None:
            names |= self.previous.credential_headers()
        return names


def _under_verification(error: ErrorDetails) -> InitErrorDetails:
    moved: InitErrorDetails = {
        "type": error["type"],
        "loc": ("verification", *error["loc"]),
        "input": error["input"],
    }
    if "ctx" in error:
        moved["ctx"] = error["ctx"]
    return moved


def parse_verification(raw: dict[str, Any], *, vendor_default_type: str) -> SourceVerification:
    """Reads the admin API's `verification` object; errors are located under `verification`."""
    known = ", ".join(sorted(SCHEMES))
    scheme_type = raw.get("type", vendor_default_type)
    if "type" not in raw and scheme_type == "none":
        raise ValueError(
            "verification.type: this vendor has no default verification; set type to one of "
            f"{known} ('none' accepts every request)"
        )
    if not isinstance(scheme_type, str):
        raise ValueError(f"verification.type: must be a string, one of {known}")
    if scheme_type not in SCHEMES:
        raise ValueError(f"verification.type: unknown type '{scheme_type}': use one of {known}")
    try:
        scheme = SCHEMES[scheme_type].model_validate({**raw, "type": scheme_type})
    except ValidationError as exc:
        raise ValidationError.from_exception_data(
            "verification",
            [_under_verification(error) for error in exc.errors()],
            hide_input=True,
        ) from None
    return SourceVerification(current=scheme)
