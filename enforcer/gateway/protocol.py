"""The check sidecar's HTTP connections: every answer is the sidecar's own, and no connection
holds a slot for long without sending a whole request.

aiohttp answers a request it cannot parse (a header over the size limit, a bad character, a
request line that is not HTTP) itself, before any handler or middleware runs: a plain-text
400 that quotes the offending bytes and carries no `X-Enforcer-Action`, so a gateway cannot
tell it from any other failure, and a traceback in the log for each one. SidecarProtocol
replaces that answer with one the sidecar builds (`on_error`).

aiohttp's `keepalive_timeout` closes a connection that sent nothing for that long since its
last answer, but offers no limit on how long a request's headers may take to arrive: a client
sending a byte every few seconds would hold its connection until the keep-alive timer ran out.
SidecarServer closes a connection whose request has not arrived whole `header_timeout_s` after
its first byte (or after the connection opened); `sweep()` checks every connection at once, so
a request costs one attribute write, not a timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

# Builds the answer to a request aiohttp could not parse or whose handler raised: the status
# aiohttp chose (400, or 500/504) and the exception, if any.
ErrorAnswer = Callable[[int, BaseException | None], web.Response]


class ThrottledLog:
    """At most one log line per `every_s` for one kind of event, each line counting the ones
    held back since the last. Malformed requests and fail-open answers come from the network
    at the network's pace; a line for each would let any client flood the log."""

    def __init__(
        self,
        logger: logging.Logger,
        every_s: float,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every_s = every_s
        self.level = level
        self.clock = clock
        self.held_back = 0
        self._next_at = float("-inf")

    def log(self, message: str, *args: Any, exc_info: BaseException | None = None) -> bool:
        """Log `message` unless a line went out less than `every_s` ago; True if logged."""
        now = self.clock()
        if now < self._next_at:
            self.held_back += 1
            return False
        self._next_at = now + self.every_s
        held_back, self.held_back = self.held_back, 0
        self.logger.log(
            self.level,
            message + " (%d more like it in the last %g s not logged)",
            *args,
            held_back,
            self.every_s,
            exc_info=exc_info,
        )
        return True


class SidecarProtocol(web.RequestHandler):
    """aiohttp's connection handler with the sidecar's error answers and a header deadline."""

    __slots__ = ("on_error", "request_started")

    def __init__(self, manager: web.Server, *, on_error: ErrorAnswer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.on_error = on_error
        # Monotonic time the request being received began; None while none is pending.
        self.request_started: float | None = time.monotonic()

    def data_received(self, data: bytes) -> None:
        if self.request_started is None and data:
            self.request_started = time.monotonic()
        super().data_received(data)

    def request_received(self) -> None:
        """The pending request arrived whole (headers, and any body the handler drained)."""
        self.request_started = None

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own version logs a traceback and answers with `message`, which quotes the
        # bad input; `on_error` does neither.
        self.request_received()
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already sent; cannot send the error answer")
        response = self.on_error(status, exc)
        response.force_close()
        return response


async def _drain(request: web.BaseRequest, limit: int) -> bool:
    """Read and drop a request's body; False (and stop reading) once it exceeds `limit`."""
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            return False
    return True


class SidecarServer(web.Server):
    """aiohttp's low-level server making SidecarProtocol connections."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        on_error: ErrorAnswer,
        header_timeout_s: float,
        max_body_bytes: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(self._dispatch, **kwargs)
        self._handler = handler
        self._protocol_kwargs = kwargs
        self._on_error = on_error
        self.header_timeout_s = header_timeout_s
        self.max_body_bytes = max_body_bytes
        self._event_loop = asyncio.get_running_loop()

    def __call__(self) -> SidecarProtocol:
        return SidecarProtocol(
            self, loop=self._event_loop, on_error=self._on_error, **self._protocol_kwargs
        )

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        protocol = request.protocol
        if isinstance(protocol, SidecarProtocol):
            protocol.request_received()
            if request.body_exists:
                # A body's bytes arriving after its headers restart the request clock; read
                # them now, under the same deadline, so the clock is clear once answered.
                try:
                    complete = await _drain(request, self.max_body_bytes)
                except OSError:  # closed for taking too long, or by the client
                    return web.Response(status=408)
                if not complete:
                    return self._on_error(413, None)
                protocol.request_received()
        return await self._handler(request)

    def sweep(self, now: float | None = None) -> int:
        """Close every connection whose pending request is older than `header_timeout_s`;
        returns how many were closed."""
        now = time.monotonic() if now is None else now
        closed = 0
        for connection in self.connections:
            if not isinstance(connection, SidecarProtocol):
                continue
            started = connection.request_started
            if started is not None and now - started > self.header_timeout_s:
                connection.request_received()
                connection.force_close()
                closed += 1
        return closed
