"""A real HTTP subscriber on 127.0.0.1 for integration tests: records every request it gets
and answers from a script (status codes, delays, hangs), so signatures, timeouts and retries
are exercised over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass(slots=True)
class Answer:
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


class Subscriber:
    """Answers `default` unless a path has a scripted queue of answers (used up in order)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.scripts: dict[str, deque[Answer]] = {}
        self.defaults: dict[str, Answer] = {}
        self.default = Answer()
        self.arrived = asyncio.Event()
        self.base_url = ""
        self._server: uvicorn.Server | None = None

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    def script(self, path: str, *answers: Answer, then: Answer | None = None) -> None:
        self.scripts[path] = deque(answers)
        if then is not None:
            self.defaults[path] = then

    def on(self, path: str) -> list[Received]:
        return [item for item in self.received if item.path == path]

    async def wait_for(
        self, count: int, *, path: str | None = None, within: float = 20.0
    ) -> list[Received]:
        """Waits until `count` requests (to `path`, or any) arrived; fails after `within` s."""

        def matching() -> list[Received]:
            return self.received if path is None else self.on(path)

        async with asyncio.timeout(within):
            while len(matching()) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return matching()

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        self.received.append(
            Received(path=path, headers=dict(request.headers), body=body, at=time.monotonic())
        )
        self.arrived.set()
        queue = self.scripts.get(path)
        answer = queue.popleft() if queue else self.defaults.get(path, self.default)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return Response(answer.body, status_code=answer.status, headers=answer.headers)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST", "GET"])])

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Subscriber]:
        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        task = asyncio.create_task(server.serve())
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn has no startup event to await
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            server.should_exit = True
            server.force_exit = True
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(5):
                    await task


async def eventually(check: Callable[[], object], *, within: float = 20.0) -> None:
    """Polls `check` (sync, or returning an awaitable) until it returns truthy."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)
