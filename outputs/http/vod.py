"""Per-viewer delivery: VoD (and live DVR with ``?start=``) progressive downloads.

Every viewer has its own reader (positions differ) and its own muxer. ``?start=``
seeks to the keyframe at or before the asked time, ``?stop=`` ends after the last
packet before it. Reading waits on the bus (``await reader.wait``) when a page is not
loaded yet, and the body yields to the loop regularly and waits on the connection's
flow control, so one download never starves the others.

``/<s>.mp4`` of a VoD stream is a moov-first progressive MP4
(:class:`mistcodecs.mp4.progressive.Mp4ProgressiveMuxer`) with a ``Content-Length`` and
``Accept-Ranges: bytes``; a ``Range`` request gets ``206`` with exactly those bytes
(``416`` when unsatisfiable). Its layout (header bytes + where every sample lies) is
built from the part records without per-part objects and kept in a small LRU
(:class:`LayoutCache`), so later viewers of an unchanged stream start at once.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import operator
import re
import sys
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from mistcodecs.mp4.progressive import Mp4ProgressiveMuxer
from outputs.formats import FormatSpec
from outputs.http.message import Request, Response, Sink, error_response
from outputs.selectors import PlayOptions
from shm.layout import REC_SIZE
from shm.model import Packet, TrackMeta

log = logging.getLogger(__name__)

YIELD_EVERY = 64  # packets between voluntary yields to the event loop
WAIT_S = 1.0
DATA_TIMEOUT_S = 25.0  # MistServer's dataWaitTimeout: give up when no data comes this long


async def stream_packets(
    reader: Any, tracks: list[TrackMeta], opts: PlayOptions, muxer: Any, sink: Sink, live: bool
) -> int:
    """Write header, packets from start to stop, trailer; return the bytes written."""
    ids = [t.id for t in tracks]
    reader.select(ids)
    if opts.start is not None and opts.start < 0:
        if live:
            reader.seek_live(-opts.start)
        else:
            reader.seek(max(0, max(t.lastms for t in tracks) + opts.start))
    elif opts.start is not None:
        reader.seek(opts.start)  # the main keyframe at or before start
    elif not live:
        reader.seek(0)
    written = 0
    head = muxer.header()
    sink.write(head)
    written += len(head)
    count = 0
    idle = 0.0
    want = set(ids)
    while not sink.closed:
        p: Packet | None = reader.read()
        if p is None:
            if reader.at_end():
                break
            await reader.wait(WAIT_S)
            idle += WAIT_S
            if idle > DATA_TIMEOUT_S:
                log.warning("no data for %.0f s; ending the download", idle)
                break
            continue
        idle = 0.0
        if p.track not in want:
            continue
        if opts.stop is not None and p.dts > opts.stop:
            break
        out = muxer.packet(p)
        if out:
            sink.write(out)
            written += len(out)
        count += 1
        if count % YIELD_EVERY == 0:
            await sink.drain()
            await asyncio.sleep(0)
    tail = muxer.end()
    if tail and not sink.closed:
        sink.write(tail)
        written += len(tail)
    return written


async def respond(
    req: Request,
    reader: Any,
    spec: FormatSpec,
    tracks: list[TrackMeta],
    opts: PlayOptions,
    live: bool,
    headers: dict[str, str],
    open_reader: Callable[[str], Any],
    stream: str,
) -> Response:
    """The response of a per-viewer download; takes ownership of ``reader``."""
    if spec.name == "mp4" and not live and req.path.endswith(".mp4"):
        return await progressive_mp4(req, reader, tracks, opts, headers, open_reader, stream)
    if req.method == "HEAD":
        reader.close()  # the body is never produced: headers as a GET would send them
        return Response(200, headers, stream=_no_body)
    muxer = spec.build(tracks, live)
    if spec.name == "wav" and not live and opts.start is None and opts.stop is None:
        # A whole VoD file: exact RIFF sizes instead of the live "unknown" maximum.
        from mistcodecs.wav import WavMuxer

        pcm = next(t for t in tracks if t.codec == "PCM")
        muxer = WavMuxer([pcm], total_bytes=sum(p.size for p in track_parts(reader, pcm.id)))

    async def body(sink: Sink) -> None:
        try:
            await stream_packets(reader, tracks, opts, muxer, sink, live)
        finally:
            reader.close()

    return Response(200, headers, stream=body)


async def _no_body(sink: Sink) -> None:
    return None


# ---- progressive MP4 with Range ---------------------------------------------------------

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``(start, stop)`` (stop exclusive) for a single byte range; ``None`` if unsatisfiable.

    Multiple ranges are not supported and get the first one only when it is valid.
    """
    first = value.split(",", 1)[0].strip()
    m = _RANGE_RE.match(first)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix range: the last N bytes
        n = int(m.group(2))
        if n == 0:
            return None
        return max(0, size - n), size
    start = int(m.group(1))
    stop = int(m.group(2)) + 1 if m.group(2) else size
    if start >= size or stop <= start:
        return None
    return start, min(stop, size)


class PartIndex:
    """Per-track sample table in the shape the progressive muxer wants (flat arrays)."""

    def __init__(
        self,
        numbers: Sequence[int],
        dts: Sequence[int],
        offset: Sequence[int],
        size: Sequence[int],
        keyframe: Sequence[int] | bytes | bytearray,
    ) -> None:
        self.numbers: Sequence[int] = numbers
        self.dts: Sequence[int] = dts
        self.offset: Sequence[int] = offset
        self.size: Sequence[int] = size
        self.keyframe: Sequence[int] | bytes | bytearray = keyframe

    @classmethod
    def from_records(cls, first: int, raw: bytes) -> PartIndex:
        """Columns of raw part records (``shm.layout.PART``, little endian) numbered from
        ``first``, cut out with strided slices: no per-part Python objects."""
        n = len(raw) // REC_SIZE
        return cls(
            range(first, first + n),
            _column(raw, n, 0, 8, "q"),
            _column(raw, n, 20, 4, "i"),
            _column(raw, n, 16, 4, "I"),
            raw[28::REC_SIZE].translate(_LOW_BIT),  # flags bit 0: keyframe
        )

    def window(self, begin: int | None, stop: int | None) -> PartIndex:
        """The parts with ``begin <= dts <= stop`` (dts ascend within a track)."""
        lo = 0 if begin is None else bisect.bisect_left(self.dts, begin)
        hi = len(self.dts) if stop is None else bisect.bisect_right(self.dts, stop)
        if (lo, hi) == (0, len(self.dts)):
            return self
        return PartIndex(
            self.numbers[lo:hi],
            self.dts[lo:hi],
            self.offset[lo:hi],
            self.size[lo:hi],
            self.keyframe[lo:hi],
        )

    def end_ms(self) -> int:
        """End of presentation: the latest pts plus one sample, so B-frames reordered
        past the last dts stay inside the edit list."""
        dts = self.dts
        step = dts[-1] - dts[-2] if len(dts) > 1 else 0
        return max(map(operator.add, dts, self.offset)) + step


_LOW_BIT = bytes(i & 1 for i in range(256))
_BIG_ENDIAN = sys.byteorder == "big"


def _column(raw: bytes, n: int, at: int, width: int, code: str) -> array:
    """Field ``at``..``at+width`` of every ``REC_SIZE``-byte record as one array."""
    buf = bytearray(n * width)
    for k in range(width):
        buf[k::width] = raw[at + k :: REC_SIZE]
    out = array(code)
    out.frombytes(buf)
    if _BIG_ENDIAN:  # the bus is little endian
        out.byteswap()
    return out


def part_records(page: Any) -> tuple[int, bytes]:
    """(first part number, raw records of every part) of a track page, oldest first."""
    view, base, cap = page.view, page.parts_off, page.parts_cap
    for _ in range(8):
        first, end = page.counters()[:2]
        lo, n = first & (cap - 1), end - first
        if lo + n <= cap:
            raw = bytes(view[base + lo * REC_SIZE : base + (lo + n) * REC_SIZE])
        else:  # the ring wraps
            raw = bytes(view[base + lo * REC_SIZE : base + cap * REC_SIZE]) + bytes(
                view[base : base + (lo + n - cap) * REC_SIZE]
            )
        if page.counters()[0] == first:  # nothing overwritten while copying
            return first, raw
    raise TimeoutError(f"track {page.track}: part records keep moving")


def track_parts(reader: Any, track: int) -> list[Any]:
    """Every part record (``shm.PartInfo``) of a track, oldest first."""
    page = reader.track_page(track)
    first, end = page.counters()[:2]
    return [page.part(n) for n in range(first, end)]


class _TrackCursor:
    """Sequential access to one track's payloads by part number (own reader, one track).

    The progressive layout reads each track in increasing part order, so a cursor only
    re-seeks when a Range request jumps.
    """

    def __init__(self, reader: Any, track: int) -> None:
        self.reader = reader
        self.track = track
        self.next_part = -1
        reader.select([track])

    async def fetch(self, part_no: int, dts: int) -> bytes:
        if part_no != self.next_part:
            landed = self.reader.seek(dts)
            self.next_part = self.reader.track_page(self.track).find_part(landed)
            if self.next_part > part_no:
                raise ValueError(f"track {self.track}: cannot position on part {part_no}")
        idle = 0.0
        while True:
            p = self.reader.read()
            if p is None:
                if self.reader.at_end():
                    raise ValueError(f"track {self.track} ended before part {part_no}")
                await self.reader.wait(WAIT_S)
                idle += WAIT_S
                if idle > DATA_TIMEOUT_S:
                    raise TimeoutError(f"track {self.track}: part {part_no} never became available")
                continue
            n = self.next_part
            self.next_part += 1
            if n == part_no:
                return bytes(p.data)


class Layout:
    """A built progressive MP4: header bytes, byte layout and the sample index behind it."""

    def __init__(self, muxer: Mp4ProgressiveMuxer, index: dict[int, PartIndex]) -> None:
        self.muxer = muxer
        self.index = index
        pieces = sum(len(i.dts) for i in index.values())
        self.cost = len(muxer.header()) + 40 * pieces  # rough resident bytes


class LayoutCache:
    """Bounded LRU of :class:`Layout` per (stream, track metadata, index digest, window).

    The key holds a digest of the selected tracks' raw part records and their full
    metadata, so a re-indexed or restarted stream never gets a stale header.
    """

    def __init__(self, entries: int = 8, max_bytes: int = 96 << 20) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Any, ...], Layout] = OrderedDict()
        self.building: dict[tuple[Any, ...], asyncio.Future[Layout | None]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple[Any, ...]) -> Layout | None:
        found = self._items.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return found

    def put(self, key: tuple[Any, ...], layout: Layout) -> None:
        self._items[key] = layout
        self._items.move_to_end(key)
        while len(self._items) > 1 and (
            len(self._items) > self.entries
            or sum(v.cost for v in self._items.values()) > self.max_bytes
        ):
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


LAYOUTS = LayoutCache()  # one per MistOutHTTP process


def layout_key(
    stream: str, tracks: list[TrackMeta], opts: PlayOptions, records: dict[int, tuple[int, bytes]]
) -> tuple[Any, ...]:
    digest = hashlib.blake2b(digest_size=16)
    for t in tracks:
        first, raw = records[t.id]
        digest.update(first.to_bytes(8, "little", signed=True))
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return (stream, tuple(repr(t) for t in tracks), digest.digest(), opts.start, opts.stop)


def build_layout(
    reader: Any, tracks: list[TrackMeta], opts: PlayOptions, records: dict[int, tuple[int, bytes]]
) -> Layout | None:
    """Index + muxer for the asked window; ``None`` when it holds no media."""
    begin = None
    if opts.start is not None:
        reader.select([t.id for t in tracks])
        wanted = opts.start if opts.start >= 0 else max(t.lastms for t in tracks) + opts.start
        begin = reader.seek(max(0, wanted))
    index = {t.id: PartIndex.from_records(*records[t.id]).window(begin, opts.stop) for t in tracks}
    used = [t for t in tracks if index[t.id].dts]
    if not used:
        return None
    ends = {t.id: index[t.id].end_ms() for t in used}
    return Layout(Mp4ProgressiveMuxer(used, index, end_ms=ends), index)


async def cached_layout(
    reader: Any, tracks: list[TrackMeta], opts: PlayOptions, stream: str, cache: LayoutCache
) -> Layout | None:
    """The layout for this window from ``cache``, else built in a worker thread.

    Copying and hashing the part records and building a one-hour moov take tens of
    milliseconds of CPU: on the event loop they would stall every other viewer of this
    process, so they run in the default executor (the thread lets go of the GIL every
    few ms, and the loop keeps serving). The reader is only touched by that thread while
    this coroutine waits for it. Concurrent first viewers of one window share one build.
    """
    loop = asyncio.get_running_loop()

    def snapshot() -> tuple[dict[int, tuple[int, bytes]], tuple[Any, ...]]:
        records = {t.id: part_records(reader.track_page(t.id)) for t in tracks}
        return records, layout_key(stream, tracks, opts, records)

    records, key = await _to_end(loop.run_in_executor(None, snapshot))
    layout = cache.get(key)
    if layout is not None:
        return layout
    pending = cache.building.get(key)
    if pending is not None:  # another viewer is building the same layout: share it
        return await asyncio.shield(pending)
    job = loop.run_in_executor(None, build_layout, reader, tracks, opts, records)
    cache.building[key] = job

    def finished(f: asyncio.Future[Layout | None]) -> None:
        cache.building.pop(key, None)
        if not f.cancelled() and f.exception() is None and (built := f.result()) is not None:
            cache.put(key, built)  # also when the viewer that asked left meanwhile

    job.add_done_callback(finished)
    return await _to_end(job)


async def _to_end(job: asyncio.Future[Any]) -> Any:
    """Await a worker-thread job; if cancelled, still wait for the thread to finish
    (it reads through the caller's reader, which the caller closes next)."""
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.wait([job])
        raise


async def progressive_mp4(
    req: Request,
    reader: Any,
    tracks: list[TrackMeta],
    opts: PlayOptions,
    headers: dict[str, str],
    open_reader: Callable[[str], Any],
    stream: str,
    cache: LayoutCache | None = None,
) -> Response:
    """Moov-first MP4 of a VoD stream with Range support; takes ownership of ``reader``.

    The layout comes from ``cache`` (default: the process-wide :data:`LAYOUTS`) when the
    stream's index is unchanged, so only the first viewer pays for building the moov.
    """
    cache = LAYOUTS if cache is None else cache
    try:
        layout = await cached_layout(reader, tracks, opts, stream, cache)
    finally:
        reader.close()
    if layout is None:
        return error_response(404, "No media in the asked time range")
    muxer, index = layout.muxer, layout.index
    size = muxer.size
    headers = dict(headers, **{"Accept-Ranges": "bytes"})
    start, stop, status = 0, size, 200
    if "range" in req.headers:
        rng = parse_range(req.headers["range"], size)
        if rng is None:
            return Response(
                416,
                {"Content-Range": f"bytes */{size}", "Content-Type": "text/plain"},
                b"Range not satisfiable\n",
            )
        start, stop = rng
        status = 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    headers["Content-Length"] = str(stop - start)
    if req.method == "HEAD":
        return Response(status, headers, b"")  # the Content-Length header describes the GET body

    async def body(sink: Sink) -> None:
        cursors: dict[int, _TrackCursor] = {}
        try:
            await _send_range(muxer, index, start, stop, sink, cursors, open_reader, stream)
        finally:
            for c in cursors.values():
                c.reader.close()

    return Response(status, headers, stream=body)


async def _send_range(
    muxer: Any,
    index: dict[int, PartIndex],
    start: int,
    stop: int,
    sink: Sink,
    cursors: dict[int, _TrackCursor],
    open_reader: Callable[[str], Any],
    stream: str,
) -> None:
    count = 0
    for piece, a, b in muxer.ranges(start, stop):
        if sink.closed:
            return
        if piece.track is None:
            sink.write(muxer.header()[a:b])
            continue
        cursor = cursors.get(piece.track)
        if cursor is None:
            cursor = cursors[piece.track] = _TrackCursor(open_reader(stream), piece.track)
        idx = index[piece.track]
        data = await cursor.fetch(idx.numbers[piece.index], idx.dts[piece.index])
        if len(data) != piece.size:
            raise ValueError(
                f"track {piece.track} sample {piece.index}: {len(data)} bytes, index says {piece.size}"
            )
        sink.write(data[a:b] if (a, b) != (0, piece.size) else data)
        count += 1
        if count % YIELD_EVERY == 0:
            await sink.drain()
            await asyncio.sleep(0)
