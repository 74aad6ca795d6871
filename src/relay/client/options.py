"""Options every client command takes, and how a command turns failures into one line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer

from relay.client.http import ApiError, RelayClient, find_relay

P = ParamSpec("P")
R = TypeVar("R")

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="The relay's base URL. Default: RELAY_URL, else RELAY_PUBLIC_URL, else "
        "http://RELAY_HOST:RELAY_PORT, from the environment or .env.",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Admin token or API key. Default: RELAY_ADMIN_TOKEN (environment or .env), else "
        "RELAY_DATA_DIR/admin-token when the relay is the embedded one.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
LimitOption = Annotated[int, typer.Option(min=1, max=500, help="Items per page (1-500).")]
CursorOption = Annotated[
    str | None, typer.Option(help="next_cursor of the previous page.", show_default=False)
]

DEFAULT = None


def connect(url: str | None, token: str | None) -> RelayClient:
    target = find_relay(url, token)
    if not target.token:
        raise ApiError(
            f"no token for the relay at {target.url}: pass --token or set RELAY_ADMIN_TOKEN (in "
            "the environment or .env) to its admin token or an API key; RELAY_DATA_DIR/"
            "admin-token is only used for the embedded relay (no RELAY_URL, no "
            "RELAY_DATABASE_URL)"
        )
    return RelayClient(target.url, target.token)


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
