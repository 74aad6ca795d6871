"""The web console under /console: server-rendered pages over the services the API uses."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from relay.console import live as _live  # noqa: F401 - registers /console/live on the router
from relay.console.endpoints import router
from relay.console.rendering import HERE


def install_console(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
