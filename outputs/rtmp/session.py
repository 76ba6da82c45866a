"""One RTMP connection: the asyncio adapter around :class:`RtmpServerConnection`.

Publishing: the publish name picks the stream; the stream's live buffer
(``MistInBuffer``) is started through the controller (``ensure_input``) or, with no
controller, spawned by us; the buffer decides whether this publisher may push (its
source ``push://host@password``, busy stream) and we answer ``Publish.Start`` or the
error it gave. Media bodies go through :class:`~mistcodecs.flv.FlvTagDecoder` and are
sent to the buffer as track and packet records (:mod:`inputs.live_ingest`). When the
buffer cannot keep up, reading from the publisher pauses (TCP back-pressure).

Playing: live streams come from the shared fan-out hub (one muxer and one bus reader
per stream, the same pre-chunked bytes written to every viewer; slow viewers skip to
the next keyframe). VoD streams are read per viewer, paced to real time.

Malformed input (bad handshake, chunk or AMF garbage, oversized chunk sizes) ends
only this connection; a connection that sends nothing for ``timeout`` seconds while
not playing (a stalled publisher, a half-open handshake) is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from common import sessions, triggers
from common.control import NO_CONTROLLER, ensure_input_async, request, under_controller
from inputs.ingest_client import IngestClient, IngestRefused
from inputs.live_ingest import Hello
from inputs.zygote import Zygote
from mistcodecs.errors import FormatError
from mistcodecs.flv import FlvMuxer, FlvTagDecoder
from mistcodecs.rtmp import (
    CloseStream,
    Connect,
    DeleteStream,
    Error,
    MediaMessage,
    Play,
    Publish,
    RtmpServerConnection,
)
from outputs.fanout import FanoutHub, LiveFeed, Viewer
from outputs.rtmp.live import CHUNK_SIZE, CS_AUDIO, CS_DATA, CS_VIDEO, rtmp_spec
from outputs.rtmp.names import stream_name
from shm.model import StreamState, TrackMeta

log = logging.getLogger("MistOutRTMP")

WRITE_HIGH_WATER = 512 * 1024
WRITE_LOW_WATER = 64 * 1024
PENDING_LIMIT = 8192  # media messages queued while the buffer answers
STREAM_WAIT_S = 10.0
ENSURE_AGAIN_S = 1.0
VOD_LEAD_MS = 2000
KERNEL_SNDBUF = 256 * 1024


class Server:
    """What every session shares: settings, the fan-out hub, spawned buffers."""

    def __init__(
        self, acceptable: int = 0, timeout: float = 10.0, buffer_args: list[str] | None = None
    ) -> None:
        import shm

        self.acceptable = acceptable  # 0 both, 1 play only, 2 publish only
        self.timeout = timeout
        self.buffer_args = buffer_args or []
        self.hub = FanoutHub(shm.StreamReader)
        self.sessions: set[RtmpSession] = set()
        self.children: list[subprocess.Popen[bytes]] = []
        self.zygote = Zygote()
        self.spawned: dict[str, subprocess.Popen[bytes] | int] = {}  # by stream (int: pid)
        self.stats = {"publish_refused": 0, "errors": 0}

    def reap(self) -> None:
        self.children = [c for c in self.children if c.poll() is None]
        self.zygote.reap()
        self.spawned = {
            s: c
            for s, c in self.spawned.items()
            if (c.poll() is None if isinstance(c, subprocess.Popen) else self.zygote.running(c))
        }

    async def ensure_buffer(self, stream: str) -> str:
        """Make sure the stream has an input; "" or the reason it cannot."""
        result = await ensure_input_async(stream, timeout=5.0)
        if result.get("status") in ("running", "started"):
            return ""
        if result.get("error") != NO_CONTROLLER:
            return str(result.get("error") or "stream is not configured")
        # standalone: we start the live buffer ourselves, once at a time, forked from
        # the zygote (a warm interpreter; see inputs.zygote) or else as a new program
        self.reap()
        running = self.spawned.get(stream)
        if running is not None and (
            running.poll() is None
            if isinstance(running, subprocess.Popen)
            else self.zygote.running(running)
        ):
            return ""
        argv = ["-s", stream, *self.buffer_args, "push://"]
        try:
            self.spawned[stream] = await self.zygote.spawn(argv)
        except OSError as exc:
            log.warning("starting the live buffer of %s without the zygote: %s", stream, exc)
            child = subprocess.Popen(
                [sys.executable, "-m", "inputs.buffer", *argv],
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.children.append(child)
            self.spawned[stream] = child
        return ""

    async def stream_key(self, key: str) -> str:
        """The stream a publish name goes to when it is a stream key, else "".
        Keys live in the controller's config; standalone there are none."""
        if not key or not under_controller():
            return ""
        reply = await asyncio.to_thread(request, {"streamkey_lookup": key}, 5.0)
        found = reply.get("streamkey_lookup") if reply else None
        return found if isinstance(found, str) else ""

    async def close(self) -> None:
        for s in list(self.sessions):
            s.close()
        await self.hub.close()
        # Buffers we spawned ourselves (standalone) end with us: nobody else reaps them.
        await self.zygote.close()
        for c in self.children:
            if c.poll() is None:
                c.terminate()
        for c in self.children:
            try:
                await asyncio.to_thread(c.wait, 5.0)
            except subprocess.TimeoutExpired:
                c.kill()


class RtmpSession(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.conn = RtmpServerConnection(chunk_size=CHUNK_SIZE)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.flow: Any = None  # the fan-out's listener while playing live
        self._paused = False
        self._closed = False
        self._last_rx = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # publishing
        self.stream = ""
        self.ingest: IngestClient | None = None
        self.decoder: FlvTagDecoder | None = None
        self._pending: list[MediaMessage] | None = None
        # playing
        self.play_sid = 0
        self.playing = False
        self.feed: LiveFeed | None = None
        self.viewer: Viewer | None = None
        # the controller's session record of this connection (bytes, kicks)
        self.session: sessions.Connection | None = None

    # ---- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = tr
        tr.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        peer = tr.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else "local"
        self.server.sessions.add(self)
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._last_rx = time.monotonic()
        if self.session is not None:
            self.session.up += len(data)
        try:
            events = self.conn.receive_data(data)
        except FormatError as exc:  # pragma: no cover - the connection turns these into Error
            events = [Error(str(exc))]
        for ev in events:
            if self._closed:
                return
            if isinstance(ev, MediaMessage):
                self._media(ev)
            elif isinstance(ev, Connect):
                self.conn.accept_connect(ev)
            elif isinstance(ev, Publish):
                self._spawn(self._publish(ev), "publish")
            elif isinstance(ev, Play):
                self._spawn(self._play(ev), "play")
            elif isinstance(ev, DeleteStream | CloseStream):
                if self.ingest is not None or (self.playing and ev.stream_id == self.play_sid):
                    self._end_role("client closed the stream")
            elif isinstance(ev, Error):
                self.server.stats["errors"] += 1
                log.warning("RTMP connection from %s: %s; closing it", self.peer, ev.message)
                self._flush()
                self.close()
                return
        if self.ingest is not None:
            self.ingest.flush()  # everything this read carried, in one write
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.server.sessions.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        self._end_role("connection closed")
        if self.session is not None:
            self.session.close()
        for t in list(self._tasks):
            t.cancel()

    def pause_writing(self) -> None:
        self._paused = True
        if self.flow is not None:
            self.flow.on_pause()

    def resume_writing(self) -> None:
        self._paused = False
        if self.flow is not None:
            self.flow.on_resume()

    # ---- the fan-out's view of this connection (outputs.fanout.ViewerConn) -------------
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._closed:
            self.transport.write(data)
            if self.session is not None:
                self.session.down += len(data)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def writing_paused(self) -> bool:
        return self._paused

    def close(self) -> None:
        if self.playing and not self._closed:
            self.conn.end_play(self.play_sid, self.stream)
            self._flush()
        self.playing = False
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()

    # ---- helpers -----------------------------------------------------------------------
    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self._closed:
            self.transport.write(out)
            if self.session is not None:
                self.session.down += len(out)

    def _url(self, raw_name: str) -> str:
        """The full RTMP URL of a publish/play request (trigger payloads)."""
        base = self.conn.tc_url or f"rtmp://localhost/{self.conn.app}"
        return f"{base.rstrip('/')}/{raw_name}"

    def _track(self, session: sessions.Connection) -> None:
        """Count this connection's bytes in ``session`` and close it when kicked."""
        self.session = session
        self._spawn(sessions.close_on_kick(session, self.close), "kick")

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"rtmp {what} {self.peer}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("RTMP session task failed", exc_info=task.exception())
            self.close()

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.server.timeout / 2, self._check_idle)

    def _check_idle(self) -> None:
        if self._closed:
            return
        idle = time.monotonic() - self._last_rx
        # a publisher waiting for our answer (its buffer starting) is not idle
        waiting = self._pending is not None
        if not self.playing and not waiting and idle > self.server.timeout:
            what = f"publisher of {self.stream}" if self.ingest else "connection"
            log.warning("%s from %s sent nothing for %.0fs; closing", what, self.peer, idle)
            self.close()
            return
        self._arm()

    def _end_role(self, reason: str) -> None:
        if self.ingest is not None:
            log.info("publisher of %s from %s: %s", self.stream, self.peer, reason)
            self.ingest.close(reason)
            self.ingest = None
        if self.feed is not None and self.viewer is not None:
            self.feed.leave(self.viewer)
        self.feed = self.viewer = None
        self.flow = None

    # ---- publishing --------------------------------------------------------------------
    async def _publish(self, ev: Publish) -> None:
        conn = self.conn
        refuse = keyed = ""
        if self.server.acceptable == 1:
            refuse = "publishing is disabled on this server"
        elif self.ingest is not None or self._pending is not None or self.playing:
            refuse = "this connection already publishes or plays"
        else:
            self._pending = []  # media sent while we ask around waits here
            # stream keys first: the key names the stream and stands for the password
            keyed = await self.server.stream_key(ev.name)
            if not (keyed or stream_name(ev.name)):
                refuse = f"invalid stream name {ev.raw_name!r}"
        name = keyed or stream_name(ev.name)
        password = ev.query.get("pass") or conn.app
        url = self._url(ev.raw_name)
        if not refuse and not keyed:  # as MistServer: not for stream keys
            rewritten = await triggers.fire_async("RTMP_PUSH_REWRITE", [url, self.peer], name)
            if rewritten is not None:
                parts = urlsplit(rewritten.strip()).path.strip("/").split("/")
                if len(parts) < 2 or not stream_name(parts[-1]):
                    refuse = "refused by RTMP_PUSH_REWRITE"
                else:
                    url, password, name = rewritten.strip(), parts[0], stream_name(parts[-1])
        if not refuse:
            gate = await sessions.admit_push(
                name, self.peer, "RTMP", url, sessions.token_from(ev.query)
            )
            if gate.conn is None:
                refuse = gate.refused
            else:
                name = gate.stream
                self._track(gate.conn)
        if not refuse:
            self.stream = name
            try:
                self.ingest = await self._open_ingest(name, password, bool(keyed))
            except IngestRefused as exc:
                refuse = str(exc)
            except (TimeoutError, OSError) as exc:
                refuse = f"live buffer unavailable: {exc}"
        if refuse:
            self.server.stats["publish_refused"] += 1
            log.warning("refusing publish of %r from %s: %s", ev.raw_name, self.peer, refuse)
            conn.refuse_publish(ev, "NetStream.Publish.BadName", refuse)
            self._flush()
            self._pending = None
            self.close()
            return
        assert self.ingest is not None
        if self._closed:
            self._end_role("closed before the buffer answered")
            return
        ing = self.ingest
        ing.on_pause = self._pause_publisher
        ing.on_resume = self._resume_publisher
        ing.on_lost = self._ingest_lost
        self.decoder = FlvTagDecoder()
        self._last_rx = time.monotonic()  # the idle clock starts with our answer
        log.info("publish of %s from %s accepted", name, self.peer)
        conn.accept_publish(ev)
        self._flush()
        pending, self._pending = self._pending or [], None
        for msg in pending:
            self._media(msg)
        ing.flush()

    async def _open_ingest(self, stream: str, password: str, keyed: bool) -> IngestClient:
        """The stream's live buffer, started if need be. While none answers we ask for
        one again every second: right after a buffer died (``kill -9``) the controller
        may still count it as running until it reaps it, then starts a new one."""
        hello = Hello("RTMP", self.peer, password, authorized=keyed)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STREAM_WAIT_S
        wait = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                client, _ = await IngestClient.open(stream, hello, timeout=wait)
                return client
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no live buffer for {stream!r}")
            reason = await self.server.ensure_buffer(stream)
            if reason:
                raise IngestRefused(reason)
            wait = min(ENSURE_AGAIN_S, left)

    def _media(self, ev: MediaMessage) -> None:
        if self._pending is not None:
            if len(self._pending) < PENDING_LIMIT:
                self._pending.append(ev)
            return
        ing, dec = self.ingest, self.decoder
        if ing is None or dec is None:
            return
        try:
            if ev.kind == "video":
                items = dec.video(ev.payload, ev.timestamp)
            elif ev.kind == "audio":
                items = dec.audio(ev.payload, ev.timestamp)
            else:
                dec.script(ev.payload)
                return
        except FormatError as exc:
            log.warning("publisher of %s sent a bad %s message: %s", self.stream, ev.kind, exc)
            return
        for item in items:
            if isinstance(item, TrackMeta):
                ing.send_track(item)
            else:
                ing.send_packet(item.track, item.dts, item.offset, item.keyframe, item.data)

    def _pause_publisher(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.pause_reading()

    def _resume_publisher(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def _ingest_lost(self) -> None:
        if self.ingest is not None and not self._closed:
            log.warning("live buffer of %s went away; closing the publisher", self.stream)
            self.ingest = None
            self.close()

    # ---- playing -----------------------------------------------------------------------
    async def _play(self, ev: Play) -> None:
        conn = self.conn
        name = stream_name(ev.name)
        if self.server.acceptable == 2 or not name or self.ingest is not None or self.playing:
            why = "playback is disabled" if self.server.acceptable == 2 else "invalid request"
            log.warning("refusing play of %r from %s: %s", ev.raw_name, self.peer, why)
            conn.refuse_play(ev, "NetStream.Play.Failed", why)
            self._flush()
            self.close()
            return
        self.playing = True  # no idle timeout while we wait for the stream
        url = self._url(ev.raw_name)
        gate = await sessions.admit_viewer(
            name, self.peer, "RTMP", url, sessions.token_from(ev.query)
        )
        if gate.conn is None:
            self.playing = False
            log.warning("refusing play of %r from %s: %s", ev.raw_name, self.peer, gate.refused)
            conn.refuse_play(ev, "NetStream.Play.Failed", gate.refused)
            self._flush()
            return
        name = gate.stream
        self._track(gate.conn)
        reader = await self._open_reader(name)
        if reader is None and not self._closed:
            fallback = await triggers.default_stream_async(name, self.peer, "RTMP", url)
            if fallback and fallback != name:
                reader = await self._open_reader(fallback)
                name = fallback if reader is not None else name
        if self._closed:
            if reader is not None:
                reader.close()
            return
        if reader is None:
            self.playing = False
            log.warning("play of %s from %s: stream not available", name, self.peer)
            conn.refuse_play(ev, "NetStream.Play.StreamNotFound", f"Stream {name} not available.")
            self._flush()
            self.close()
            return
        meta = reader.meta
        tracks = _flv_tracks(meta.tracks)
        if not tracks:
            reader.close()
            self.playing = False
            conn.refuse_play(ev, "NetStream.Play.Failed", "No track RTMP can carry.")
            self._flush()
            self.close()
            return
        self.stream = name
        self.play_sid = ev.stream_id
        conn.accept_play(ev)
        self._flush()
        for cs in (CS_AUDIO, CS_DATA, CS_VIDEO):  # the shared bytes carry full headers
            conn.writer.forget(cs)
        if meta.live:
            reader.close()
            self._cap_kernel_buffer()
            feed = self.server.hub.feed(name, rtmp_spec(ev.stream_id), tracks)
            self.feed = feed
            self.viewer = feed.join(self)
            log.info("%s plays live %s (%d viewers)", self.peer, name, len(feed.viewers))
            await self.viewer.done
            if self.feed is feed and self.viewer is not None:
                feed.leave(self.viewer)
            self.feed = self.viewer = None
        else:
            try:
                await self._play_vod(reader, tracks, ev.stream_id)
            finally:
                reader.close()
        self.close()

    def _cap_kernel_buffer(self) -> None:
        """Keep the kernel's send buffer small for live viewers: with autotuning it can
        hold many seconds of a stream, a lag the skip-to-keyframe logic never sees."""
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SNDBUF)

    async def _open_reader(self, name: str) -> Any:
        import shm

        asked = False
        deadline = time.monotonic() + STREAM_WAIT_S
        while not self._closed:
            try:
                reader = shm.StreamReader(name)
            except (shm.StreamNotFound, shm.ShmFormatError):  # not (yet) complete: wait
                reader = None
            if reader is not None:
                meta = reader.meta
                if meta.tracks and meta.state == StreamState.READY:
                    return reader
                reader.close()
            elif not asked:
                asked = True
                result = await ensure_input_async(name, timeout=5.0)
                if result.get("status") == "error" and result.get("error") != NO_CONTROLLER:
                    return None
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        return None

    async def _play_vod(self, reader: Any, tracks: list[TrackMeta], sid: int) -> None:
        """Per-viewer playback of a VoD stream, paced to real time with a small lead."""
        conn = self.conn
        muxer = FlvMuxer(tracks)
        reader.select([t.id for t in tracks])
        reader.seek(0)
        conn.send_flv_start(sid, muxer)
        self._flush()
        start_wall = time.monotonic()
        first: int | None = None
        sent = 0
        while not self._closed:
            p = reader.read()
            if p is None:
                if reader.at_end():
                    return
                await reader.wait(1.0)
                continue
            first = p.dts if first is None else first
            ahead = (p.dts - first - VOD_LEAD_MS) / 1000 - (time.monotonic() - start_wall)
            if ahead > 0 or self._paused:
                self._flush()
                await asyncio.sleep(max(ahead, 0.02))
            conn.send_packet(sid, muxer, p)
            sent += 1
            if not sent % 32:
                self._flush()
        self._flush()


def _flv_tracks(tracks: dict[int, TrackMeta]) -> list[TrackMeta]:
    """The first video and first audio track FLV can carry."""
    spec = rtmp_spec(1)
    out: list[TrackMeta] = []
    for kind in ("video", "audio"):
        t = next((t for _, t in sorted(tracks.items()) if t.type == kind and spec.carries(t)), None)
        if t is not None:
            out.append(t)
    return out
