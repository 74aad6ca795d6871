"""The ASGI application: routers, error handling, request ids, database lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay import __version__
from relay.apikeys.auth import AdminAuthMiddleware, load_or_create_admin_token
from relay.apikeys.endpoints import router as api_keys_router
from relay.background import BackgroundWork
from relay.console import install_console
from relay.core.crypto import install_from_settings
from relay.core.errors import install_error_handlers
from relay.core.ids import new_id
from relay.core.netguard import DestinationPolicy
from relay.core.responses import JSONResponse
from relay.core.serving import BodyDeadlineMiddleware
from relay.core.settings import Settings
from relay.db.engine import create_engine, create_session_factory, resolve_database_url
from relay.deliveries.endpoints import router as deliveries_router
from relay.dispatcher.sender import create_client
from relay.events.endpoints import router as events_router
from relay.health.endpoints import router as health_router
from relay.ingest.batcher import GroupCommit
from relay.ingest.directory import SourceDirectory
from relay.ingest.endpoints import admin_router as requests_router
from relay.ingest.endpoints import ingest_slug, serve_ingest
from relay.ingest.endpoints import router as ingest_router
from relay.ingest.sample import router as source_test_router
from relay.ingest.service import IngestService
from relay.jobs.endpoints import router as jobs_router
from relay.observability import metrics as observability
from relay.observability.activity import router as activity_router
from relay.observability.endpoints import router as metrics_router
from relay.openapi import install_openapi
from relay.outbox.wakeup import DeliveryWakeup
from relay.sources.endpoints import router as sources_router
from relay.stats.endpoints import router as stats_router
from relay.subscriptions.endpoints import router as subscriptions_router


class RequestIdMiddleware:
    """Gives every request an id, binds it to the log context and returns it as X-Request-ID."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req")
        scope.setdefault("state", {})["request_id"] = request_id
        header = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", header)]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)


class JsonBodyMiddleware:
    """Reads every admin request body as JSON, whatever its Content-Type says.

    `curl -d` labels its body application/x-www-form-urlencoded, and FastAPI would then hand the
    raw bytes to validation, which answers with a message about dictionaries that does not say
    what to fix. The admin API takes nothing but JSON, so the label carries no information."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            headers = [(name, value) for name, value in scope["headers"] if name != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


class RelayApp(FastAPI):
    """The relay's FastAPI app, but for webhooks: POST /ingest/{slug}, the one path that runs
    hundreds of times a second, goes through the relay's own middlewares only (see
    `serve_ingest`)."""

    ingest_stack: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slug = ingest_slug(scope)
        if slug is not None:
            scope["app"] = self
            scope["path_params"] = {"slug": slug}
            await self.ingest_stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings, *, database_url: str | None = None, run_dispatcher: bool = False
) -> FastAPI:
    """Builds the app. `database_url` overrides the settings (the CLI resolves it once);
    `run_dispatcher` runs a dispatcher in the same process for as long as the app runs."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The dispatcher task started below inherits the binding: it counts into this app.
        observability.bind(app.state.metrics)
        url = database_url or resolve_database_url(settings)
        engine = create_engine(url, settings)
        app.state.engine = engine
        app.state.database_url = url
        app.state.session_factory = create_session_factory(engine)
        # The ingest writes each outcome in one statement, which is atomic by itself.
        ingest_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        wakeup = DeliveryWakeup(ingest_engine)
        directory = SourceDirectory(ingest_engine)
        group_commit = GroupCommit(ingest_engine, on_stored=wakeup.deliveries_due)
        app.state.ingest = IngestService(
            ingest_engine,
            directory=directory,
            group_commit=group_commit,
            max_json_depth=settings.max_json_depth,
        )
        app.state.http_client = create_client(
            max_connections=settings.dispatcher_concurrency,
            policy=DestinationPolicy.from_settings(settings),
        )
        if not hasattr(app.state, "admin_token"):
            app.state.admin_token, _ = load_or_create_admin_token(settings)
        background: BackgroundWork | None = None
        background_task: asyncio.Task[None] | None = None
        if run_dispatcher:
            background = BackgroundWork(settings, app.state.session_factory, url, wakeup=wakeup)
            background_task = asyncio.create_task(background.run(), name="relay-background")
        try:
            yield
        finally:
            if background is not None and background_task is not None:
                background.stop()
                await background_task
            await group_commit.drain()
            await wakeup.aclose()
            await app.state.http_client.aclose()
            await engine.dispose()

    app = RelayApp(
        title="relay",
        version=__version__,
        summary="Webhook relay for last-mile delivery platforms",
        default_response_class=JSONResponse,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # The relay has its own metrics (/metrics) and logs; FastAPI's OpenTelemetry hooks
        # would ask for a global provider on every request (9 % of the ingest's time).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    # Before any request or dispatcher can read or write a secret column.
    install_from_settings(settings)
    app.state.metrics = observability.Metrics()
    install_error_handlers(app)
    # Each one added wraps those before it: the outermost comes last.
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(AdminAuthMiddleware)
    app.add_middleware(BodyDeadlineMiddleware, timeout=settings.request_body_timeout)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(observability.MetricsMiddleware, metrics=app.state.metrics)
    # The same three, in the same order, around the webhook path.
    app.ingest_stack = observability.MetricsMiddleware(
        RequestIdMiddleware(
            BodyDeadlineMiddleware(serve_ingest, timeout=settings.request_body_timeout)
        ),
        metrics=app.state.metrics,
    )
    for router in (
        health_router,
        ingest_router,
        sources_router,
        source_test_router,
        events_router,
        requests_router,
        subscriptions_router,
        deliveries_router,
        jobs_router,
        metrics_router,
        activity_router,
        stats_router,
        api_keys_router,
    ):
        app.include_router(router)
    if settings.console_enabled:
        install_console(app)
    install_openapi(app)
    return app
