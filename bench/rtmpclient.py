"""A small asyncio RTMP client on the sans-IO ``RtmpClientConnection``, shared by the load
clients (publisher set-up), the live tests and the reliability tests.

``Client`` gets a connection to any point of the set-up (handshake, ``connect``,
``createStream``, a status code) and leaves the socket to the caller from there: send
garbage, publish, or ``play`` and record what arrives (``PlayStats``: media timestamps
and arrival times, statuses, optionally read slowly or with a small receive buffer).
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field

from mistcodecs.rtmp import (
    ConnectResult,
    Event,
    MediaMessage,
    RtmpClientConnection,
    Status,
    StreamCreated,
)


@dataclass
class PlayStats:
    started: float = 0.0
    bytes: int = 0
    media: list[tuple[float, int]] = field(default_factory=list)  # (arrival, video ts)
    statuses: list[str] = field(default_factory=list)
    closed: bool = False

    def max_lag(self, after: float = 1.0) -> float:
        """The largest (wall clock elapsed - media elapsed) after the first ``after`` s."""
        if len(self.media) < 2:
            return float("inf")
        t0, m0 = self.media[0]
        lags = [(t - t0) - (m - m0) / 1000 for t, m in self.media if t - t0 >= after]
        return max(lags, default=float("inf"))


class Client:
    def __init__(self, host: str, port: int, app: str = "live") -> None:
        self.host, self.port, self.app = host, port, app
        self.conn = RtmpClientConnection(plain_handshake=True)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.events: list[Event] = []

    async def open(self, rcvbuf: int = 0) -> None:
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=1 << 20)

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.writer is not None:
            self.writer.write(out)

    async def until(self, kind: type, timeout: float = 10.0) -> Event:
        """The next event of ``kind`` (earlier events are dropped)."""
        assert self.reader is not None
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if isinstance(ev, kind):
                    del self.events[: i + 1]
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind.__name__} from the server")
            data = await asyncio.wait_for(self.reader.read(65536), left)
            if not data:
                raise ConnectionError(f"server closed before {kind.__name__}")
            self.events += self.conn.receive_data(data)
            self.flush()

    async def handshake(self, timeout: float = 10.0) -> None:
        """Connect and complete the handshake and ``connect`` (then send what you like)."""
        await self.open()
        self.conn.connect(self.app, f"rtmp://{self.host}:{self.port}/{self.app}")
        self.flush()
        await self.until(ConnectResult, timeout)

    async def create_stream(self, timeout: float = 10.0) -> int:
        self.conn.create_stream()
        self.flush()
        ev = await self.until(StreamCreated, timeout)
        assert isinstance(ev, StreamCreated)
        return int(ev.stream_id)

    async def status(self, code: str, timeout: float = 10.0) -> None:
        """Wait for the status ``code``; an error-level status raises ``ConnectionError``."""
        while True:
            st = await self.until(Status, timeout)
            assert isinstance(st, Status)
            if st.code == code:
                return
            if st.level == "error":
                raise ConnectionError(f"{st.code}: {st.description}")

    async def publish(self, name: str, timeout: float = 15.0) -> int:
        """Handshake, connect, publish ``name``; the message stream id once it started."""
        await self.handshake(timeout)
        sid = await self.create_stream(timeout)
        self.conn.publish(sid, name)
        self.flush()
        await self.status("NetStream.Publish.Start", timeout)
        return sid

    async def play(
        self, name: str, seconds: float, stats: PlayStats, rcvbuf: int = 0, rate: float = 0
    ) -> None:
        """Play ``name`` for ``seconds``; ``rate`` > 0 reads at most that many bytes/s."""
        try:
            await self._play(name, seconds, stats, rcvbuf, rate)
        finally:
            self.close()

    async def _play(
        self, name: str, seconds: float, stats: PlayStats, rcvbuf: int, rate: float
    ) -> None:
        await self.open(rcvbuf)
        assert self.reader is not None
        self.conn.connect(self.app, f"rtmp://{self.host}:{self.port}/{self.app}")
        self.flush()
        await self.until(ConnectResult)
        sid = await self.create_stream()
        self.conn.play(sid, name)
        self.flush()
        stats.started = time.monotonic()
        end = stats.started + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(self.reader.read(16384 if rate else 262144), left)
            except TimeoutError:
                break
            if not data:
                stats.closed = True
                break
            stats.bytes += len(data)
            now = time.monotonic()
            for ev in self.conn.receive_data(data):
                if isinstance(ev, MediaMessage) and ev.kind == "video":
                    stats.media.append((now, ev.timestamp))
                elif isinstance(ev, Status):
                    stats.statuses.append(ev.code)
            self.flush()
            if rate:
                await asyncio.sleep(len(data) / rate)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
