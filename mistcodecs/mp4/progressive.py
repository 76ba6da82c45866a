"""Progressive (moov-first) MP4 for VoD, laid out before any payload is read.

Given each track's sample index (dts, offset, size, keyframe per sample, in ms), the
muxer decides the interleaving (chunks of about ``chunk_ms`` per track, by time),
writes ftyp + moov whose stco/co64 point into the mdat that follows, and knows the
total file size. An HTTP Range request is then answered by :meth:`ranges`, mapping a
byte range onto header bytes plus slices of sample payloads fetched on demand.
"""

from __future__ import annotations

import bisect
import operator
import struct
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, islice, repeat
from typing import Protocol

from mistcodecs.mp4 import tables
from mistcodecs.mp4.boxes import box
from mistcodecs.mp4.fragment import trak_box
from mistcodecs.mp4.records import EditEntry, Elst, Ftyp, Mvhd
from shm.model import TrackMeta


class SampleIndex(Protocol):
    """What we need per track: parallel sequences (e.g. demux.SampleTable)."""

    dts: Sequence[int]
    offset: Sequence[int]
    size: Sequence[int]
    keyframe: Sequence[int] | bytes | bytearray


@dataclass(frozen=True, slots=True)
class Piece:
    """One contiguous stretch of the output: header (track None) or one sample."""

    track: int | None
    index: int
    start: int  # file offset
    size: int


class Mp4ProgressiveMuxer:
    def __init__(
        self,
        tracks: Sequence[TrackMeta],
        index: Mapping[int, SampleIndex],
        *,
        chunk_ms: int = 500,
        end_ms: Mapping[int, int] | None = None,
    ) -> None:
        """``index`` maps track id to its samples (ms). ``end_ms`` is, per track, where
        its presentation ends (last pts + one frame); by default it is worked out from
        the samples, repeating the last sample duration."""
        self.tracks = [t for t in tracks if len(index[t.id].dts)]
        self.index = index
        self.end_ms = dict(end_ms or {})
        self._tables: dict[int, list[bytes]] = {}  # per track: tables not needing offsets
        self._deltas: dict[int, tuple[array, int]] = {}  # per track: dts steps, last pts
        chunks = self._interleave(chunk_ms)  # [(track, first sample, count)]
        self._chunks_of: dict[int, list[int]] = {t.id: [] for t in self.tracks}
        for i, c in enumerate(chunks):
            self._chunks_of[c[0]].append(i)
        payload_total = sum(sum(index[t.id].size) for t in self.tracks)
        wide = payload_total > 0xFFFFFFFF - (1 << 24)
        mdat_header = 16 if payload_total + 8 > 0xFFFFFFFF else 8
        moov_size = len(self._moov(chunks, [0] * len(chunks), wide))
        ftyp = bytes(Ftyp("isom", 0x200, ["isom", "iso2", "avc1", "mp41"]))
        data_start = len(ftyp) + moov_size + mdat_header
        # Sample positions in file order: the sizes of every chunk joined as raw bytes,
        # then one running sum; pieces are described per chunk, not per sample.
        sizes = {t.id: memoryview(tables.int64s(index[t.id].size)) for t in self.tracks}
        tids, firsts, counts = zip(*chunks, strict=True) if chunks else ((), (), ())
        cuts = map(slice, firsts, map(operator.add, firsts, counts))
        in_order = array("q")
        in_order.frombytes(
            b"".join(map(memoryview.__getitem__, map(sizes.__getitem__, tids), cuts))
        )
        starts = array("q", accumulate(in_order, initial=data_start))
        pos = starts.pop()
        self._chunk_piece = array("q", accumulate(counts, initial=0))
        self._chunk_piece.pop()  # first piece number of every chunk
        self._chunk_track = array("I", tids)
        self._chunk_first = array("q", firsts)  # its first sample index
        chunk_offsets = [starts[i] for i in self._chunk_piece]
        self.size = pos
        moov = self._moov(chunks, chunk_offsets, wide)
        if mdat_header == 16:
            mdat = struct.pack(">I4sQ", 1, b"mdat", pos - data_start + 16)
        else:
            mdat = struct.pack(">I4s", pos - data_start + 8, b"mdat")
        self._header = ftyp + moov + mdat
        assert len(self._header) == data_start
        self._starts = starts

    # ---- layout --------------------------------------------------------------------

    def _interleave(self, chunk_ms: int) -> list[tuple[int, int, int]]:
        """Chunks on a ``chunk_ms`` grid from the earliest dts: every sample goes to the
        slot ``(dts - start) // chunk_ms``; within a slot, tracks keep their order. Empty
        slots (long gaps) simply produce nothing."""
        if not self.tracks:
            return []
        start = min(self.index[t.id].dts[0] for t in self.tracks)
        keyed: list[tuple[int, int, int, int, int]] = []  # (slot, order, track, first, count)
        for order, t in enumerate(self.tracks):
            dts = self.index[t.id].dts
            n = len(dts)
            slots = array("q", map(operator.floordiv, map(operator.sub, dts, repeat(start, n)),
                                   repeat(chunk_ms, n)))  # fmt: skip
            changes = compress(range(1, n), map(operator.ne, islice(slots, 1, None), slots))
            firsts = [0, *changes]
            counts = map(operator.sub, [*islice(firsts, 1, None), n], firsts)
            keyed.extend(
                zip(map(slots.__getitem__, firsts), repeat(order), repeat(t.id), firsts, counts)
            )
        keyed.sort()
        return [(tid, first, count) for _, _, tid, first, count in keyed]

    def _moov(self, chunks: list[tuple[int, int, int]], offsets: list[int], wide: bool) -> bytes:
        traks = []
        movie_duration = 0
        for track in self.tracks:
            idx = self.index[track.id]
            n = len(idx.dts)
            dts = idx.dts
            if track.id not in self._deltas:
                steps = array("q", map(operator.sub, islice(dts, 1, None), dts))
                self._deltas[track.id] = steps, max(map(operator.add, dts, idx.offset))
            steps, last_pts = self._deltas[track.id]
            deltas = array("q", steps)  # a copy: the last duration is appended below
            end = self.end_ms.get(track.id)
            if deltas:
                last = deltas[-1]  # the usual guess; the edit list says where it ends
            else:
                last = end - last_pts if end is not None and end > last_pts else 40
            deltas.append(last)
            duration = dts[-1] + last - dts[0]
            mine = self._chunks_of[track.id]
            if track.id not in self._tables:  # the same for the sizing pass and the real one
                self._tables[track.id] = [
                    tables.build_stts(deltas),
                    tables.build_ctts(idx.offset) if any(idx.offset) else b"",
                    tables.build_stss(tables.keyframe_numbers(idx.keyframe))
                    if track.type == "video" and not all(idx.keyframe)
                    else b"",
                    tables.build_stsc([chunks[i][2] for i in mine]),
                    tables.build_stsz(idx.size),
                ]
            parts = [
                *self._tables[track.id],
                tables.build_chunk_offsets([offsets[i] for i in mine], wide),
            ]
            first_pts = min(dts[i] + idx.offset[i] for i in range(min(n, 16)))
            present = max(first_pts, 0)
            media_time = present - dts[0]
            shown_until = end if end is not None and end > present else last_pts + last
            edits = []
            if present > 0:
                edits.append(EditEntry(present, -1))
            edits.append(EditEntry(max(0, shown_until - present), media_time))
            edts = bytes(Elst(edits)) if present or media_time or end is not None else b""
            movie_duration = max(movie_duration, shown_until)
            traks.append(trak_box(track, 1000, duration, b"".join(parts), edts))
        mvhd = Mvhd(1000, max(movie_duration, 0), max((t.id for t in self.tracks), default=0) + 1)
        return box("moov", bytes(mvhd), *traks)

    # ---- output --------------------------------------------------------------------

    def header(self) -> bytes:
        """ftyp + moov + mdat header: the first ``len(header())`` bytes of the file."""
        return self._header

    def locate(self, offset: int) -> tuple[int, int]:
        """(piece number, offset inside it) for a file offset; piece -1 is the header."""
        if not 0 <= offset < self.size:
            raise IndexError(f"offset {offset} outside the {self.size}-byte file")
        if offset < len(self._header):
            return -1, offset
        piece = bisect.bisect_right(self._starts, offset) - 1
        return piece, offset - self._starts[piece]

    def piece(self, number: int) -> Piece:
        if number < 0:
            return Piece(None, 0, 0, len(self._header))
        start = self._starts[number]
        end = self._starts[number + 1] if number + 1 < len(self._starts) else self.size
        chunk = bisect.bisect_right(self._chunk_piece, number) - 1
        sample = self._chunk_first[chunk] + number - self._chunk_piece[chunk]
        return Piece(self._chunk_track[chunk], sample, start, end - start)

    def ranges(self, start: int, stop: int) -> Iterator[tuple[Piece, int, int]]:
        """(piece, from, to) slices that make up bytes ``start``..``stop`` (exclusive)."""
        stop = min(stop, self.size)
        if start >= stop:
            return
        number, inner = self.locate(start)
        pos = start
        if number < 0:
            take = min(len(self._header) - inner, stop - pos)
            yield self.piece(-1), inner, inner + take
            pos += take
            number, inner = 0, 0
        # Walk the samples chunk by chunk instead of a bisect per piece.
        starts, firsts, total = self._starts, self._chunk_piece, len(self._starts)
        chunk = bisect.bisect_right(firsts, number) - 1
        track, base = self._chunk_track[chunk], self._chunk_first[chunk] - firsts[chunk]
        next_chunk = firsts[chunk + 1] if chunk + 1 < len(firsts) else total
        while pos < stop:
            if number >= next_chunk:
                chunk += 1
                track, base = self._chunk_track[chunk], self._chunk_first[chunk] - firsts[chunk]
                next_chunk = firsts[chunk + 1] if chunk + 1 < len(firsts) else total
            at = starts[number]
            size = (starts[number + 1] if number + 1 < total else self.size) - at
            take = min(size - inner, stop - pos)
            if take > 0:
                yield Piece(track, base + number, at, size), inner, inner + take
            pos += take
            number += 1
            inner = 0

    def read_range(
        self, start: int, stop: int, fetch: Callable[[int, int], bytes]
    ) -> Iterator[bytes]:
        """The bytes of ``start``..``stop``; ``fetch(track, sample_index)`` gives a payload."""
        for piece, a, b in self.ranges(start, stop):
            if piece.track is None:
                yield self._header[a:b]
            else:
                data = fetch(piece.track, piece.index)
                if len(data) != piece.size:
                    raise ValueError(
                        f"track {piece.track} sample {piece.index}: {len(data)} bytes, index says {piece.size}"
                    )
                yield data[a:b]

    def samples_in_order(self) -> Iterator[tuple[int, int]]:
        """(track, sample index) in file order."""
        ends = [*islice(self._chunk_piece, 1, None), len(self._starts)]
        for tid, first, a, b in zip(
            self._chunk_track, self._chunk_first, self._chunk_piece, ends, strict=True
        ):
            for i in range(first, first + b - a):
                yield tid, i
