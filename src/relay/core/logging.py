"""structlog set-up: JSON lines off a terminal, readable lines on one, secrets never written."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

SECRET_KEY_PARTS = (
    "secret",
    "password",
    "token",
    "authorization",
    "signature",
    "api_key",
    "apikey",
    "access_key",
    "cookie",
    "client_secret",
)
REDACTED = "[redacted]"


def is_secret_key(key: str) -> bool:
    # Header names spell with dashes what JSON fields spell with underscores (X-API-Key).
    lowered = key.lower().replace("-", "_")
    return any(part in lowered for part in SECRET_KEY_PARTS)


def redact(value: Any) -> Any:
    """Replaces the values of secret-looking keys, at any depth."""
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and is_secret_key(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def _redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key == "event":
            continue
        if is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = redact(event_dict[key])
    return event_dict


class _UvicornNoise(logging.Filter):
    """uvicorn's warning for each malformed request ("Invalid HTTP request received."), turned
    into a debug line: anyone on the internet can send one, thousands in a fuzz run, and each
    says nothing an operator can act on. uvicorn answers 400 and closes the connection after
    it, so there is at most one per connection."""

    NOISE = frozenset({"Invalid HTTP request received."})

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.NOISE:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.threshold


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    # Logs go to stderr, so that a command's stdout is only its answer (`--json` a JSON document).
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    numeric_level = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Lines of the standard library's logging (uvicorn's, the libraries') are rendered like the
    # relay's own, so that every line on stdout is JSON when it is not a terminal.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _redact_processor,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    uvicorn_errors = logging.getLogger("uvicorn.error")
    for existing in [f for f in uvicorn_errors.filters if isinstance(f, _UvicornNoise)]:
        uvicorn_errors.removeFilter(existing)
    uvicorn_errors.addFilter(_UvicornNoise(numeric_level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
