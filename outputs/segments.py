"""Pure building blocks shared by the segmented outputs (HLS with TS, CMAF for DASH/HLS).

* :class:`ByteCache` -- an LRU of muxed segments, parts and playlists bounded by bytes;
  one per process, shared by every viewer (mux once, send many).
* :class:`PacketWindow` -- copies of a live stream's recent packets per track, cut into
  any time range with a bisect (segments and LL-HLS parts come from here).
* :func:`segment_spans` / :func:`segment_parts` -- segment and part boundaries.

Segments are the bus's fragments of the stream's main track (the first video track,
else the first audio track). The writer cuts fragments at the first keyframe at least
``segmentsize`` after the previous one, so every process that reads the stream sees
the same boundaries and the same fragment numbers: those become the segment names
(``<from>_<until>`` in ms, as MistServer) and the media sequence numbers, and several
MistOutHTTP processes behind one port serve interchangeable playlists.

Parts (LL-HLS) are cut inside each segment with :func:`mistcodecs.hls.cut_parts` over
the main track's frame times, so they too are the same everywhere.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from mistcodecs.hls import PartSpan, SegmentSpan, cut_parts
from shm.model import Packet, TrackMeta

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024


class ByteCache:
    """LRU mapping of keys to bytes, bounded by the total size of the values."""

    def __init__(self, limit: int = DEFAULT_CACHE_BYTES) -> None:
        self.limit = limit
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()

    def get(self, key: Hashable) -> bytes | None:
        value = self._items.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: bytes) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= len(old)
        if len(value) > self.limit:
            return  # larger than the whole cache: serve it, do not keep it
        self._items[key] = value
        self.size += len(value)
        while self.size > self.limit:
            _, dropped = self._items.popitem(last=False)
            self.size -= len(dropped)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def main_track(tracks: dict[int, TrackMeta]) -> int | None:
    """The track whose keyframes cut the segments: first video, else first audio."""
    for kind in ("video", "audio"):
        ids = sorted(t.id for t in tracks.values() if t.type == kind)
        if ids:
            return ids[0]
    return None


@dataclass(frozen=True)
class Fragment:
    """What the segmenter needs of a bus fragment record."""

    number: int
    time: int
    duration: int  # 0 while open


def segment_spans(
    fragments: Iterable[Fragment], *, known_ms: int, end_ms: int | None = None
) -> tuple[list[SegmentSpan], int | None]:
    """Complete segments and the start of the open one (None when there is none).

    A live fragment counts as a segment once every track has data up to its end
    (``known_ms``), so muxing it never waits. With ``end_ms`` (VoD) the last fragment
    runs to the end of the media."""
    spans: list[SegmentSpan] = []
    open_start: int | None = None
    frags = list(fragments)
    for i, f in enumerate(frags):
        last = i == len(frags) - 1
        if end_ms is not None and last:
            spans.append(SegmentSpan(f.number, f.time, max(end_ms, f.time + 1)))
        elif f.duration > 0 and f.time + f.duration <= known_ms:
            spans.append(SegmentSpan(f.number, f.time, f.time + f.duration))
        else:
            open_start = f.time
            break
    return spans, open_start


def segment_parts(
    msn: int,
    seg_start: int,
    frames: Sequence[int],
    keyframes: Sequence[int],
    part_ms: int,
    *,
    end_ms: int | None,
    known_ms: int,
    gop_ms: int | None = None,
) -> list[PartSpan]:
    """LL-HLS parts of one segment from the main track's frame times inside it.

    ``end_ms`` closes a complete segment; for the open one only parts whose end is
    decided by ``known_ms`` are returned. ``gop_ms``: the keyframe interval that ended
    at ``seg_start`` (see :func:`~mistcodecs.hls.cut_parts`)."""
    inside = [f for f in frames if f >= seg_start and (end_ms is None or f < end_ms)]
    if not inside:
        return []
    keys = [k for k in keyframes if k >= seg_start and (end_ms is None or k < end_ms)]
    if end_ms is not None:
        keys.append(end_ms)
    if seg_start not in keys:
        keys.insert(0, seg_start)  # a segment starts on a keyframe (or the main track's start)
    cuts = cut_parts(inside, keys, part_ms, end_ms=end_ms, known_ms=known_ms, gop_ms=gop_ms)
    return [
        PartSpan(msn, i, start, end, independent or i == 0, seg_start)
        for i, (start, end, independent) in enumerate(cuts)
    ]


class PacketWindow:
    """Recent packets of a live stream per track (copies, in dts order)."""

    def __init__(self) -> None:
        self._dts: dict[int, list[int]] = {}
        self._packets: dict[int, list[Packet]] = {}
        self.first_ms: int | None = None  # every track holds all of its packets from here

    def add(self, p: Packet) -> None:
        dts = self._dts.setdefault(p.track, [])
        if dts and p.dts < dts[-1]:
            return  # the bus never goes backwards; a reordering here would corrupt ranges
        dts.append(p.dts)
        self._packets.setdefault(p.track, []).append(
            Packet(p.track, p.dts, p.offset, p.keyframe, bytes(p.data))
        )

    def last_ms(self, track: int) -> int | None:
        dts = self._dts.get(track)
        return dts[-1] if dts else None

    def range(self, track: int, start: int, end: int | None) -> list[Packet]:
        """Packets of ``track`` with ``start <= dts < end`` (``end`` None: to the newest)."""
        dts = self._dts.get(track, [])
        lo = bisect.bisect_left(dts, start)
        hi = len(dts) if end is None else bisect.bisect_left(dts, end)
        return self._packets.get(track, [])[lo:hi]

    def frames(self, track: int, start: int) -> tuple[list[int], list[int]]:
        """(frame times, keyframe times) of ``track`` from ``start`` on."""
        dts = self._dts.get(track, [])
        lo = bisect.bisect_left(dts, start)
        packets = self._packets.get(track, [])[lo:]
        return dts[lo:], [p.dts for p in packets if p.keyframe]

    def key_before(self, track: int, ms: int) -> int | None:
        """dts of the last keyframe of ``track`` before ``ms`` (None: not in the window)."""
        dts = self._dts.get(track, [])
        packets = self._packets.get(track, [])
        for i in range(bisect.bisect_left(dts, ms) - 1, -1, -1):
            if packets[i].keyframe:
                return dts[i]
        return None

    def covers(self, start: int) -> bool:
        return self.first_ms is not None and start >= self.first_ms

    def drop_before(self, ms: int) -> None:
        for track, dts in self._dts.items():
            cut = bisect.bisect_left(dts, ms)
            if cut:
                del dts[:cut]
                del self._packets[track][:cut]
        if self.first_ms is None or ms > self.first_ms:
            self.first_ms = ms

    @property
    def bytes(self) -> int:
        return sum(len(p.data) for ps in self._packets.values() for p in ps)
