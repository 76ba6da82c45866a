"""How much media an MP4 arriving in order (stdin, HTTP) has delivered so far.

MistAnalyserMP4 analyses once the whole file is there (moov may come last), but
``-V`` needs media time while the data arrives. :class:`Mp4Progress` looks at each
top-level box as it completes: a moov before the media (faststart) gives every
sample's byte range, so media time is that of the last sample fully received; a
moof gives its fragment's end time, counted once the mdat after it is complete.
An mdat that starts before any moov marks media as begun but not yet playable
(time 0), so a slow non-faststart source is noticed too. Sans-IO: it only reads
what ``read_at`` already holds.
"""

from __future__ import annotations

import bisect
from itertools import accumulate

from common.errors import MediaError
from mistcodecs.errors import FormatError, Truncated
from mistcodecs.mp4 import records
from mistcodecs.mp4.boxes import BoxHeader, ReadAt, children, find_path, payload, read_header
from mistcodecs.mp4.demux import Mp4Demuxer

NO_LIMIT = 1 << 62  # top-level boxes are read before their end has arrived


class Mp4Progress:
    """Feed it the number of bytes received with :meth:`update`; read ``media_ms``."""

    def __init__(self, read_at: ReadAt) -> None:
        self.read_at = read_at
        self.media_ms: int | None = None
        self._next = 0  # offset of the next top-level box header
        self._stuck = False  # damaged top level: the full analysis will say why
        self._ends: list[int] = []  # faststart: sample end offsets, ascending
        self._times: list[int] = []  # ... and the latest dts (ms) up to each
        self._timescale: dict[int, int] = {}  # track id -> mdhd timescale
        self._default_duration: dict[int, int] = {}  # track id -> trex duration
        self._pending_ms: int | None = None  # end of the last moof, until its mdat is in
        self._mdat_seen = False
        self._moov_first = False  # a moov came before any mdat (faststart)

    def update(self, size: int) -> int | None:
        """``size`` bytes have arrived; returns the media time now available (ms)."""
        while not self._stuck and size - self._next >= 8:
            try:
                header = read_header(self.read_at, self._next, NO_LIMIT)
            except Truncated:
                break  # a 64-bit size not all here yet
            except FormatError:
                self._stuck = True
                break
            if header.type == "mdat" and not self._mdat_seen:
                self._mdat_seen = True
                if self.media_ms is None:
                    self.media_ms = 0  # media has begun; none is playable without moov
                if self._moov_first:
                    try:
                        self._sample_ranges(header.end)
                    except (FormatError, MediaError):
                        pass  # damaged tables: reported by the full analysis at the end
            if header.end > size:
                break
            self._box(header)
            self._next = header.end
        if self._ends:
            i = bisect.bisect_right(self._ends, size)
            if i:
                self._advance(self._times[i - 1])
        return self.media_ms

    def _advance(self, ms: int) -> None:
        self.media_ms = ms if self.media_ms is None else max(self.media_ms, ms)

    def _box(self, header: BoxHeader) -> None:
        try:
            if header.type == "moov":
                self._moov(header)
            elif header.type == "moof":
                self._moof(header)
            elif header.type == "mdat" and self._pending_ms is not None:
                self._advance(self._pending_ms)
                self._pending_ms = None
        except (FormatError, MediaError):
            pass  # damage inside a box: reported by the full analysis at the end

    def _moov(self, moov: BoxHeader) -> None:
        for box in children(self.read_at, moov):
            if box.type == "trak":
                tkhd = find_path(self.read_at, box.payload_offset, box.end, "tkhd", nested=True)
                mdhd = find_path(
                    self.read_at, box.payload_offset, box.end, "mdia/mdhd", nested=True
                )
                if tkhd and mdhd:
                    track = records.Tkhd.parse(payload(self.read_at, tkhd)).track_id
                    scale = records.Mdhd.parse(payload(self.read_at, mdhd)).timescale
                    self._timescale[track] = scale or 1
            elif box.type == "mvex":
                for trex_box in children(self.read_at, box):
                    if trex_box.type == "trex":
                        trex = records.Trex.parse(payload(self.read_at, trex_box))
                        self._default_duration[trex.track_id] = trex.duration
        self._moov_first = not self._mdat_seen  # else everything has arrived already

    def _sample_ranges(self, mdat_end: int) -> None:
        """Faststart: every sample's end offset and time, read from the moov once the
        mdat header tells where the media ends (its payload need not be here yet)."""
        demux = Mp4Demuxer(self.read_at, mdat_end)
        pairs: list[tuple[int, int]] = []
        for meta in demux.tracks():
            table = demux.sample_table(meta.id)
            pairs.extend((table.pos[i] + table.size[i], table.dts[i]) for i in range(len(table)))
        pairs.sort()
        self._ends = [end for end, _ in pairs]
        self._times = list(accumulate((dts for _, dts in pairs), max))

    def _moof(self, moof: BoxHeader) -> None:
        end_ms = None
        for traf in children(self.read_at, moof):
            if traf.type != "traf":
                continue
            kids = children(self.read_at, traf)
            tfhd_box = next((h for h in kids if h.type == "tfhd"), None)
            tfdt_box = next((h for h in kids if h.type == "tfdt"), None)
            if tfhd_box is None or tfdt_box is None:
                continue
            tfhd = records.Tfhd.parse(payload(self.read_at, tfhd_box))
            scale = self._timescale.get(tfhd.track_id)
            if not scale:
                continue
            default = tfhd.duration or self._default_duration.get(tfhd.track_id, 0)
            ticks = records.Tfdt.parse(payload(self.read_at, tfdt_box)).base_media_decode_time
            for run_box in kids:
                if run_box.type == "trun":
                    run = records.Trun.parse(payload(self.read_at, run_box))
                    ticks += sum(run.durations) if run.durations else run.count * default
            ms = ticks * 1000 // scale
            end_ms = ms if end_ms is None else max(end_ms, ms)
        if end_ms is not None:
            self._pending_ms = end_ms
