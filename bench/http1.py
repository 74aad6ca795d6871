"""The latency figures' vendor: HTTP/1.1 POSTs over keep-alive connections, with h11 doing the
protocol, on the event loop's own transports.

httpx costs about 2 ms of CPU per request on the 2-core bench machine: at 200 webhooks/s the
load generator took 90 % of a core, the core the relay and PostgreSQL needed, and its own
queueing showed up in every latency it measured. This client does only what the figures need
(one host, POST, a body known in full, keep-alive), for a tenth of that.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

import h11


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.protocol = h11.Connection(h11.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.response: asyncio.Future[int] | None = None
        self.status = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        self._read_events()

    def eof_received(self) -> bool | None:
        self.protocol.receive_data(b"")
        self._read_events()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None and not self.response.done():
            self.response.set_exception(exc or ConnectionResetError("connection closed"))

    def _read_events(self) -> None:
        while self.response is not None:
            try:
                event = self.protocol.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(exc)
                return
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                response, self.response = self.response, None
                if not response.done():
                    response.set_result(self.status)
            elif isinstance(event, h11.ConnectionClosed):
                self._fail(ConnectionResetError("closed before the response ended"))

    def _fail(self, exc: Exception) -> None:
        response, self.response = self.response, None
        if response is not None and not response.done():
            response.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def send(self, request: h11.Request, body: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.response = asyncio.get_running_loop().create_future()
        self.transport.write(
            self.protocol.send(request)
            + self.protocol.send(h11.Data(data=body))
            + self.protocol.send(h11.EndOfMessage())
        )
        return self.response

    def reusable(self) -> bool:
        if self.closed or self.protocol.our_state is not h11.DONE:
            return False
        if self.protocol.their_state is not h11.DONE:
            return False
        self.protocol.start_next_cycle()
        return True


class Vendor:
    """POSTs to one URL, reusing idle connections and opening new ones as needed."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str]) -> None:
        self.host = host
        self.port = port
        self.path = path.encode()
        self.headers = [(b"host", f"{host}:{port}".encode())] + [
            (name.lower().encode(), value.encode()) for name, value in headers.items()
        ]
        self.idle: deque[_Connection] = deque()
        self.opened = 0

    async def post(self, body: bytes) -> int:
        """The response's status. Raises OSError or h11.ProtocolError if the connection
        fails."""
        connection = await self._connection()
        request = h11.Request(
            method="POST",
            target=self.path,
            headers=[*self.headers, (b"content-length", str(len(body)).encode())],
        )
        response = connection.send(request, body)
        try:
            status = await response
        except BaseException:
            if connection.transport is not None:
                connection.transport.close()
            raise
        if connection.reusable():
            self.idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()
        return status

    async def _connection(self) -> _Connection:
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                return connection
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection, self.host, self.port
        )
        self.opened += 1
        return connection

    def close(self) -> None:
        while self.idle:
            connection = self.idle.pop()
            if connection.transport is not None:
                connection.transport.close()
