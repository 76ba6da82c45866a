"""Live delivery: mux once per (stream, format, tracks), write the same bytes to every viewer.

Theory of operation
-------------------
A :class:`LiveFeed` is one task that reads a live stream from the bus (``StreamReader``
positioned with ``seek_live``, woken by ``wait``, with the bounded interleave wait
``LIVE_LAG_WAIT_S``: a video frame is not held back for the next audio frame), hands
each packet to the format's sans-IO muxer once and collects the produced bytes. Each
wake-up turns into one batch; the batch is written with ``transport.write`` to every
viewer that is in step -- one call per viewer per batch, no per-viewer muxing or copying.

Pacing: almost all the CPU of a large fan-out is the ``send`` behind each write (one
system call per viewer per batch, whatever its size), so the number of passes matters,
not the bytes. After a pass the feed waits ``PASS_SHARE`` times the pass's own CPU time
(smoothed, at most ``MAX_HOLD_S``; CPU rather than wall-clock time, so a pass that was
merely preempted on a busy machine holds nothing) before the next one; what arrives
meanwhile goes out in that next pass. A feed with a few viewers (under
``MIN_HOLD_VIEWERS``) passes in microseconds and writes every batch at once (no added
latency); one with thousands merges the
source's batches and spends at most about ``1 / (1 + PASS_SHARE)`` of its time writing,
at the cost of up to ``MAX_HOLD_S`` of added latency.

The feed keeps the format header and the bytes since the most recent keyframe (the
"GOP log"). A joining viewer is written ``header + GOP log`` and is then in step: it
starts on a keyframe, at most one GOP behind the live edge.

Slow viewers: the connection's transport calls ``pause_writing`` when its buffer passes
the high-water mark. The viewer then *skips* (gets nothing) until ``resume_writing``
says the buffer drained, and rejoins at the next keyframe -- MistServer's
``maxkeepaway`` idea: a slow viewer loses media, never delays the publisher or the
other viewers, and its buffered backlog stays bounded by the high-water mark.

A feed ends when its last viewer leaves or the stream ends (every viewer then gets the
muxer's trailer and is closed).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from outputs.formats import FormatSpec, Muxer
from shm.model import TrackMeta
from shm.reader import LIVE_LAG_WAIT_S

log = logging.getLogger(__name__)

MAX_GOP_BYTES = 16 << 20  # a stream without keyframes must not grow the GOP log forever
WAKE_TIMEOUT_S = 1.0
PASS_SHARE = 4.0  # wait this many times a write pass's duration before the next pass
MAX_HOLD_S = 0.05  # never hold media longer than this (the p99 added-latency budget)
MIN_HOLD_S = 0.001  # shorter holds are not worth a timer: write at once
MIN_HOLD_VIEWERS = 50  # a pass to fewer viewers costs too little to be worth any latency


class ViewerConn(Protocol):
    """What the fan-out needs from a connection (:class:`~outputs.http.protocol.HttpConnection`)."""

    flow: Any

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...

    @property
    def writing_paused(self) -> bool: ...


class ViewerState(enum.Enum):
    LIVE = "live"  # written every batch
    SKIPPING = "skipping"  # write buffer full: dropping media
    WAIT_KEY = "wait_key"  # buffer drained: rejoin at the next keyframe


class Viewer:
    """One connection attached to a feed; also its flow-control listener."""

    __slots__ = ("conn", "done", "skipped", "state")

    def __init__(self, conn: ViewerConn) -> None:
        self.conn = conn
        self.state = ViewerState.LIVE
        self.skipped = 0  # batches dropped because the viewer was too slow
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_pause(self) -> None:
        self.state = ViewerState.SKIPPING

    def on_resume(self) -> None:
        if self.state is ViewerState.SKIPPING:
            self.state = ViewerState.WAIT_KEY

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


@dataclass(frozen=True)
class FeedKey:
    stream: str
    format: str
    tracks: tuple[int, ...]


ReaderFactory = Callable[[str], Any]  # stream -> StreamReader


class LiveFeed:
    def __init__(
        self, key: FeedKey, spec: FormatSpec, tracks: list[TrackMeta], reader: Any, hub: FanoutHub
    ) -> None:
        self.key = key
        self.spec = spec
        self.tracks = tracks
        self.reader = reader
        self.hub = hub
        self.muxer: Muxer = spec.build(tracks, True)
        self.header = self.muxer.header()
        self.gop: list[bytes] = []
        self.gop_bytes = 0
        self.viewers: list[Viewer] = []
        self.video_ids = {t.id for t in tracks if t.type == "video"}
        self.batches = 0
        self.pass_s = 0.0  # smoothed CPU time of a write pass (all viewers)
        self.holds = 0  # passes followed by a hold
        self.task: asyncio.Task[None] | None = None
        self.ended = False
        self.meta_version = 0

    # ---- viewers ------------------------------------------------------------------------
    def join(self, conn: ViewerConn) -> Viewer:
        viewer = Viewer(conn)
        if self.ended:
            viewer.finish()
            return viewer
        conn.write(self.header)
        if self.gop:
            conn.write(b"".join(self.gop))
        if conn.writing_paused:
            viewer.state = ViewerState.SKIPPING
        conn.flow = viewer
        self.viewers.append(viewer)
        return viewer

    def leave(self, viewer: Viewer) -> None:
        viewer.finish()
        if viewer.conn.flow is viewer:
            viewer.conn.flow = None
        try:
            self.viewers.remove(viewer)
        except ValueError:
            return
        if not self.viewers and self.task is not None:
            # Nobody watches: stop reading and muxing. Forget the feed now so a viewer
            # arriving before the task has unwound starts a fresh one.
            self.ended = True
            self.hub.forget(self)
            self.task.cancel()

    # ---- the reading task ---------------------------------------------------------------
    def start(self) -> None:
        name = f"fanout {self.key.stream}.{self.key.format}"
        self.task = asyncio.get_running_loop().create_task(self._run(), name=name)
        self.task.add_done_callback(lambda _t: self._close())

    def _tracks_changed(self) -> bool:
        """True when a selected track vanished or its codec/init changed (publisher restart).

        The header cannot change under viewers that already parsed it, so the feed ends
        and players reconnect to a fresh one. Checked only when the metadata version moved.
        """
        meta = self.reader.meta
        if meta.version == self.meta_version:
            return False
        self.meta_version = meta.version
        for t in self.tracks:
            now = meta.tracks.get(t.id)
            if now is None or now.codec != t.codec or bytes(now.init) != bytes(t.init):
                return True
        return False

    async def _run(self) -> None:
        try:
            await self._pump()
        except asyncio.CancelledError:
            raise
        except Exception:  # bad media must end this feed only, never the process
            log.exception("live feed %s.%s failed", self.key.stream, self.key.format)

    async def _pump(self) -> None:
        reader = self.reader
        self.meta_version = reader.meta.version
        while True:
            pieces: list[bytes] = []
            key_at = -1  # index in pieces of the last keyframe-aligned piece
            while (p := reader.read()) is not None:
                if p.track not in self.key.tracks:
                    continue
                out = self.muxer.packet(p)
                if not out:
                    continue
                if self.spec.key_alignment == "output":
                    is_key = True
                else:
                    is_key = p.keyframe and (p.track in self.video_ids or not self.video_ids)
                if is_key:
                    key_at = len(pieces)
                pieces.append(out)
                if len(pieces) >= 256:
                    break  # keep batches short so one stream never hogs the loop
            if pieces:
                started = time.thread_time()  # CPU time: a preempted pass is not a slow one
                self._publish(pieces, key_at)
                took = time.thread_time() - started
                self.pass_s += (took - self.pass_s) * 0.25
                hold = min(MAX_HOLD_S, self.pass_s * PASS_SHARE)
                if hold >= MIN_HOLD_S and len(self.viewers) >= MIN_HOLD_VIEWERS:
                    self.holds += 1
                    await asyncio.sleep(hold)  # gather the next batches into one pass
                    continue
            elif reader.at_end() or self._tracks_changed():
                tail = self.muxer.end()
                for v in list(self.viewers):
                    if tail and v.state is ViewerState.LIVE:
                        v.conn.write(tail)
                return
            else:
                await reader.wait(WAKE_TIMEOUT_S)
                continue
            await asyncio.sleep(0)

    def _publish(self, pieces: list[bytes], key_at: int) -> None:
        self.batches += 1
        data = b"".join(pieces)
        if key_at >= 0:
            key_off = sum(len(x) for x in pieces[:key_at])
            self.gop = pieces[key_at:]
            self.gop_bytes = len(data) - key_off
        else:
            key_off = -1
            self.gop.extend(pieces)
            self.gop_bytes += len(data)
            if self.gop_bytes > MAX_GOP_BYTES:
                self.gop, self.gop_bytes = [], 0
        from_key: bytes | memoryview | None = None
        for v in self.viewers:
            state = v.state
            if state is ViewerState.LIVE:
                v.conn.write(data)
            elif state is ViewerState.WAIT_KEY and key_off >= 0:
                if from_key is None:
                    from_key = memoryview(data)[key_off:]
                v.state = ViewerState.LIVE
                v.conn.write(from_key)  # type: ignore[arg-type]
            else:
                v.skipped += 1

    def _close(self) -> None:
        self.ended = True
        self.hub.forget(self)
        for v in list(self.viewers):
            v.conn.close()
            v.finish()
        self.viewers.clear()
        try:
            self.reader.close()
        except Exception:  # pragma: no cover - closing must never raise into the loop
            log.exception("closing reader of %s failed", self.key)


class FanoutHub:
    """All live feeds of one process, keyed by (stream, format, track ids)."""

    def __init__(self, open_reader: ReaderFactory) -> None:
        self.open_reader = open_reader
        self.feeds: dict[FeedKey, LiveFeed] = {}

    def feed(
        self, stream: str, spec: FormatSpec, tracks: list[TrackMeta], live_behind_ms: int = 0
    ) -> LiveFeed:
        key = FeedKey(stream, spec.name, tuple(t.id for t in tracks))
        feed = self.feeds.get(key)
        if feed is not None and not feed.ended:
            return feed
        reader = self.open_reader(stream)
        reader.lag_wait_s = LIVE_LAG_WAIT_S  # viewers want low latency, not exact interleave
        try:
            reader.select([t.id for t in tracks])
            reader.seek_live(live_behind_ms)
            feed = LiveFeed(key, spec, tracks, reader, self)
        except BaseException:
            reader.close()
            raise
        self.feeds[key] = feed
        feed.start()
        return feed

    async def watch(
        self, conn: ViewerConn, stream: str, spec: FormatSpec, tracks: list[TrackMeta]
    ) -> None:
        """Attach ``conn`` to the feed and return when it leaves or the feed ends."""
        feed = self.feed(stream, spec, tracks)
        viewer = feed.join(conn)
        try:
            await viewer.done
        finally:
            feed.leave(viewer)

    def forget(self, feed: LiveFeed) -> None:
        if self.feeds.get(feed.key) is feed:
            del self.feeds[feed.key]

    async def close(self) -> None:
        tasks = [f.task for f in self.feeds.values() if f.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        return {
            f"{k.stream}.{k.format}": {
                "viewers": len(f.viewers),
                "batches": f.batches,
                "holds": f.holds,
            }
            for k, f in self.feeds.items()
        }
