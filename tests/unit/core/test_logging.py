import logging

import pytest

from relay.core.logging import REDACTED, _UvicornNoise, is_secret_key, redact


@pytest.mark.parametrize(
    "name",
    ["X-API-Key", "Api-Key", "x_api_key", "X-Access-Key", "Authorization", "webhook-signature"],
)
def test_credential_header_names_are_secret_however_they_are_spelled(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize("name", ["content-type", "x-request-id", "user-agent", "x-relay-attempt"])
def test_ordinary_header_names_are_not_secret(name: str) -> None:
    assert not is_secret_key(name)


def test_redact_replaces_secret_values_at_any_depth_and_keeps_the_rest() -> None:
    value = {"headers": {"X-Api-Key": "k-123", "accept": "json"}, "items": [{"token": "t"}]}
    assert redact(value) == {
        "headers": {"X-Api-Key": REDACTED, "accept": "json"},
        "items": [{"token": REDACTED}],
    }


def test_uvicorn_invalid_request_warnings_are_debug_lines_dropped_above_debug() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.WARNING, __file__, 1, "Invalid HTTP request received.", (), None
    )
    assert not _UvicornNoise(logging.INFO).filter(record)
    assert record.levelname == "DEBUG"
    assert _UvicornNoise(logging.DEBUG).filter(record)
    other = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "boom", (), None)
    assert _UvicornNoise(logging.INFO).filter(other)
    assert other.levelname == "ERROR"
