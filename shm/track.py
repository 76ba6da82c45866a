"""A track page: header + parts/keys/fragments/pages rings (layout in ``layout.py``).

:class:`TrackPage` is a typed view used by the writer, the reader and MistUtilMETA.
Hot paths bypass it and use the precompiled structs with the cached offsets/masks.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ShmFormatError
from .layout import (
    COUNTERS,
    FRAG,
    KEY,
    OFF_COUNTERS,
    OFF_STATS,
    PAGE,
    PAGE_REC_SIZE,
    PART,
    REC_SIZE,
    STATS,
    TRACK_HDR,
    TRACK_HDR_SIZE,
    ring_offsets,
    track_page_size,
    unwrap32,
)
from .segment import Segment


@dataclass(frozen=True, slots=True)
class PartInfo:
    number: int
    dts: int
    pos: int
    page: int
    size: int
    offset: int
    key: int
    keyframe: bool


@dataclass(frozen=True, slots=True)
class KeyInfo:
    number: int
    time: int  # ms
    first_part: int
    parts: int  # 0 while the key is still open (live)
    size: int
    duration: int  # ms; 0 while open
    page: int


@dataclass(frozen=True, slots=True)
class FragmentInfo:
    number: int
    time: int  # start ms
    duration: int  # ms; 0 while the fragment is still open
    first_key: int
    keys: int
    size: int
    first_part: int

    @property
    def complete(self) -> bool:
        return self.duration > 0


@dataclass(frozen=True, slots=True)
class PageInfo:
    number: int
    first_key: int
    first_part: int
    first_time: int
    last_time: int
    parts: int
    keys: int
    size: int
    avail: int
    state: int


class TrackPage:
    """Typed access to one mapped track page."""

    def __init__(self, seg: Segment) -> None:
        if seg.size < TRACK_HDR_SIZE:
            raise ShmFormatError(f"track page {seg.name} is only {seg.size} bytes")
        self.seg = seg
        self.view = seg.view
        (
            _status,
            self.gen,
            self.parts_cap,
            self.keys_cap,
            self.frags_cap,
            self.pages_cap,
            self.track,
            _dropped,
        ) = TRACK_HDR.unpack_from(self.view, 0)
        caps = (self.parts_cap, self.keys_cap, self.frags_cap, self.pages_cap)
        if any(c == 0 or c & (c - 1) for c in caps):
            raise ShmFormatError(f"track page {seg.name}: capacities {caps} not powers of two")
        if track_page_size(*caps) > seg.size:
            raise ShmFormatError(f"track page {seg.name}: too small for capacities {caps}")
        self.parts_off, self.keys_off, self.frags_off, self.pages_off = ring_offsets(
            self.parts_cap, self.keys_cap, self.frags_cap
        )

    @classmethod
    def create(
        cls, seg: Segment, track: int, gen: int, caps: tuple[int, int, int, int], status: int
    ) -> TrackPage:
        TRACK_HDR.pack_into(seg.view, 0, status, gen, *caps, track, 0)
        return cls(seg)

    # -- header -----------------------------------------------------------------------
    @property
    def status(self) -> int:
        return TRACK_HDR.unpack_from(self.view, 0)[0]

    def set_status(self, status: int) -> None:
        self.view[0:4] = status.to_bytes(4, "little")

    @property
    def dropped(self) -> int:
        return TRACK_HDR.unpack_from(self.view, 0)[7]

    def counters(self) -> tuple[int, int, int, int, int, int, int, int]:
        """(parts start, end, keys start, end, frags start, end, pages start, end)."""
        return COUNTERS.unpack_from(self.view, OFF_COUNTERS)

    def stats(self) -> tuple[int, int, int, int]:
        """(firstms, lastms, bps, maxbps); lastms is the dts of the newest part."""
        firstms, lastms, bps, maxbps = STATS.unpack_from(self.view, OFF_STATS)
        start, end = COUNTERS.unpack_from(self.view, OFF_COUNTERS)[:2]
        if end > start:
            last = end - 1
            lastms = PART.unpack_from(
                self.view, self.parts_off + (last & (self.parts_cap - 1)) * REC_SIZE
            )[0]
        return firstms, lastms, bps, maxbps

    # -- records ----------------------------------------------------------------------
    def part(self, n: int) -> PartInfo:
        dts, pos, page, size, off, key, flags = PART.unpack_from(
            self.view, self.parts_off + (n & (self.parts_cap - 1)) * REC_SIZE
        )
        c = self.counters()
        return PartInfo(
            n, dts, pos, unwrap32(c[6], page), size, off, unwrap32(c[2], key), bool(flags & 1)
        )

    def key(self, n: int) -> KeyInfo:
        time, first_part, parts, size, duration, page = KEY.unpack_from(
            self.view, self.keys_off + (n & (self.keys_cap - 1)) * REC_SIZE
        )
        return KeyInfo(
            n, time, first_part, parts, size, duration, unwrap32(self.counters()[6], page)
        )

    def fragment(self, n: int) -> FragmentInfo:
        time, first_key, keys, size, duration = FRAG.unpack_from(
            self.view, self.frags_off + (n & (self.frags_cap - 1)) * REC_SIZE
        )
        first_part = self.key(first_key).first_part
        return FragmentInfo(n, time, duration, first_key, keys, size, first_part)

    def page(self, n: int) -> PageInfo:
        rec = PAGE.unpack_from(
            self.view, self.pages_off + (n & (self.pages_cap - 1)) * PAGE_REC_SIZE
        )
        return PageInfo(n, *rec)

    def keys(self) -> list[KeyInfo]:
        c = self.counters()
        return [self.key(n) for n in range(c[2], c[3])]

    def fragments(self) -> list[FragmentInfo]:
        c = self.counters()
        return [self.fragment(n) for n in range(c[4], c[5])]

    def pages(self) -> list[PageInfo]:
        c = self.counters()
        return [self.page(n) for n in range(c[6], c[7])]

    def find_part(self, dts: int) -> int:
        """Number of the first part with dts >= ``dts`` (parts are dts-ordered)."""
        c = self.counters()
        lo, hi = c[0], c[1]
        while lo < hi:
            mid = (lo + hi) // 2
            d = PART.unpack_from(
                self.view, self.parts_off + (mid & (self.parts_cap - 1)) * REC_SIZE
            )[0]
            if d < dts:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def find_key(self, ms: int) -> int:
        """Number of the last key starting at or before ``ms`` (the first key if none)."""
        c = self.counters()
        lo, hi = c[2], c[3]
        if lo >= hi:
            return lo
        while hi - lo > 1:
            mid = (lo + hi) // 2
            t = KEY.unpack_from(self.view, self.keys_off + (mid & (self.keys_cap - 1)) * REC_SIZE)[
                0
            ]
            if t <= ms:
                lo = mid
            else:
                hi = mid
        return lo

    def page_of_key(self, key: int) -> int:
        """Number of the data page holding key ``key``."""
        c = self.counters()
        lo, hi = c[6], c[7]
        if lo >= hi:
            return lo
        while hi - lo > 1:
            mid = (lo + hi) // 2
            fk = PAGE.unpack_from(
                self.view, self.pages_off + (mid & (self.pages_cap - 1)) * PAGE_REC_SIZE
            )[0]
            if fk <= key:
                lo = mid
            else:
                hi = mid
        return lo
