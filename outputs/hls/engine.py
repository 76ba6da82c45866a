"""Per-stream segment engine shared by HLS (TS) and CMAF (fMP4) inside MistOutHTTP.

One :class:`StreamSegments` per stream and process, whatever the number of viewers:

* **live** -- a watcher task reads every packet from the bus as it is published (it
  sleeps on the bus's wake-ups, no polling), keeps copies of the recent ones in a
  :class:`~outputs.segments.PacketWindow`, recomputes the segment list from the bus's
  fragments and wakes every request waiting for a change (blocking playlist reloads,
  preload-hinted parts, segments not finished yet). Renditions asked for recently are
  muxed as soon as their segment or part completes (``prewarm``), so viewers are served
  from the cache.
* **VoD** -- the segment list is computed once from the fragments; a segment's packets
  are read from the bus (loading pages on demand) the first time it is asked for.

Muxed bytes live in the process-wide :data:`CACHE`; keys start with the stream name and
its writer generation, so a restarted stream never serves stale bytes.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import time
import zlib
from collections.abc import Callable
from typing import Any

from mistcodecs.hls import PartSpan, SegmentSpan, target_duration
from outputs.segments import (
    ByteCache,
    Fragment,
    PacketWindow,
    main_track,
    segment_parts,
    segment_spans,
)
from shm.model import Packet, StreamState, TrackMeta
from shm.reader import LIVE_LAG_WAIT_S

log = logging.getLogger(__name__)

CACHE = ByteCache(int(os.environ.get("MIST_SEGMENT_CACHE_MB", "256")) * 1024 * 1024)
PART_MS = 334  # LL-HLS part target (PART-HOLD-BACK is three of them)
KEEP_SEGMENTS = 12  # segments kept in memory behind the live edge
LL_SEGMENTS = 3  # complete segments whose parts a live playlist still lists
IDLE_CLOSE_S = 30.0  # close a stream nobody asked about for this long
PREWARM_S = 10.0  # keep muxing ahead for renditions asked for within this time
READY_WAIT_S = 10.0
READY_SEGMENTS = 3  # complete segments a live playlist lists before it is first served
READER_POOL = 4  # idle bus readers kept per stream for segments read on demand

Prewarm = Callable[["StreamSegments"], None]


def init_tag(track: TrackMeta) -> int:
    """A fingerprint of a track's codec data: cache keys change when a publisher's do."""
    return zlib.crc32(bytes(track.init))


class StreamGone(Exception):
    """The stream is not on the bus (offline, ended or without playable tracks)."""


class MediaTimeout(Exception):
    """The bus did not deliver a segment's data in time (an input too slow to load it)."""


class StreamSegments:
    """Segments, parts and packets of one stream (see module docstring)."""

    def __init__(self, stream: str, reader: Any, part_ms: int = PART_MS) -> None:
        self.stream = stream
        self.reader = reader
        meta = reader.meta
        self.live: bool = meta.live
        self.tracks: dict[int, TrackMeta] = dict(meta.tracks)
        main = main_track(self.tracks)
        if main is None:
            raise StreamGone(f"stream {stream!r} has no audio or video track")
        self.main: int = main
        self.target_ms: int = meta.fragment_ms
        self.dvr_ms: int = meta.dvr_ms
        self.part_ms = part_ms
        # cache keys of this incarnation: a restarted stream may reuse names and page names
        self.generation = f"{meta.pages.get(main, '')}@{time.time_ns()}"
        self._meta_version = meta.version
        self.spans: list[SegmentSpan] = []
        self.open_start: int | None = None
        self.known_ms = 0
        self.ended = not self.live
        self.closed = False
        self.version = 0
        # A live fragment ends at the first keyframe after ``segmentsize``: leave a second for
        # the keyframe interval, so EXT-X-TARGETDURATION need not grow (RFC 8216 6.2.1).
        self.target_s = max(1, -(-self.target_ms // 1000) + (1 if self.live else 0))
        self.utc_offset_ms: int | None = None  # unix ms at media time 0 (live)
        self.discontinuities: list[int] = []  # media times where a publisher resumed
        self.last_used = time.monotonic()
        self.window = PacketWindow()
        self.prewarm: dict[Any, tuple[float, Prewarm]] = {}
        self._memo: dict[Any, tuple[int, Any]] = {}
        self._signature: tuple[Any, ...] = ()
        self._pool: list[Any] = []  # idle readers for segments read from the bus
        self._parts: dict[int, list[PartSpan]] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._task: asyncio.Task[None] | None = None
        if not self.live:
            self._index_vod()

    # -- index ---------------------------------------------------------------------------
    def _fragments(self, since: int | None = None) -> list[Fragment]:
        out = [Fragment(f.number, f.time, f.duration) for f in self.reader.fragments(self.main)]
        return [f for f in out if since is None or f.time >= since]

    def _index_vod(self) -> None:
        page = self.reader.track_page(self.main)
        c = page.counters()
        end = max((t.lastms for t in self.tracks.values()), default=0)
        frame = 40
        if c[1] - c[0] >= 2:
            frame = max(1, page.part(c[1] - 1).dts - page.part(c[1] - 2).dts)
        self.spans, self.open_start = segment_spans(
            self._fragments(), known_ms=end + frame, end_ms=end + frame
        )
        self.known_ms = end + frame
        self.target_s = target_duration(self.spans, self.target_ms)

    def _index_live(self) -> None:
        meta = self.reader.meta
        if meta.version != self._meta_version:
            self._meta_version = meta.version
            self.tracks = dict(meta.tracks)
        lasts = [
            ms
            for tid, t in self.tracks.items()
            if t.type in ("video", "audio") and (ms := self.window.last_ms(tid)) is not None
        ]
        if not lasts:
            return
        self.known_ms = min(lasts)
        first = self.window.first_ms
        spans, self.open_start = segment_spans(self._fragments(first), known_ms=self.known_ms)
        self.spans = spans[-4 * KEEP_SEGMENTS :]
        self.target_s = max(self.target_s, target_duration(self.spans, self.target_ms))
        main = self.tracks.get(self.main)
        if main is not None:
            self.discontinuities = [int(x) for x in main.extra.get("discontinuities", [])]
        if len(self.spans) > KEEP_SEGMENTS:
            cut = self.spans[-KEEP_SEGMENTS].start_ms
            self.window.drop_before(cut)
            self._parts = {
                k: v for k, v in self._parts.items() if k >= self.spans[-KEEP_SEGMENTS].msn
            }
        if self.utc_offset_ms is None:
            self.utc_offset_ms = int(time.time() * 1000) - self.known_ms

    # -- live watcher --------------------------------------------------------------------
    def start(self) -> None:
        if self.live and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def _start_position(self) -> int:
        frags = self._fragments()
        if not frags:
            return self.reader.seek_live(0)
        oldest = frags[max(0, len(frags) - KEEP_SEGMENTS)]
        return self.reader.seek(oldest.time)

    async def _watch(self) -> None:
        reader = self.reader
        # the window keeps each track's own order, which is all it needs: a sparse track
        # (a subtitle cue now and then) must not hold the media back for GIVE_UP_MS
        reader.lag_wait_s = LIVE_LAG_WAIT_S
        try:
            reader.select(None)
            start = self._start_position()
            self.window.first_ms = start
            while not self.closed:
                n = 0
                while (p := reader.read()) is not None:
                    self.window.add(p)
                    n += 1
                    if n % 2000 == 0:
                        await asyncio.sleep(0)  # a big backlog must not stall the loop
                if n:
                    self._index_live()
                    # wake waiters only when a segment or part was completed, not per packet
                    signature = (self.spans[-1] if self.spans else None, self.open_start,
                                 len(self.parts_of(self.next_msn)))  # fmt: skip
                    if signature != self._signature:
                        self._signature = signature
                        self._changed()
                        self._run_prewarm()
                gone = reader.closed or reader.meta.state in (StreamState.OFF, StreamState.SHUTDOWN)
                if gone and reader.at_end():
                    break
                await reader.wait(1.0)
        except Exception:
            log.exception("stream %s: segment watcher failed", self.stream)
        finally:
            self.ended = True
            self.closed = True
            self._changed()

    def _run_prewarm(self) -> None:
        now = time.monotonic()
        for key, (when, fn) in list(self.prewarm.items()):
            if now - when > PREWARM_S:
                del self.prewarm[key]
                continue
            try:
                fn(self)
            except Exception:
                log.exception("stream %s: prewarm %r failed", self.stream, key)

    def want(self, key: Any, fn: Prewarm) -> None:
        """Keep muxing rendition ``key`` ahead while viewers ask for it."""
        if self.live:
            self.prewarm[key] = (time.monotonic(), fn)

    def memo(self, key: Any, build: Callable[[], Any]) -> Any:
        """``build()``, computed again only after the index changed (playlists)."""
        hit = self._memo.get(key)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        value = build()
        self._memo[key] = (self.version, value)
        return value

    # -- waiting -------------------------------------------------------------------------
    def _changed(self) -> None:
        self.version += 1
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    async def wait_change(self, timeout: float) -> bool:
        """Wait for the next index update; False on timeout or when the stream is over."""
        if self.closed:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return not self.closed
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(fut)

    async def until_playable(self, segments: int = READY_SEGMENTS) -> bool:
        """Hold a young live stream's first playlist until it lists ``segments`` complete
        segments, so a player starting at the top is not at the live edge at once and
        stalling (MistServer's HLS waits for more than four fragments, reference 6.6)."""
        if not self.live:
            return True
        wanted = min(segments, KEEP_SEGMENTS)
        return await self.wait_for(
            lambda: len(self.spans) >= wanted or (self.ended and bool(self.spans)),
            (wanted + 2) * self.target_s + 2.0,
        )

    async def wait_for(self, ready: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not ready():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return ready()
            await self.wait_change(left)
        return True

    # -- lookups -------------------------------------------------------------------------
    @property
    def next_msn(self) -> int:
        return self.spans[-1].msn + 1 if self.spans else self._first_open_msn()

    def _first_open_msn(self) -> int:
        frags = self._fragments(self.window.first_ms) if self.live else []
        return frags[0].number if frags else 0

    def span_at(self, start_ms: int) -> SegmentSpan | None:
        spans = self.spans
        i = bisect.bisect_left(spans, start_ms, key=lambda s: s.start_ms)
        return spans[i] if i < len(spans) and spans[i].start_ms == start_ms else None

    def span_msn(self, msn: int) -> SegmentSpan | None:
        if not self.spans or not self.spans[0].msn <= msn <= self.spans[-1].msn:
            return None
        span = self.spans[msn - self.spans[0].msn]
        return span if span.msn == msn else next((s for s in self.spans if s.msn == msn), None)

    def parts_of(self, msn: int) -> list[PartSpan]:
        """LL-HLS parts of a listed segment or of the open one (live only)."""
        if not self.live:
            return []
        cached = self._parts.get(msn)
        if cached is not None:
            return cached
        span = self.span_msn(msn)
        if span is not None:
            if not self.window.covers(span.start_ms):
                return []
            frames, keys = self.window.frames(self.main, span.start_ms)
            parts = segment_parts(
                msn, span.start_ms, frames, keys, self.part_ms,
                end_ms=span.end_ms, known_ms=self.known_ms, gop_ms=self._gop_before(span.start_ms),
            )  # fmt: skip
            self._parts[msn] = parts
            return parts
        if msn == self.next_msn and self.open_start is not None:
            frames, keys = self.window.frames(self.main, self.open_start)
            return segment_parts(
                msn, self.open_start, frames, keys, self.part_ms,
                end_ms=None, known_ms=self.known_ms, gop_ms=self._gop_before(self.open_start),
            )  # fmt: skip
        return []

    def _gop_before(self, seg_start: int) -> int | None:
        """The keyframe interval that ended where a segment starts: parts split the
        next ones evenly (only earlier data, so every process cuts the same parts)."""
        before = self.window.key_before(self.main, seg_start)
        return seg_start - before if before is not None else None

    def ll_parts(self) -> list[PartSpan]:
        """Parts a live LL-HLS playlist lists: the last few segments and the open one."""
        out: list[PartSpan] = []
        for span in self.spans[-LL_SEGMENTS:]:
            out.extend(self.parts_of(span.msn))
        out.extend(self.parts_of(self.next_msn))
        return out

    def part_at(self, seg_start: int, index: int) -> PartSpan | None:
        span = self.span_at(seg_start)
        msn = span.msn if span is not None else None
        if msn is None and seg_start == self.open_start:
            msn = self.next_msn
        if msn is None:
            return None
        parts = self.parts_of(msn)
        return parts[index] if index < len(parts) else None

    # -- packets -------------------------------------------------------------------------
    async def packets(
        self, tracks: list[int], start: int, end: int, open_reader: Callable[[str], Any]
    ) -> dict[int, list[Packet]]:
        """Packets of ``tracks`` with ``start <= dts < end``, per track."""
        self.last_used = time.monotonic()
        if self.live and self.window.covers(start) and end <= self.known_ms:
            return {t: self.window.range(t, start, end) for t in tracks}
        import shm

        reader = self._pool.pop() if self._pool else None
        if reader is None:
            try:
                reader = open_reader(self.stream)
            except shm.StreamNotFound as exc:
                raise StreamGone(f"stream {self.stream!r} left the bus") from exc
        try:
            result = await read_range(reader, tracks, start, end)
        except BaseException:
            reader.close()
            raise
        if len(self._pool) < READER_POOL and not self.closed and not reader.closed:
            self._pool.append(reader)  # VoD readers are reused: a bus slot each, not per segment
        else:
            reader.close()
        return result

    def close(self) -> None:
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        self._changed()
        while self._pool:
            self._pool.pop().close()
        with contextlib.suppress(Exception):
            self.reader.close()


async def read_range(
    reader: Any, tracks: list[int], start: int, end: int, timeout: float = 15.0
) -> dict[int, list[Packet]]:
    """Read ``[start, end)`` of ``tracks`` from the bus with a reader not shared meanwhile."""
    out: dict[int, list[Packet]] = {t: [] for t in tracks}
    deadline = time.monotonic() + timeout
    reader.select(tracks)
    reader.seek(start)
    while True:
        p = reader.read()
        if p is None:
            if reader.at_end():
                break
            if time.monotonic() > deadline:  # never cache a partial segment
                raise MediaTimeout(f"no data for {start}..{end} ms within {timeout:.0f} s")
            await reader.wait(0.5)
            continue
        if p.dts >= end:
            break
        if p.dts >= start:
            out[p.track].append(Packet(p.track, p.dts, p.offset, p.keyframe, bytes(p.data)))
    return out


class SegmentService:
    """The streams this process serves segments of, opened on demand, closed when idle."""

    def __init__(self) -> None:
        self.streams: dict[str, StreamSegments] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._opening: dict[str, asyncio.Future[StreamSegments]] = {}

    def open_reader(self, stream: str) -> Any:
        import shm

        return shm.StreamReader(stream)

    async def get(self, stream: str) -> StreamSegments:
        seg = self.streams.get(stream)
        if seg is not None and not seg.live and not seg.closed:
            seg.reader.refresh()
            if seg.reader.closed:  # the VoD input went away: index a new one
                seg.close()
        if seg is not None and not seg.closed:
            seg.last_used = time.monotonic()
            return seg
        if seg is not None:
            self.streams.pop(stream, None)
        pending = self._opening.get(stream)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[StreamSegments] = asyncio.get_running_loop().create_future()
        self._opening[stream] = fut
        try:
            seg = await self._open(stream)
            self.streams[stream] = seg
            seg.start()
            fut.set_result(seg)
            self._ensure_sweeper()
            return seg
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters get it through shield
            raise
        finally:
            self._opening.pop(stream, None)

    async def _open(self, stream: str) -> StreamSegments:
        reader = await self._find(stream)
        deadline = time.monotonic() + READY_WAIT_S
        try:
            while True:
                meta = reader.meta
                ready = meta.state in (StreamState.READY, StreamState.SHUTDOWN)
                if ready and main_track(meta.tracks) is not None:
                    return StreamSegments(stream, reader)
                if meta.state == StreamState.INVALID or time.monotonic() > deadline:
                    raise StreamGone(f"stream {stream!r} has no playable data yet")
                await reader.wait(0.2)
        except BaseException:
            reader.close()
            raise

    async def _find(self, stream: str) -> Any:
        import shm

        try:
            return self.open_reader(stream)
        except shm.StreamNotFound:
            pass
        if os.environ.get("MIST_CONTROL") == "none":
            raise StreamGone(f"stream {stream!r} is offline")
        from common.control import ensure_input_async

        result = await ensure_input_async(stream, timeout=5.0)
        if result.get("status") == "error":
            raise StreamGone(f"stream {stream!r} cannot start: {result.get('error')}")
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            try:
                return self.open_reader(stream)
            except shm.StreamNotFound:
                await asyncio.sleep(0.05)
        raise StreamGone(f"stream {stream!r} did not start")

    async def close(self) -> None:
        """Close every stream (readers, watchers) and stop the idle sweeper."""
        for seg in list(self.streams.values()):
            seg.close()
        self.streams.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while self.streams:
            await asyncio.sleep(2.0)
            now = time.monotonic()
            for name, seg in list(self.streams.items()):
                if seg.closed or now - seg.last_used > IDLE_CLOSE_S:
                    seg.close()
                    self.streams.pop(name, None)


SERVICE = SegmentService()
