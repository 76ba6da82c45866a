"""The asyncio adapter of MistOutHTTP: one :class:`HttpConnection` per TCP connection.

It feeds received bytes to the sans-IO :class:`~outputs.http.parser.RequestParser`, runs
one request at a time through the application handler and writes the answer straight
to the transport. Timers guard the connection: a request head must complete within
``header_timeout`` of its first byte (slowloris -> 408) and an idle keep-alive
connection closes after ``idle_timeout`` (60 s, as MistServer).

The connection is also the :class:`~outputs.http.message.Sink` of streamed bodies and
the *viewer* handle of the live fan-out: ``transport.write`` is called directly and the
transport's flow control (``pause_writing``/``resume_writing`` at the high/low water
marks) is reported to a listener, so a slow viewer is detected without any per-write
Python bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from outputs.http.message import Request, Response, error_response
from outputs.http.parser import HttpError, Limits, RequestParser

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
WRITE_HIGH_WATER = 512 * 1024
WRITE_LOW_WATER = 64 * 1024
MAX_PIPELINED = 16  # parsed requests queued per connection before reading pauses


class FlowListener(Protocol):
    def on_pause(self) -> None: ...

    def on_resume(self) -> None: ...


class HttpConnection(asyncio.Protocol):
    def __init__(
        self,
        handler: Handler,
        *,
        idle_timeout: float = 60.0,
        header_timeout: float = 10.0,
        max_buffer: int = WRITE_HIGH_WATER,
        limits: Limits | None = None,
        registry: set[HttpConnection] | None = None,
    ) -> None:
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.max_buffer = max_buffer  # bytes queued for a viewer before it counts as slow
        self.parser = RequestParser(limits)
        self.registry = registry
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.flow: FlowListener | None = None  # set by the fan-out while this viewer is live
        self._queue: list[Request] = []
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._header_deadline = False
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._closed = False
        self._streaming = False

    # ---- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not an asyncio.Transport subclass, but behaves as one.
        tr: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = tr
        tr.set_write_buffer_limits(
            high=self.max_buffer, low=min(WRITE_LOW_WATER, self.max_buffer // 4)
        )
        peer = tr.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else ""
        if self.registry is not None:
            self.registry.add(self)
        self._arm(self.idle_timeout, self._on_idle)

    def data_received(self, data: bytes) -> None:
        if self._closed or self._streaming:
            return  # nothing more is read once a streamed body started
        try:
            requests = self.parser.feed(data)
        except HttpError as exc:
            self._fail(exc.status, str(exc))
            return
        for req in requests:
            req.peer = self.peer
            self._queue.append(req)
        if len(self._queue) >= MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()  # a client pipelining without reading waits
        if self._task is None:
            if self._queue:
                self._start_next()
            elif self.parser.in_request and not self._header_deadline:
                self._arm(self.header_timeout, self._on_header_timeout, header=True)

    def eof_received(self) -> bool | None:
        if self._task is None and not self._queue:
            self.close()
        return True  # keep the write side open until the current answer is sent

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        if self.registry is not None:
            self.registry.discard(self)
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:
        self._paused = True
        if self.flow is not None:
            self.flow.on_pause()

    def resume_writing(self) -> None:
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self.flow is not None:
            self.flow.on_resume()

    # ---- Sink ---------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self._closed and self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait for the write buffer to drain; a client that reads nothing for
        ``idle_timeout`` seconds is disconnected (it would hold a reader forever)."""
        if self._paused and not self._closed:
            loop = asyncio.get_running_loop()
            self._drain = loop.create_future()
            try:
                await asyncio.wait_for(self._drain, self.idle_timeout)
            except TimeoutError:
                log.info("closing %s: it read nothing for %.0f s", self.peer, self.idle_timeout)
                self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def writing_paused(self) -> bool:
        return self._paused

    def close(self) -> None:
        if not self._closed and self.transport is not None:
            self._closed = True
            self.transport.close()

    # ---- request handling -------------------------------------------------------------
    def _start_next(self) -> None:
        self._cancel_timer()
        req = self._queue.pop(0)
        if len(self._queue) == MAX_PIPELINED - 1 and self.transport is not None:
            self.transport.resume_reading()
        self._task = asyncio.get_running_loop().create_task(
            self._serve(req), name=f"http {req.target[:60]}"
        )

    async def _serve(self, req: Request) -> None:
        try:
            try:
                resp = await self.handler(req)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handler failed for %s", req.target)
                resp = error_response(500, "Internal server error")
            keep = req.keep_alive and not self._closed
            self.write(resp.head_bytes(keep))
            if resp.stream is not None and "Content-Length" not in resp.headers:
                keep = False
            if req.method != "HEAD":
                if resp.stream is not None:
                    self._streaming = not keep
                    await resp.stream(self)
                else:
                    self.write(resp.body)
        except asyncio.CancelledError:
            self.close()
            return
        except Exception:
            log.exception("streaming %s failed", req.target)
            keep = False
        finally:
            self._task = None
            self.flow = None
        if not keep or self._closed:
            self.close()
            return
        if self._queue:
            self._start_next()
        elif self.parser.in_request:
            self._arm(self.header_timeout, self._on_header_timeout, header=True)
        else:
            self._arm(self.idle_timeout, self._on_idle)

    def _fail(self, status: int, message: str) -> None:
        """Answer a protocol error and close (after any answer in progress)."""
        self._queue.clear()
        if self._task is None and self.transport is not None and not self._closed:
            self.write(error_response(status, message).head_bytes(False))
            self.write(error_response(status, message).body)
        self.close()

    # ---- timers -------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Callable[[], None], header: bool = False) -> None:
        """One timer per connection; the header deadline is not pushed back by more bytes."""
        self._cancel_timer()
        self._header_deadline = header
        self._timer = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._header_deadline = False

    def _on_idle(self) -> None:
        if self._task is None:
            if self.parser.in_request:
                self._on_header_timeout()
            else:
                self.close()

    def _on_header_timeout(self) -> None:
        if self._task is None:
            self._fail(408, "Request header not received in time")
