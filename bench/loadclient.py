"""Load clients shared by the benchmark suites and the reliability tests.

Everything runs on one (uvloop) event loop per load process and does no per-packet work
in the load path: viewers parse only their set-up, then count bytes (RTMP viewers still
send the acknowledgements RTMP asks for, from the byte count alone; ``rcvlowat`` lets
the kernel batch wake-ups), the publisher sends chunks prepared before the clock starts
(``bench.publisher``). The same clients are used for mistpy and the peers.

* ``http_viewer`` -- one GET of a progressive stream (``/<s>.flv``), counting body bytes;
* ``rtmp_viewer`` -- handshake, connect, play; then counting bytes;
* ``http_get_loop`` -- keep-alive GETs of a list of paths (``Content-Length`` replies);
* ``rtmp_publisher`` / ``read_flv_tags`` -- from ``bench.publisher`` (re-exported);
* ``ViewerStats.kept_real_time`` -- the real-time test: bytes received over a window
  against the stream's byte rate;
* ``LoadThread`` -- an event loop in a background thread, for tests that need viewers
  running while they do something else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.publisher import (
    FlvTag,
    LoadError,
    PublishStats,
    prepare_chunks,
    read_flv_tags,
    rtmp_publisher,
)
from mistcodecs.rtmp import ConnectResult, RtmpClientConnection, Status, StreamCreated
from mistcodecs.rtmp.chunks import ACKNOWLEDGEMENT, standalone_chunks

__all__ = [
    "FlvTag",
    "GetStats",
    "LoadError",
    "LoadThread",
    "PublishStats",
    "ViewerStats",
    "http_get_loop",
    "http_viewer",
    "prepare_chunks",
    "read_flv_tags",
    "rtmp_publisher",
    "rtmp_viewer",
    "run",
]

T = TypeVar("T")
OnData = Callable[[bytes, float], None]  # the bytes of one read, its monotonic time


@dataclass
class ViewerStats:
    """What one viewer saw. ``samples`` are (monotonic time, cumulative bytes) pairs
    taken at most every ``sample_every`` s while data arrives."""

    started: float = 0.0
    first_byte: float = 0.0
    last_byte: float = 0.0
    bytes: int = 0
    status: int = 0  # HTTP status, or 1 once an RTMP play started
    closed: bool = False  # the server ended the stream
    error: str = ""
    max_gap: float = 0.0  # longest silence between reads after the first byte
    samples: list[tuple[float, int]] = field(default_factory=list)

    def bytes_between(self, start: float, end: float) -> int:
        """Bytes received in [start, end], from the samples (step interpolation)."""
        before = after = 0
        for t, b in self.samples:
            if t <= start:
                before = b
            if t <= end:
                after = b
        return max(0, after - before)

    def kept_real_time(self, start: float, end: float, byte_rate: float, ratio: float) -> bool:
        """At least ``ratio`` of ``byte_rate`` arrived during [start, end]."""
        return self.bytes_between(start, end) >= ratio * byte_rate * (end - start)


def _note(stats: ViewerStats, n: int, now: float, sample_every: float) -> None:
    if stats.bytes == 0:
        stats.first_byte = now
    elif now - stats.last_byte > stats.max_gap:
        stats.max_gap = now - stats.last_byte
    stats.bytes += n
    stats.last_byte = now
    if not stats.samples or now - stats.samples[-1][0] >= sample_every:
        stats.samples.append((now, stats.bytes))


class _Viewer(asyncio.Protocol):
    """One viewer: the set-up is parsed (HTTP status line, RTMP until play starts), then
    bytes are only counted (``on_data`` may look at them, e.g. for stamps)."""

    def __init__(
        self, stats: ViewerStats, sample_every: float, on_data: OnData | None, rcvlowat: int
    ) -> None:
        self.stats = stats
        self.sample_every = sample_every
        self.on_data = on_data
        self.rcvlowat = rcvlowat
        self.transport: asyncio.Transport | None = None
        self.raw = False  # counting
        self.closing = False  # we close it: not the server's doing
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.start()

    def start(self) -> None:
        raise NotImplementedError

    def setup(self, data: bytes) -> None:
        raise NotImplementedError

    def counted(self) -> None:
        """Called after every counted read (RTMP acknowledges from here)."""

    def data_received(self, data: bytes) -> None:
        if not self.raw:
            self.setup(data)
            return
        now = time.monotonic()
        _note(self.stats, len(data), now, self.sample_every)
        if self.on_data is not None:
            self.on_data(data, now)
        self.counted()

    def go_raw(self, rest: bytes = b"") -> None:
        """From here on only count; with ``rcvlowat`` the kernel wakes us per that many
        bytes rather than per server write (the load client must cost far less than the
        server it loads)."""
        self.raw = True
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if self.rcvlowat and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, self.rcvlowat)
        if rest:
            self.data_received(rest)

    def finish(self, error: str = "") -> None:
        if error and not self.stats.error:
            self.stats.error = error
        if not self.done.done():
            self.done.set_result(None)
        if self.transport is not None and not self.transport.is_closing():
            self.closing = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.raw and not self.closing:
            self.stats.closed = True
        self.finish("" if self.raw or self.closing else f"closed during set-up: {exc!r}")


class _HttpViewer(_Viewer):
    def __init__(self, path: str, host: str, *args: Any) -> None:
        super().__init__(*args)
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        self.head = b""

    def start(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request.encode())

    def setup(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > 65536:
                self.finish("response head over 64 KiB")
            return
        parts = self.head.split(b" ", 2)
        self.stats.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if self.stats.status != 200:
            self.finish()
            return
        rest, self.head = self.head[end + 4 :], b""
        self.go_raw(rest)


class _RtmpViewer(_Viewer):
    def __init__(self, app: str, stream: str, tc_url: str, *args: Any) -> None:
        super().__init__(*args)
        self.app, self.stream, self.tc_url = app, stream, tc_url
        self.conn = RtmpClientConnection(plain_handshake=True)
        self.total = self.acked = 0  # bytes received, as RTMP counts them
        self.window = 0

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def start(self) -> None:
        self.conn.connect(self.app, self.tc_url)
        self.flush()

    def setup(self, data: bytes) -> None:
        for ev in self.conn.receive_data(data):
            if isinstance(ev, ConnectResult):
                self.conn.create_stream()
            elif isinstance(ev, StreamCreated):
                self.conn.play(ev.stream_id, self.stream)
            elif isinstance(ev, Status) and ev.code == "NetStream.Play.Start":
                self.stats.status = 1
                self.total = self.acked = self.conn.reader.bytes_received
                self.window = self.conn.peer_window or 2_500_000
                self.flush()
                self.go_raw()
                return
            elif isinstance(ev, Status) and ev.level == "error":
                self.finish(f"{ev.code}: {ev.description}")
                return
        self.flush()

    def counted(self) -> None:
        # Acknowledge by byte count (what RTMP asks), never parse the media.
        self.total = self.conn.reader.bytes_received + self.stats.bytes
        if self.total - self.acked >= self.window // 2 and self.transport is not None:
            self.acked = self.total
            payload = struct.pack(">I", self.total & 0xFFFFFFFF)
            self.transport.write(standalone_chunks(2, ACKNOWLEDGEMENT, 0, 0, payload, 128))


async def _watch(
    factory: Callable[[], _Viewer], host: str, port: int, seconds: float, stats: ViewerStats
) -> ViewerStats:
    stats.started = time.monotonic()
    until = stats.started + seconds
    loop = asyncio.get_running_loop()
    try:
        _, proto = await asyncio.wait_for(loop.create_connection(factory, host, port), seconds)
    except (OSError, TimeoutError) as exc:
        stats.error = f"connect: {exc!r}"
        return stats
    try:
        await asyncio.wait_for(asyncio.shield(proto.done), max(0.0, until - time.monotonic()))
    except TimeoutError:
        if not proto.raw and not stats.status:
            stats.error = "timed out during set-up"
    finally:
        proto.finish()
        stats.samples.append((time.monotonic(), stats.bytes))
    return stats


async def http_viewer(
    host: str,
    port: int,
    path: str,
    seconds: float,
    stats: ViewerStats | None = None,
    sample_every: float = 0.5,
    on_data: OnData | None = None,
    rcvlowat: int = 0,
) -> ViewerStats:
    """GET ``path`` and count body bytes for ``seconds`` (or until the server closes)."""
    st = stats or ViewerStats()
    return await _watch(
        lambda: _HttpViewer(path, host, st, sample_every, on_data, rcvlowat),
        host, port, seconds, st,
    )  # fmt: skip


async def rtmp_viewer(
    host: str,
    port: int,
    app: str,
    stream: str,
    seconds: float,
    stats: ViewerStats | None = None,
    sample_every: float = 0.5,
    on_data: OnData | None = None,
    rcvlowat: int = 0,
) -> ViewerStats:
    """Play ``rtmp://host:port/app/stream`` and count bytes for ``seconds``."""
    st = stats or ViewerStats()
    url = f"rtmp://{host}:{port}/{app}"
    return await _watch(
        lambda: _RtmpViewer(app, stream, url, st, sample_every, on_data, rcvlowat),
        host, port, seconds, st,
    )  # fmt: skip


@dataclass
class GetStats:
    requests: int = 0
    bytes: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


async def http_get_loop(
    host: str, port: int, paths: Sequence[str], seconds: float, stats: GetStats | None = None
) -> GetStats:
    """GET ``paths`` round-robin on one keep-alive connection for ``seconds``; replies
    must carry ``Content-Length`` (static files, segments)."""
    stats = stats or GetStats()
    until = time.monotonic() + seconds
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    reqs = [f"GET {p} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for p in paths]
    i = 0
    try:
        while time.monotonic() < until:
            t0 = time.monotonic()
            writer.write(reqs[i % len(reqs)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = -1
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length < 0 or not head.startswith(b"HTTP/1.1 200"):
                stats.errors += 1
                break
            await reader.readexactly(length)
            stats.latencies.append(time.monotonic() - t0)
            stats.requests += 1
            stats.bytes += length
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        stats.errors += 1
    finally:
        writer.close()
    return stats


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh uvloop loop."""
    loop = new_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


class LoadThread:
    """An event loop in a daemon thread: ``submit(coro)`` returns a concurrent Future."""

    def __init__(self) -> None:
        self.loop = new_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        """Cancel what still runs (clients close their sockets on cancel), then stop."""

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.05)  # let closed transports release their handles

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        try:
            self.loop.close()
        except OSError:
            pass  # a handle still busy: the thread's loop is gone either way

    def __enter__(self) -> LoadThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
