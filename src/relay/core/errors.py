"""Errors a client can cause, and the one JSON shape every error answer takes.

`{"error": {"code": "...", "message": "...", "details": ...}}`: the message says what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from relay.core.crypto import EncryptionError
from relay.core.logging import get_logger
from relay.core.responses import JSONResponse

log = get_logger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 5


class RelayError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers


class NotFound(RelayError):
    status_code = 404
    code = "not_found"


class Conflict(RelayError):
    status_code = 409
    code = "conflict"


class Invalid(RelayError):
    status_code = 422
    code = "invalid"


class Unauthorized(RelayError):
    status_code = 401
    code = "unauthorized"


class Forbidden(RelayError):
    status_code = 403
    code = "forbidden"


class DatabaseUnavailable(RelayError):
    status_code = 503
    code = "database_unavailable"


class ErrorDetail(BaseModel):
    code: str = Field(description="What went wrong, for programs: not_found, invalid, conflict...")
    message: str = Field(description="What went wrong and what to fix, for people.")
    details: Any = Field(
        None,
        description="For a refused request body: one {field, message} per problem found.",
    )


class ErrorBody(BaseModel):
    """The body of every error answer of the relay (as `error_body` writes it)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "invalid",
                        "message": "slug: String should have at least 1 character",
                        "details": [
                            {"field": "slug", "message": "String should have at least 1 character"}
                        ],
                    }
                }
            ]
        }
    )

    error: ErrorDetail


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, details),
        status_code=status_code,
        headers=dict(headers) if headers else None,
    )


def is_database_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database cannot be reached", not "the query is wrong"."""
    # PoolTimeout: every connection of the pool stayed busy for RELAY_DB_CONNECT_TIMEOUT; to a
    # client that is the same "retry later" as a database that is down.
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        | asyncpg.exceptions.InterfaceError
        | asyncpg.exceptions.AdminShutdownError,
    ):
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_database_unavailable(cause)


def rejected_value(exc: BaseException) -> asyncpg.exceptions.DataError | None:
    """PostgreSQL's refusal of a value a client sent (a NUL character in a text, a number out of
    range), found anywhere in the cause chain; None for any other error."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, asyncpg.exceptions.DataError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "not JSON")
            position = error.get("loc", ("body", 0))[-1]
            details.append(
                {
                    "field": "",
                    "message": f"the request body is not JSON ({reason} at character {position}):"
                    ' send a JSON object, e.g. \'{"name": "value"}\'',
                }
            )
            continue
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        details.append({"field": location, "message": error.get("msg", "invalid")})
    return details


async def database_or_internal(request: Request, exc: Exception) -> JSONResponse:
    """The answer to an unexpected exception: 503 when the database is out of reach, 422 for a
    value PostgreSQL refused, else a 500 whose traceback goes to the log."""
    if is_database_unavailable(exc):
        log.warning("database_unavailable", path=request.url.path, error=type(exc).__name__)
        return error_response(
            503,
            "database_unavailable",
            "the database is unavailable; retry later",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    refused = rejected_value(exc)
    if refused is not None:
        log.info("value_refused_by_database", path=request.url.path, error=str(refused))
        return error_response(
            422,
            "invalid",
            f"a value in the request cannot be stored or searched for: {refused}; "
            "remove NUL characters and keep numbers and dates within range",
        )
    log.exception("unhandled_error", path=request.url.path)
    return error_response(500, "internal_error", "internal error; see the relay's log")


async def relay_error(_request: Request, exc: RelayError) -> JSONResponse:
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def encryption_error(request: Request, exc: EncryptionError) -> JSONResponse:
    # The operator's to fix, not the caller's; the message names no secret.
    log.error("encryption_error", path=request.url.path, error=str(exc))
    return error_response(500, "encryption_error", str(exc))


async def answer_exception(request: Request, exc: Exception) -> JSONResponse:
    """What the app's handlers answer for `exc`, for a path served outside FastAPI's stack."""
    if isinstance(exc, RelayError):
        return await relay_error(request, exc)
    if isinstance(exc, EncryptionError):
        return await encryption_error(request, exc)
    return await database_or_internal(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RelayError, relay_error)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        summary = "; ".join(
            f"{item['field']}: {item['message']}" if item["field"] else item["message"]
            for item in details
        )
        return error_response(422, "invalid", summary or "invalid request", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout"}.get(
            exc.status_code, "http_error"
        )
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    app.add_exception_handler(EncryptionError, encryption_error)  # type: ignore[arg-type]

    # Registered per class so the exception stops here; a handler for bare Exception runs in
    # Starlette's outermost middleware, which re-raises to the server after answering.
    for database_error in (DBAPIError, PoolTimeout, OSError, TimeoutError, asyncpg.PostgresError):
        app.add_exception_handler(database_error, database_or_internal)
    app.add_exception_handler(Exception, database_or_internal)
