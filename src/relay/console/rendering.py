"""Templates and the answer every console page shares: HTML with autoescaping on (a vendor's
payload or a subscriber's answer is always text, never markup), a Content-Security-Policy that
runs no inline script, and the console's own error page instead of the API's JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.responses import HTMLResponse, RedirectResponse, Response

from relay.console.security import (
    FLASH_COOKIE,
    CsrfRefused,
    LoginRequired,
    Viewer,
    current_viewer,
    take_flash,
)
from relay.core.errors import RelayError

HERE = Path(__file__).parent

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _utc(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


# An en dash stands for "no value" in tables.
NONE = "\u2013"


def _duration_ms(value: float | int | None) -> str:
    if value is None:
        return NONE
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.1f} s"
    return _age(timedelta(milliseconds=value))


def _age(value: timedelta | float | None) -> str:
    if value is None:
        return NONE
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _count(value: int | None, unit: str = "") -> str:
    text = NONE if value is None else f"{value:,}".replace(",", "\u2009")
    return f"{text} {unit}".strip() if unit and value is not None else text


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def _percent(part: int | None, whole: int | None) -> int:
    if not whole:
        return 100 if whole == 0 else 0
    # Rounded down: 100 % only when all of it is done, never 99.6 % shown as 100 %.
    return min(100, 100 * (part or 0) // whole)


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(
    utc=_utc, duration_ms=_duration_ms, age=_age, count=_count, pretty=_pretty, percent=_percent
)


def render(
    request: Request,
    name: str,
    viewer: Viewer | None,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    notice = take_flash(request)
    html = templates.get_template(name).render(
        request=request,
        viewer=viewer,
        can=viewer.actions if viewer is not None else {},
        notice=notice,
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    if notice is not None:
        response.delete_cookie(FLASH_COOKIE, path="/console")
    return response


async def _viewer_if_signed_in(request: Request) -> Viewer | None:
    # An error page keeps the navigation of whoever is signed in.
    try:
        return await current_viewer(request)
    except LoginRequired:
        return None


class ConsoleRoute(APIRoute):
    """Every console answer carries the security headers; a missing session redirects to the
    login form, and an error a person can cause (a wrong id, a conflict) is a page saying so."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                response = RedirectResponse("/console/login", status_code=303)
            except CsrfRefused:
                response = render(
                    request,
                    "error.html",
                    None,
                    {
                        "title": "Form expired",
                        "message": "This form was not sent from a console page of this "
                        "session (its CSRF token is missing or wrong). Reload the page and "
                        "try again.",
                    },
                    status_code=403,
                )
            except RelayError as exc:
                response = render(
                    request,
                    "error.html",
                    await _viewer_if_signed_in(request),
                    {"title": f"{exc.status_code}: {exc.code}", "message": exc.message},
                    status_code=exc.status_code,
                )
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return console_handler
