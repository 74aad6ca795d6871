"""The REST client behind the CLI commands, and the one-line reasons it fails with."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError

from relay.apikeys.auth import ADMIN_TOKEN_FILE
from relay.core.settings import Settings

REQUEST_TIMEOUT = 30.0

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class ApiError(Exception):
    """A failure worth one line to the user: what went wrong, said by the relay if it can."""


class Unreachable(ApiError):
    """The relay did not answer at all (not running, restarting, the connection dropped)."""


def local_settings() -> Settings:
    """The relay's settings as `relay serve` would read them here: environment, then .env."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"RELAY_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            if error["loc"]
            else error["msg"]
            for error in exc.errors()
        )
        raise ApiError(
            f"the relay's settings (environment or .env) are invalid: {problems}"
        ) from None


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    token: str | None
    token_from: str


def find_relay(url: str | None, token: str | None) -> Target:
    """Where the relay is and which token to send it, the same way for every command:
    --url, else RELAY_URL, else RELAY_PUBLIC_URL, else http://RELAY_HOST:RELAY_PORT; --token,
    else RELAY_ADMIN_TOKEN, else the data directory's admin-token, but only when the relay
    found is the embedded one of that data directory, so a stale file never goes elsewhere."""
    settings = local_settings()
    base = (url or settings.relay_url()).rstrip("/")
    if token:
        return Target(base, token, "--token")
    if settings.admin_token is not None:
        return Target(base, settings.admin_token.get_secret_value(), "RELAY_ADMIN_TOKEN")
    embedded = url is None and settings.url is None and settings.database_url is None
    if embedded:
        path = settings.data_dir / ADMIN_TOKEN_FILE
        with contextlib.suppress(OSError):
            stored = path.read_text().strip()
            if stored:
                return Target(base, stored, str(path))
    return Target(base, None, "")


def parse_moment(value: str, *, now: datetime | None = None) -> str:
    """An ISO 8601 time, or a span back from now such as 30m, 2h, 1d; returned as ISO 8601."""
    text = value.strip()
    match = _RELATIVE.match(text.lower())
    if match:
        amount, unit = int(match.group(1)), _UNITS[match.group(2)]
        moment = (now or datetime.now(UTC)) - timedelta(**{unit: amount})
        return moment.isoformat()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            f"'{value}' is not a time: use ISO 8601 (2026-02-04T16:00:00Z) or a span back "
            "from now such as 30m, 2h, 1d"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.isoformat()


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return f"{error['message']} (HTTP {response.status_code})"
        if isinstance(error, str):
            return f"{body.get('error_description') or error} (HTTP {response.status_code})"
    return f"the relay answered HTTP {response.status_code} {response.reason_phrase}"


class RelayClient:
    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = REQUEST_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            self.http = httpx.Client(
                base_url=self.url, headers=headers, timeout=timeout, transport=transport
            )
        except httpx.InvalidURL as exc:
            raise ApiError(
                f"--url {url!r} is not a valid URL ({exc}): use e.g. http://127.0.0.1:8080"
            ) from None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """The decoded JSON answer (None for 204); ApiError for anything else."""
        cleaned = {key: value for key, value in (params or {}).items() if value is not None}
        try:
            response = self.http.request(method, path, params=cleaned, json=json)
        except httpx.InvalidURL as exc:
            raise ApiError(f"--url {self.url!r} is not a valid URL ({exc})") from None
        except httpx.ConnectError:
            raise Unreachable(f"cannot reach the relay at {self.url}: is it running?") from None
        except httpx.TimeoutException:
            raise Unreachable(f"the relay at {self.url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise Unreachable(f"request to the relay at {self.url} failed: {exc}") from None
        except httpx.HTTPError as exc:
            raise ApiError(f"request to the relay at {self.url} failed: {exc}") from None
        if response.status_code >= 400:
            raise ApiError(_reason(response))
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"the relay at {self.url} answered something that is not JSON") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)

    def patch(self, path: str, json: Any) -> Any:
        return self.request("PATCH", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)
