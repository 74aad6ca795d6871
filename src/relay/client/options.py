"""Options every client command takes, and how a command turns failures into one line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer

from relay.client.http import DEFAULT_URL, ApiError, RelayClient, stored_token

P = ParamSpec("P")
R = TypeVar("R")

UrlOption = Annotated[
    str, typer.Option("--url", envvar="RELAY_URL", help="The relay's base URL (RELAY_URL).")
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="RELAY_ADMIN_TOKEN",
        help="Admin token (RELAY_ADMIN_TOKEN); default: the one in RELAY_DATA_DIR/admin-token.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
LimitOption = Annotated[int, typer.Option(min=1, max=500, help="Items per page (1-500).")]
CursorOption = Annotated[
    str | None, typer.Option(help="next_cursor of the previous page.", show_default=False)
]

DEFAULT = DEFAULT_URL


def connect(url: str, token: str | None) -> RelayClient:
    resolved = token or stored_token()
    if not resolved:
        raise ApiError(
            "no admin token: pass --token, set RELAY_ADMIN_TOKEN, or run where "
            "RELAY_DATA_DIR/admin-token is readable"
        )
    return RelayClient(url, resolved)


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def one_line_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Exits 1 with `error: <reason>` instead of a stack trace."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ApiError as exc:
            raise fail(str(exc)) from None

    return wrapper
