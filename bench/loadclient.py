"""Load clients shared by the benchmark suites and the reliability tests.

Everything runs on one (uvloop) event loop per load process and does no per-packet work
in the load path: viewers only count bytes once they play (RTMP viewers still send the
acknowledgements RTMP asks for, from the byte count alone), the publisher sends chunks
prepared before the clock starts. The same clients are used for mistpy and the peers.

* ``http_viewer`` -- one GET of a progressive stream (``/<s>.flv``), counting body bytes;
* ``rtmp_viewer`` -- handshake, connect, play; then counting bytes;
* ``http_get_loop`` -- keep-alive GETs of a list of paths (``Content-Length`` replies);
* ``rtmp_publisher`` -- publishes prepared ``FlvTag``s in real time (``read_flv_tags``);
* ``ViewerStats.kept_real_time`` -- the real-time test: bytes received over a window
  against the stream's byte rate;
* ``LoadThread`` -- an event loop in a background thread, for tests that need viewers
  running while they do something else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import struct
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mistcodecs.rtmp import ConnectResult, RtmpClientConnection, Status, StreamCreated
from mistcodecs.rtmp.chunks import ACKNOWLEDGEMENT, standalone_chunks

T = TypeVar("T")
READ_SIZE = 262_144
_TAG = struct.Struct(">BHBHBBHB")  # type, size (24 bits), ts (24 + 8), stream id (24)


class LoadError(RuntimeError):
    """A load client could not get its stream going (refused, closed, bad reply)."""


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


async def _count(
    reader: asyncio.StreamReader,
    stats: ViewerStats,
    until: float,
    sample_every: float,
    on_bytes: Any = None,
) -> None:
    while (left := until - time.monotonic()) > 0:
        try:
            data = await asyncio.wait_for(reader.read(READ_SIZE), left)
        except TimeoutError:
            break
        if not data:
            stats.closed = True
            break
        now = time.monotonic()
        _note(stats, len(data), now, sample_every)
        if on_bytes is not None:
            on_bytes(stats.bytes)
    stats.samples.append((time.monotonic(), stats.bytes))


async def http_viewer(
    host: str,
    port: int,
    path: str,
    seconds: float,
    stats: ViewerStats | None = None,
    sample_every: float = 0.5,
) -> ViewerStats:
    """GET ``path`` and count body bytes for ``seconds`` (or until the server closes)."""
    stats = stats or ViewerStats()
    stats.started = time.monotonic()
    until = stats.started + seconds
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), seconds)
    except (OSError, TimeoutError) as exc:
        stats.error = f"connect: {exc!r}"
        return stats
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = await asyncio.wait_for(
            reader.readuntil(b"\r\n\r\n"), max(0.1, until - time.monotonic())
        )
        parts = head.split(b" ", 2)
        stats.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if stats.status == 200:
            await _count(reader, stats, until, sample_every)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        stats.error = repr(exc)
    finally:
        writer.close()
    return stats


class _RtmpSetup:
    """The sans-IO client driven until the media starts flowing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = RtmpClientConnection(plain_handshake=True)
        self.events: list[Any] = []

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.writer.write(out)

    async def until(self, kind: type, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if isinstance(ev, kind):
                    del self.events[: i + 1]
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoadError(f"no {kind.__name__} from the server")
            data = await asyncio.wait_for(self.reader.read(65536), left)
            if not data:
                raise LoadError(f"server closed before {kind.__name__}")
            self.events += self.conn.receive_data(data)
            self.flush()

    async def open_stream(self, host: str, port: int, app: str, timeout: float) -> int:
        self.conn.connect(app, f"rtmp://{host}:{port}/{app}")
        self.flush()
        await self.until(ConnectResult, timeout)
        self.conn.create_stream()
        self.flush()
        created = await self.until(StreamCreated, timeout)
        return int(created.stream_id)

    async def status(self, code: str, timeout: float) -> None:
        while True:
            st = await self.until(Status, timeout)
            if st.code == code:
                return
            if st.level == "error":
                raise LoadError(f"{st.code}: {st.description}")


async def rtmp_viewer(
    host: str,
    port: int,
    app: str,
    stream: str,
    seconds: float,
    stats: ViewerStats | None = None,
    sample_every: float = 0.5,
) -> ViewerStats:
    """Play ``rtmp://host:port/app/stream`` and count bytes for ``seconds``."""
    stats = stats or ViewerStats()
    stats.started = time.monotonic()
    until = stats.started + seconds
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), seconds)
    except (OSError, TimeoutError) as exc:
        stats.error = f"connect: {exc!r}"
        return stats
    try:
        setup = _RtmpSetup(reader, writer)
        sid = await setup.open_stream(host, port, app, seconds)
        setup.conn.play(sid, stream)
        setup.flush()
        await setup.status("NetStream.Play.Start", max(0.1, until - time.monotonic()))
        stats.status = 1
        window = setup.conn.peer_window or 2_500_000
        acked = [0]

        def ack(total: int) -> None:
            # Acknowledge by byte count (what RTMP asks), never parse the media.
            if total - acked[0] >= window // 2:
                acked[0] = total
                payload = struct.pack(">I", total & 0xFFFFFFFF)
                writer.write(standalone_chunks(2, ACKNOWLEDGEMENT, 0, 0, payload, 128))

        await _count(reader, stats, until, sample_every, ack)
    except (OSError, TimeoutError, LoadError) as exc:
        stats.error = repr(exc)
    finally:
        writer.close()
    return stats


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


@dataclass(frozen=True)
class FlvTag:
    kind: str  # "audio" | "video"
    timestamp: int
    body: bytes


def read_flv_tags(path: Path) -> list[FlvTag]:
    """Audio and video tags of an FLV file (script tags dropped), read once before a run."""
    data = path.read_bytes()
    if data[:3] != b"FLV" or len(data) < 13:
        raise LoadError(f"{path}: not an FLV file")
    pos = int.from_bytes(data[5:9], "big") + 4
    tags: list[FlvTag] = []
    while pos + 11 <= len(data):
        mtype, size_hi, size_lo, ts_hi, ts_lo, ts_ext, _, _ = _TAG.unpack_from(data, pos)
        size = (size_hi << 8) | size_lo
        ts = (ts_ext << 24) | (ts_hi << 8) | ts_lo
        if pos + 11 + size > len(data):
            break  # truncated last tag
        if mtype in (8, 9):
            body = data[pos + 11 : pos + 11 + size]
            tags.append(FlvTag("audio" if mtype == 8 else "video", ts, body))
        pos += 11 + size + 4
    if not tags:
        raise LoadError(f"{path}: no audio/video tags")
    return tags


def prepare_chunks(
    tags: Sequence[FlvTag], stream_id: int, chunk_size: int
) -> list[tuple[int, bytes]]:
    """(timestamp, chunk bytes) per tag, each with a full header (state-free)."""
    out = []
    for tag in tags:
        csid, mtype = (6, 9) if tag.kind == "video" else (4, 8)
        out.append(
            (
                tag.timestamp,
                standalone_chunks(csid, mtype, stream_id, tag.timestamp, tag.body, chunk_size),
            )
        )
    return out


@dataclass
class PublishStats:
    started: float = 0.0  # when the first media was sent
    sent_bytes: int = 0
    sent_tags: int = 0
    max_lag: float = 0.0  # how late (s) a batch left the client after its due time
    error: str = ""
    done: bool = False


async def rtmp_publisher(
    host: str,
    port: int,
    app: str,
    stream: str,
    tags: Sequence[FlvTag],
    stats: PublishStats | None = None,
    prepared: dict[int, list[tuple[int, bytes]]] | None = None,
    tick: float = 0.02,
) -> PublishStats:
    """Publish ``tags`` paced by their timestamps. ``prepared`` caches the chunked bytes
    per message stream id between publishers (the same tags for every one)."""
    stats = stats or PublishStats()
    prepared = {} if prepared is None else prepared
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        stats.error = f"connect: {exc!r}"
        return stats
    pump: asyncio.Task[None] | None = None
    try:
        setup = _RtmpSetup(reader, writer)
        sid = await setup.open_stream(host, port, app, 15)
        setup.conn.publish(sid, stream)
        setup.flush()
        await setup.status("NetStream.Publish.Start", 15)
        chunk_size = setup.conn.writer.chunk_size
        if sid not in prepared:
            prepared[sid] = prepare_chunks(tags, sid, chunk_size)
        chunks = prepared[sid]

        async def drain_input() -> None:
            # The server's acknowledgements and pings: read (so its buffer never fills).
            while data := await reader.read(65536):
                setup.conn.receive_data(data)
                setup.flush()

        pump = asyncio.ensure_future(drain_input())
        t0 = stats.started = time.monotonic()
        base = chunks[0][0]
        i, n = 0, len(chunks)
        while i < n:
            elapsed_ms = (time.monotonic() - t0) * 1000
            j = i
            while j < n and chunks[j][0] - base <= elapsed_ms:
                j += 1
            if j > i:
                writer.write(b"".join(c for _, c in chunks[i:j]))
                await writer.drain()
                lag = time.monotonic() - t0 - (chunks[j - 1][0] - base) / 1000
                stats.max_lag = max(stats.max_lag, lag)
                stats.sent_bytes += sum(len(c) for _, c in chunks[i:j])
                stats.sent_tags += j - i
                i = j
            if pump.done():
                raise LoadError("server closed the publisher")
            await asyncio.sleep(tick)
        stats.done = True
    except (OSError, TimeoutError, LoadError) as exc:
        stats.error = repr(exc)
    finally:
        if pump is not None:
            pump.cancel()
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
