"""``MistInBuffer``: the live buffer of a pushed stream (sources ``push://...``).

It owns the stream on the bus (``StreamWriter(live=True)``: DVR window, fragments on
keyframes, retention) and takes media from pushers over the ingest socket
(:mod:`inputs.live_ingest`). Lifecycle, as MistServer's buffer (reference 6.6/6.7):

* WAIT until a pusher is accepted; exits after ``inputtimeout`` s if none comes.
* READY as soon as a video keyframe is on the bus (audio-only: the first audio packet)
  and the audio track, if any, is known -- or after ``AUDIO_GRACE_MS`` of media without
  one. MistServer waits for 3 fragments (~6 s) before "playable"; we let RTMP/FLV
  viewers start on the first keyframe to keep first-frame latency low. HLS/CMAF keep
  their own readiness rule (enough complete fragments) on top of this state.
* The publisher leaves: the stream stays (SHUTDOWN is not set) for ``resume`` s;
  a publisher that comes back continues it, its timestamps offset to follow on from
  the newest packet, and each track's ``extra["discontinuities"]`` records where
  (for HLS ``#EXT-X-DISCONTINUITY``). After ``resume`` s without one the stream ends.
* A second publisher while one is active is refused (log line names both).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import sys
import time
from typing import Any

import click

from common import runtime
from common.capabilities import Capabilities, Setting
from common.control import under_controller
from common.defaults import DVR_MS, FRAGMENT_MS, INPUT_TIMEOUT_S
from common.streamname import sanitize
from inputs.buffer_events import TICK_S, BufferEvents
from inputs.live_ingest import (
    Accept,
    Bye,
    Hello,
    PushPolicy,
    RecordReader,
    Refuse,
    Track,
    socket_address,
)
from mistcodecs.errors import FormatError
from shm import StreamBusy, StreamWriter
from shm.model import Packet, StreamState, TrackMeta

AUDIO_GRACE_MS = 1000
RESUME_GAP_MS = 20  # spacing between the last packet before and the first after a resume
EXIT_BUSY = 3
RECV_SIZE = 256 * 1024

CAPS = Capabilities(
    name="Buffer",
    desc="Live buffer for pushed streams (RTMP and other push inputs)",
    kind="input",
    source_match=["push://*"],
    priority=9,
    settings=[
        Setting(
            "DVR", "Live buffer window (ms) kept for seeking", "uint", DVR_MS, "--buffer",
            friendly="Buffer time (ms)",
        ),
        Setting(
            "segmentsize", "Target fragment duration (ms), cut on keyframes", "uint",
            FRAGMENT_MS, "--segmentsize",
        ),
        Setting(
            "resume", "Seconds a stream waits for its publisher to come back (0: ends at once)",
            "uint", 10, "--resume",
        ),
        Setting(
            "inputtimeout", "Seconds to wait for a first publisher before exiting", "uint",
            INPUT_TIMEOUT_S, "--inputtimeout",
        ),
        Setting("always_on", "Keep waiting for publishers forever", "bool"),
    ],
)  # fmt: skip


class LiveBuffer:
    """Maps publisher sessions onto one continuous live stream (no I/O besides the writer)."""

    def __init__(self, writer: StreamWriter, log: Any) -> None:
        self.writer = writer
        self.log = log
        self.sessions = 0
        self.ready = False
        self.last_dts: int | None = None  # newest dts written, over all sessions
        self._map: dict[int, int] = {}  # publisher track id -> bus track id
        self._offset: int | None = None  # added to this session's timestamps
        self._first_dts: int | None = None
        self._resumed = False
        self.packets = 0
        self.events: BufferEvents | None = None  # STREAM_BUFFER / LIVE_BANDWIDTH

    def start_session(self) -> bool:
        """A publisher was accepted; True if it resumes an existing stream."""
        self.sessions += 1
        self._map = {}
        self._offset = None
        self._resumed = self.last_dts is not None
        return self._resumed

    def track(self, meta: TrackMeta) -> None:
        w = self.writer
        bus = self._map.get(meta.id)
        if bus is None:  # same kind of track as one we have: continue it
            taken = set(self._map.values())
            bus = next(
                (tid for tid, t in w.tracks.items() if t.type == meta.type and tid not in taken),
                None,
            )
        if bus is None:
            bus = w.add_track(TrackMeta(**{**meta.to_record(), "id": 0}))
            self.log.info("track %d: %s %s", bus, meta.type, meta.codec)
        else:
            old = w.tracks[bus]
            fields = {
                k: getattr(meta, k)
                for k in ("codec", "init", "width", "height", "fpks", "rate", "channels", "size")
                if getattr(meta, k) != getattr(old, k)
            }
            if fields:
                w.update_track(bus, **fields)
                self._track_list()
        self._map[meta.id] = bus

    def packet(self, p: Packet) -> None:
        bus = self._map.get(p.track)
        if bus is None:
            return
        if self._offset is None:
            if self.last_dts is None:
                self._offset = 0
            else:
                self._offset = self.last_dts + RESUME_GAP_MS - p.dts
                self._mark_discontinuity(self.last_dts + RESUME_GAP_MS)
                self.log.info(
                    "publisher resumed: timestamps offset by %d ms to follow on", self._offset
                )
        dts = p.dts + self._offset
        self.writer.append(bus, dts, p.offset, p.keyframe, p.data)
        self.packets += 1
        if self.events is not None:
            self.events.packet(bus, dts, p.keyframe)
        if self.last_dts is None or dts > self.last_dts:
            self.last_dts = dts
        if self._first_dts is None:
            self._first_dts = dts
        if not self.ready and self._playable(bus, p.keyframe, dts):
            self.ready = True
            self.writer.set_state(StreamState.READY)
            self._track_list()
            self.log.info("stream is ready (%d tracks)", len(self.writer.tracks))

    def _track_list(self) -> None:
        """LIVE_TRACK_LIST (fire and forget) when the playable track set appears or changes."""
        if self.ready and under_controller():  # triggers live in the controller
            from common import triggers  # on use: it brings asyncio along

            stream = self.writer.stream
            tracks = triggers.track_list_json(self.writer.tracks)
            triggers.fire_nowait("LIVE_TRACK_LIST", [stream, tracks], stream)

    def _playable(self, bus: int, keyframe: bool, dts: int) -> bool:
        tracks = self.writer.tracks
        has_video = any(t.type == "video" for t in tracks.values())
        has_audio = any(t.type == "audio" for t in tracks.values())
        if has_video and not (keyframe and tracks[bus].type == "video"):
            return False
        if has_video and not has_audio:
            assert self._first_dts is not None
            return dts - self._first_dts >= AUDIO_GRACE_MS
        return True

    def _mark_discontinuity(self, at_ms: int) -> None:
        for tid, t in self.writer.tracks.items():
            marks = [*t.extra.get("discontinuities", []), at_ms][-64:]
            self.writer.update_track(tid, extra={**t.extra, "discontinuities": marks})


class _Pusher:
    """One connection on the ingest socket."""

    __slots__ = ("mine", "reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = RecordReader()
        self.mine = False  # accepted as the stream's publisher


class BufferServer:
    """The ingest socket: one active pusher; the rest are refused.

    A plain ``selectors`` loop, not asyncio: the buffer is one small process per live
    stream, and the event loop machinery would double what it costs to start and to keep
    (see ``docs/architecture.md``). :meth:`poll` runs one round; :meth:`wake` (safe from
    a signal handler or another thread) ends a round early."""

    def __init__(
        self, stream: str, policy: PushPolicy, buffer: LiveBuffer, log: Any, listener: socket.socket
    ) -> None:
        self.stream = stream
        self.policy = policy
        self.buffer = buffer
        self.log = log
        self.active: str = ""  # who is publishing now ("" = nobody)
        self.left_at: float | None = None
        self._listener = listener
        listener.setblocking(False)
        listener.listen(16)
        self._sel = selectors.DefaultSelector()
        self._sel.register(listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def poll(self, timeout: float | None) -> None:
        for key, _ in self._sel.select(timeout):
            pusher = key.data
            if pusher is not None:
                self._read(pusher)
            elif key.fileobj is self._listener:
                self._accept()
            else:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)

    def close(self) -> None:
        for key in list(self._sel.get_map().values()):
            if key.data is not None:
                self._drop(key.data)
        self._sel.close()
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        self._sel.register(sock, selectors.EVENT_READ, _Pusher(sock))

    def _read(self, p: _Pusher) -> None:
        try:
            data = p.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(p)
            return
        buffer = self.buffer
        try:
            for rec in p.reader.feed(data):
                if type(rec) is Packet:
                    if p.mine:
                        buffer.packet(rec)
                elif isinstance(rec, Track):
                    if p.mine:
                        buffer.track(rec.meta)
                elif isinstance(rec, Hello) and not p.mine:
                    reason = self._admit(rec)
                    if reason:
                        self._send(p, bytes(Refuse(reason)))
                        self._drop(p)
                        return
                    p.mine = True
                    self._send(p, bytes(Accept(buffer.start_session())))
                elif isinstance(rec, Bye):
                    self._drop(p)
                    return
        except FormatError as exc:
            self.log.error("malformed ingest data from the pusher: %s", exc)
            self._drop(p)

    @staticmethod
    def _send(p: _Pusher, data: bytes) -> None:
        """A short answer; the socket's buffer is empty at this point, so it fits."""
        with contextlib.suppress(OSError):
            p.sock.send(data)

    def _drop(self, p: _Pusher) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(p.sock)
        p.sock.close()
        if p.mine:
            p.mine = False
            self.log.info("publisher %s left", self.active)
            self.active = ""
            self.left_at = time.monotonic()

    def _admit(self, hello: Hello) -> str:
        who = f"{hello.protocol} from {hello.host or 'local'}"
        if self.active:
            reason = f"stream {self.stream!r} is busy: already published ({self.active})"
            self.log.warning("refusing push %s: %s", who, reason)
            return reason
        reason = "" if hello.authorized else self.policy.check(hello.host, hello.password)
        if reason:
            self.log.warning("refusing push %s: %s", who, reason)
            return reason
        self.active = who
        self.left_at = None
        self.log.info("accepted push %s", who)
        return ""


def run_buffer(
    stream: str,
    source: str,
    dvr_ms: int,
    segment_ms: int,
    resume_s: float,
    input_timeout_s: float,
    always_on: bool,
    debug: int | None,
) -> int:
    rt = runtime.start("MistInBuffer", stream, debug)
    try:
        writer = StreamWriter(
            stream, live=True, dvr_ms=dvr_ms, fragment_ms=segment_ms, source=source
        )
    except StreamBusy as exc:
        rt.log.error("%s", exc)
        rt.close_sync()
        return EXIT_BUSY
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(socket_address(stream))
    except OSError as exc:
        rt.log.error("cannot listen for pushes to %r: %s", stream, exc)
        sock.close()
        writer.close()
        rt.close_sync()
        return EXIT_BUSY
    buffer = LiveBuffer(writer, rt.log)
    events = BufferEvents(stream, writer, dvr_ms, segment_ms, rt.request_stop, rt.log)
    buffer.events = events
    server = BufferServer(stream, PushPolicy.parse(source), buffer, rt.log, sock)
    rt.add_stop_callback(server.wake)
    writer.set_state(StreamState.WAIT)
    rt.log.info("waiting for a push (source %s)", source)
    started = time.monotonic()
    try:
        while not rt.stopping.is_set():
            now = time.monotonic()
            if server.active:
                wait: float | None = None
            elif server.left_at is not None:
                if not always_on and now - server.left_at >= resume_s:
                    why = f"publisher did not come back within {resume_s:.0f}s"
                    if events.may_unload(CAPS.name, why):
                        rt.log.info("%s: stream ends", why)
                        break
                    server.left_at = time.monotonic()  # STREAM_UNLOAD: keep it
                    continue
                wait = None if always_on else resume_s - (now - server.left_at)
            elif not always_on and now - started >= input_timeout_s:
                why = f"no publisher within {input_timeout_s:.0f}s"
                if events.may_unload(CAPS.name, why):
                    rt.log.info("%s: exiting", why)
                    break
                started = time.monotonic()  # STREAM_UNLOAD: keep waiting
                continue
            else:
                wait = None if always_on else input_timeout_s - (now - started)
            server.poll(TICK_S if wait is None else min(wait, TICK_S))
            events.tick(time.monotonic())  # health: a stalled publisher sends nothing
    finally:
        events.empty()
        writer.set_state(StreamState.SHUTDOWN)
        server.close()
        writer.close()
        rt.close_sync()
    return 0


@click.command(name="MistInBuffer", help=f"{CAPS.desc}.")
@click.option("-s", "--stream", required=True, help="Stream name to publish on the bus.")
@click.argument("source", default="push://")
@CAPS.click_options()
def main(
    stream: str,
    source: str,
    debug: int | None,
    DVR: int,  # MistServer's option name
    segmentsize: int,
    resume: int,
    inputtimeout: int,
    always_on: bool,
    **_: Any,
) -> None:
    name = sanitize(stream)
    if not name:
        raise click.BadParameter(f"no valid stream name in {stream!r}", param_hint="-s")
    code = run_buffer(
        name, source, DVR, segmentsize, float(resume), float(inputtimeout), always_on, debug
    )
    sys.exit(code)


if __name__ == "__main__":
    main()
