"""Fragmented MP4 / CMAF muxer (sans-IO).

``init_segment()`` is ftyp + moov (with mvex, empty sample tables); every call to
``fragment()`` returns one moof + mdat with a traf per track (tfdt, and a trun with
per-sample durations, sizes, flags and signed composition offsets). The result is
plain bytes built once per fragment: send the same object to every viewer.

Times come in as integer ms (the model); each track is written in its own timescale
(1000 by default, so ms are exact). The duration of a track's last sample is only
known from what follows: pass ``end`` (ms) or the next fragment's first dts; else the
previous sample duration is repeated.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Mapping, Sequence

from mistcodecs.mp4.boxes import box, full_box
from mistcodecs.mp4.records import (
    SAMPLE_FLAGS_NON_SYNC,
    SAMPLE_FLAGS_SYNC,
    Ftyp,
    Hdlr,
    Mdhd,
    Mfhd,
    Mvhd,
    Tfdt,
    Tfhd,
    Tkhd,
    Trex,
    Trun,
)
from mistcodecs.mp4.sampleentry import HANDLERS, write_sample_entry
from shm.model import Packet, TrackMeta

CMAF_BRANDS = ["iso6", "cmfc", "mp41", "dash"]


def media_header(track: TrackMeta) -> bytes:
    if track.type == "video":
        return full_box("vmhd", 0, 1, bytes(8))
    if track.type == "audio":
        return full_box("smhd", 0, 0, bytes(4))
    return full_box("nmhd", 0, 0)


def dinf() -> bytes:
    return box("dinf", full_box("dref", 0, 0, struct.pack(">I", 1), full_box("url ", 0, 1)))


def trak_box(
    track: TrackMeta, timescale: int, duration: int, stbl_tables: bytes, edts: bytes = b""
) -> bytes:
    """One trak; ``duration`` in ``timescale`` units, the tables are stts..stco."""
    handler, name = HANDLERS.get(track.type, HANDLERS["meta"])
    movie_duration = duration * 1000 // timescale
    tkhd = Tkhd(
        track.id,
        movie_duration,
        width=track.width if track.type == "video" else 0,
        height=track.height if track.type == "video" else 0,
        volume=0x100 if track.type == "audio" else 0,
    )
    stsd = full_box("stsd", 0, 0, struct.pack(">I", 1), write_sample_entry(track))
    stbl = box("stbl", stsd, stbl_tables)
    minf = box("minf", media_header(track), dinf(), stbl)
    mdia = box(
        "mdia",
        bytes(Mdhd(timescale, duration, track.lang or "und")),
        bytes(Hdlr(handler, name)),
        minf,
    )
    return box("trak", bytes(tkhd), edts, mdia)


EMPTY_TABLES = (
    full_box("stts", 0, 0, bytes(4))
    + full_box("stsc", 0, 0, bytes(4))
    + full_box("stsz", 0, 0, bytes(8))
    + full_box("stco", 0, 0, bytes(4))
)


class Mp4FragmentMuxer:
    """CMAF-style fragmented MP4 for a fixed set of tracks."""

    def __init__(
        self,
        tracks: Sequence[TrackMeta],
        *,
        timescale: int | Mapping[int, int] = 1000,
        shift_ms: int | None = None,
    ) -> None:
        """``shift_ms`` is added to every time (tfdt cannot be negative); ``None`` picks
        it at the first fragment: enough to lift a negative first dts (the B-frame and
        AAC-priming offsets of edit-listed files) to 0, else 0."""
        self.tracks = list(tracks)
        self.shift_ms: int | None = shift_ms
        if isinstance(timescale, int):
            self.timescales = {t.id: timescale for t in self.tracks}
        else:
            self.timescales = {t.id: timescale.get(t.id, 1000) for t in self.tracks}
        self._last_duration: dict[int, int] = {}

    def _ts(self, track_id: int, ms: int) -> int:
        ms += self.shift_ms or 0
        scale = self.timescales[track_id]
        return ms if scale == 1000 else ms * scale // 1000

    def init_segment(self) -> bytes:
        ftyp = Ftyp("iso6", 0, CMAF_BRANDS)
        mvhd = Mvhd(1000, 0, max((t.id for t in self.tracks), default=0) + 1)
        traks = b"".join(trak_box(t, self.timescales[t.id], 0, EMPTY_TABLES) for t in self.tracks)
        mvex = box("mvex", *(bytes(Trex(t.id)) for t in self.tracks))
        return bytes(ftyp) + box("moov", bytes(mvhd), traks, mvex)

    def fragment(
        self,
        packets_by_track: Mapping[int, Sequence[Packet]],
        sequence_number: int,
        *,
        end: int | Mapping[int, int] | None = None,
    ) -> bytes:
        """moof + mdat for these packets (decode order per track). ``end`` is the time
        (ms) right after each track's last sample, globally or per track."""
        order = [t.id for t in self.tracks if packets_by_track.get(t.id)]
        if self.shift_ms is None and order:
            self.shift_ms = max(0, -min(packets_by_track[tid][0].dts for tid in order))
        runs: list[tuple[Tfhd, Tfdt, Trun]] = []
        payloads: list[bytes | memoryview] = []
        for tid in order:
            packets = packets_by_track[tid]
            track_end = end.get(tid) if isinstance(end, Mapping) else end
            runs.append(self._traf_parts(tid, packets, track_end))
            payloads.extend(p.data for p in packets)

        def build(offsets: list[int]) -> bytes:
            trafs = []
            for (tfhd, tfdt, trun), off in zip(runs, offsets, strict=True):
                trun.data_offset = off
                trafs.append(box("traf", bytes(tfhd), bytes(tfdt), bytes(trun)))
            return box("moof", bytes(Mfhd(sequence_number)), *trafs)

        moof_size = len(build([0] * len(runs)))
        offsets = []
        pos = moof_size + 8
        for tid in order:
            offsets.append(pos)
            pos += sum(len(p.data) for p in packets_by_track[tid])
        moof = build(offsets)
        mdat_size = 8 + sum(len(p) for p in payloads)
        if mdat_size > 0xFFFFFFFF:
            raise ValueError("fragment too large for a 32-bit mdat")
        return moof + struct.pack(">I", mdat_size) + b"mdat" + b"".join(payloads)

    def _traf_parts(
        self, tid: int, packets: Sequence[Packet], end: int | None
    ) -> tuple[Tfhd, Tfdt, Trun]:
        decode = [self._ts(tid, p.dts) for p in packets]
        if decode[0] < 0:
            raise ValueError(
                f"track {tid}: negative decode time {packets[0].dts} ms; shift the timeline first"
            )
        durations = [b - a for a, b in itertools.pairwise(decode)]
        if end is not None and self._ts(tid, end) > decode[-1]:
            last = self._ts(tid, end) - decode[-1]
        elif durations:
            last = durations[-1]
        else:
            last = self._last_duration.get(tid, self._ts(tid, 40))
        durations.append(last)
        self._last_duration[tid] = last
        cto = [self._ts(tid, p.dts + p.offset) - d for p, d in zip(packets, decode, strict=True)]
        video = any(t.id == tid and t.type == "video" for t in self.tracks)
        flags = [
            SAMPLE_FLAGS_SYNC if (p.keyframe or not video) else SAMPLE_FLAGS_NON_SYNC
            for p in packets
        ]
        trun = Trun(
            data_offset=0,
            durations=durations,
            sizes=[len(p.data) for p in packets],
            flags=flags,
            composition_offsets=cto if any(cto) else None,
            count=len(packets),
        )
        return Tfhd(tid), Tfdt(decode[0]), trun

    def segment(
        self,
        packets_by_track: Mapping[int, Sequence[Packet]],
        sequence_number: int,
        *,
        end: int | Mapping[int, int] | None = None,
        part_ms: int | None = None,
    ) -> bytes:
        """styp + fragment(s): a CMAF segment. With ``part_ms`` it holds one fragment per
        part (see :meth:`parts`), numbered from ``sequence_number``."""
        styp = bytes(Ftyp("msdh", 0, ["msdh", "msix", "cmfs", "cmfc", "iso6"], kind="styp"))
        if not part_ms:
            return styp + self.fragment(packets_by_track, sequence_number, end=end)
        return styp + b"".join(self.parts(packets_by_track, sequence_number, part_ms, end=end))

    def parts(
        self,
        packets_by_track: Mapping[int, Sequence[Packet]],
        first_sequence_number: int,
        part_ms: int,
        *,
        end: int | Mapping[int, int] | None = None,
    ) -> list[bytes]:
        """Cut the packets into LL-HLS parts of about ``part_ms``, each a moof + mdat.
        Each part's samples end where the next part's start, so durations are exact."""
        start = min(p.dts for ps in packets_by_track.values() for p in ps)
        groups: list[dict[int, list[Packet]]] = []
        for tid, packets in packets_by_track.items():
            for p in packets:
                index = max(0, (p.dts - start) // part_ms)
                while len(groups) <= index:
                    groups.append({})
                groups[index].setdefault(tid, []).append(p)
        groups = [g for g in groups if g]
        out = []
        for n, group in enumerate(groups):
            ends: dict[int, int] = {}
            for tid in group:
                later = next((g[tid][0].dts for g in groups[n + 1 :] if tid in g), None)
                if later is not None:
                    ends[tid] = later
                elif isinstance(end, Mapping) and tid in end:
                    ends[tid] = end[tid]
                elif isinstance(end, int):
                    ends[tid] = end
            out.append(self.fragment(group, first_sequence_number + n, end=ends))
        return out


class FragmentStream:
    """Progressive live fMP4: ``header()`` once, then ``packet(p)`` returns the bytes of a
    finished fragment (or b"") and ``end()`` flushes. A fragment is cut at each keyframe
    of the first video track, or every ``fragment_ms`` when there is no video."""

    def __init__(self, tracks: Sequence[TrackMeta], *, fragment_ms: int = 1000) -> None:
        self.muxer = Mp4FragmentMuxer(tracks)
        self.fragment_ms = fragment_ms
        self.video = next((t.id for t in tracks if t.type == "video"), None)
        self.sequence = 1
        self._pending: dict[int, list[Packet]] = {}
        self._start: int | None = None

    def header(self) -> bytes:
        return self.muxer.init_segment()

    def packet(self, packet: Packet) -> bytes:
        cut = False
        if self._pending:
            if self.video is not None:
                cut = (
                    packet.track == self.video
                    and packet.keyframe
                    and bool(self._pending.get(self.video))
                )
            else:
                cut = self._start is not None and packet.dts - self._start >= self.fragment_ms
        out = self._flush(packet.dts) if cut else b""
        if self._start is None:
            self._start = packet.dts
        self._pending.setdefault(packet.track, []).append(packet)
        return out

    def _flush(self, cut_ms: int | None) -> bytes:
        """Emit everything before ``cut_ms`` (all when None); later audio waits."""
        keep: dict[int, list[Packet]] = {}
        ready: dict[int, list[Packet]] = {}
        if cut_ms is None:
            ready = self._pending
        else:
            for tid, packets in self._pending.items():
                before = [p for p in packets if p.dts < cut_ms]
                after = [p for p in packets if p.dts >= cut_ms]
                if before:
                    ready[tid] = before
                if after:
                    keep[tid] = after
        if not ready:
            return b""
        ends = {tid: keep[tid][0].dts for tid in ready if tid in keep}
        if cut_ms is not None and self.video in ready:
            ends[self.video] = cut_ms
        data = self.muxer.fragment(ready, self.sequence, end=ends)
        self.sequence += 1
        self._pending = keep
        self._start = min((ps[0].dts for ps in keep.values()), default=None)
        return data

    def end(self) -> bytes:
        return self._flush(None)
