"""Push-out: ``MistOutRTMP --stream <s> rtmp://host[:port]/app/name`` (restreaming).

Reads the stream from the bus (starting at the live edge keyframe for live streams,
from the start for VoD), publishes it to the target with the sans-IO
:class:`~mistcodecs.rtmp.RtmpClientConnection` and exits 0 when the stream ends, 1
when the target refuses or drops the connection (the controller restarts auto pushes).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from common.errors import CliError
from mistcodecs.flv import FlvMuxer
from mistcodecs.rtmp import (
    ConnectResult,
    Error,
    Event,
    RtmpClientConnection,
    Status,
    StreamCreated,
)
from outputs.rtmp.live import CHUNK_SIZE
from shm.reader import LIVE_LAG_WAIT_S

CONNECT_TIMEOUT_S = 10.0
DRAIN_ABOVE = 256 * 1024


@dataclass(frozen=True)
class RtmpTarget:
    host: str
    port: int
    app: str
    name: str
    tc_url: str

    @classmethod
    def parse(cls, url: str) -> RtmpTarget:
        parts = urlsplit(url)
        if parts.scheme != "rtmp" or not parts.hostname:
            raise CliError(f"not an rtmp:// target: {url!r}", 2)
        path = parts.path.lstrip("/")
        app, _, name = path.partition("/")
        if not app or not name:
            raise CliError(f"rtmp target needs /<app>/<stream>: {url!r}", 2)
        if parts.query:
            name += "?" + parts.query
        port = parts.port or 1935
        return cls(parts.hostname, port, app, name, f"rtmp://{parts.hostname}:{port}/{app}")


class _Peer:
    """Socket side: feeds received bytes to the connection, collects events."""

    def __init__(
        self, conn: RtmpClientConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.conn = conn
        self.reader = reader
        self.writer = writer
        self.events: asyncio.Queue[Event | None] = asyncio.Queue()

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.writer.write(out)

    async def pump(self) -> None:
        try:
            while data := await self.reader.read(65536):
                for ev in self.conn.receive_data(data):
                    self.events.put_nowait(ev)
                self.flush()
        except ConnectionError:
            pass
        finally:
            self.events.put_nowait(None)

    async def expect(self, kind: type, timeout: float) -> Any:
        while True:
            ev = await asyncio.wait_for(self.events.get(), timeout)
            if ev is None:
                raise CliError("target closed the connection", 1)
            if isinstance(ev, Error):
                raise CliError(f"target sent malformed RTMP: {ev.message}", 1)
            if isinstance(ev, Status) and ev.level == "error":
                raise CliError(f"target refused: {ev.code} {ev.description}", 1)
            if isinstance(ev, ConnectResult) and not ev.ok:
                raise CliError(f"target refused the connection: {ev.info}", 1)
            if isinstance(ev, kind):
                return ev


async def push(stream: str, url: str, rt: Any, wait: float) -> int:
    from outputs.rtmp.session import _flv_tracks
    from outputs.standalone import open_stream

    target = RtmpTarget.parse(url)
    reader = await open_stream(stream, wait)
    try:
        tracks = _flv_tracks(reader.meta.tracks)
        if not tracks:
            raise CliError(f"stream {stream!r} has no track RTMP can carry", 2)
        live = reader.meta.live
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            raise CliError(f"cannot connect to {target.host}:{target.port}: {exc}", 1) from exc
        conn = RtmpClientConnection(chunk_size=CHUNK_SIZE)
        peer = _Peer(conn, r, w)
        pump = asyncio.ensure_future(peer.pump())
        try:
            conn.connect(target.app, target.tc_url)
            peer.flush()
            await peer.expect(ConnectResult, CONNECT_TIMEOUT_S)
            conn.create_stream()
            peer.flush()
            created = await peer.expect(StreamCreated, CONNECT_TIMEOUT_S)
            sid = created.stream_id
            conn.publish(sid, target.name)
            peer.flush()
            while True:
                st = await peer.expect(Status, CONNECT_TIMEOUT_S)
                if st.code == "NetStream.Publish.Start":
                    break
            rt.log.info("pushing %s to %s", stream, url)
            await _send(reader, tracks, live, conn, peer, sid, rt)
            conn.delete_stream(sid)
            peer.flush()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(w.drain(), 2.0)
            return 0
        finally:
            pump.cancel()
            w.close()
    finally:
        reader.close()


async def _send(
    reader: Any,
    tracks: list[Any],
    live: bool,
    conn: RtmpClientConnection,
    peer: _Peer,
    sid: int,
    rt: Any,
) -> None:
    muxer = FlvMuxer(tracks)
    reader.select([t.id for t in tracks])
    if live:
        reader.lag_wait_s = LIVE_LAG_WAIT_S  # relays: no waiting for the next audio frame
        reader.seek_live(0)
    else:
        reader.seek(0)
    conn.send_flv_start(sid, muxer)
    peer.flush()
    w = peer.writer
    while not rt.stopping.is_set():
        if peer.reader.at_eof():
            raise CliError("target closed the connection", 1)
        p = reader.read()
        if p is None:
            peer.flush()
            if reader.at_end():
                return
            await reader.wait(1.0)
            continue
        conn.send_packet(sid, muxer, p)
        peer.flush()
        transport = w.transport
        if transport.get_write_buffer_size() > DRAIN_ABOVE:
            await w.drain()
