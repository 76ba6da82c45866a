"""Random-access MP4/MOV demuxer: tracks, per-track sample index, packets.

The whole file is walked once at the top level (moov anywhere, any number of
moof/mdat pairs). Per-track sample tables are built lazily as parallel arrays
(:class:`SampleTable`); times are converted to milliseconds from the absolute
media time of every sample, so there is no cumulative rounding drift. Edit lists
are applied like FFmpeg does: an initial empty edit delays the track, the first
real edit's ``media_time`` is subtracted (the usual B-frame / AAC-priming shift).
"""

from __future__ import annotations

import heapq
import operator
import os
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, BinaryIO, NamedTuple

from mistcodecs.errors import FormatError, Truncated
from mistcodecs.mp4 import tables
from mistcodecs.mp4.boxes import (
    BoxError,
    BoxHeader,
    ReadAt,
    children,
    file_reader,
    iter_boxes,
    payload,
    read_header,
)
from mistcodecs.mp4.records import (
    TFHD_BASE_OFFSET,
    Elst,
    Ftyp,
    Hdlr,
    Mdhd,
    Mvhd,
    Tfdt,
    Tfhd,
    Tkhd,
    Trex,
    Trun,
    is_sync,
)
from mistcodecs.mp4.sampleentry import SampleEntry
from mistcodecs.mp4.text import subtitle_payload, tx3g_text, tx3g_to_subtitle
from mistcodecs.wav import swap_endian
from shm.model import Packet, TrackMeta

RAW_AUDIO = frozenset({"PCM", "ALAW", "ULAW"})
RAW_AUDIO_FRAMES = 1024  # frames per packet when grouping raw audio
HANDLER_TYPES = {"vide": "video", "soun": "audio", "text": "meta", "sbtl": "meta", "subt": "meta"}


TEXT_FORMATS = frozenset({"tx3g"})
TEXT_MAX = 1 << 16  # a tx3g text length is 16 bits; style boxes after it are not read


class TextCues(NamedTuple):
    """Per kept sample of a timed-text track (see :mod:`mistcodecs.mp4.text`)."""

    duration: array  # ms, until the next sample (an empty one ends a cue early)
    payload_size: array  # bytes of the model's subtitle payload


class Sample(NamedTuple):
    dts: int  # ms
    offset: int  # ms, pts - dts
    size: int
    keyframe: bool
    pos: int  # file offset of the payload


@dataclass
class SampleTable:
    """One track's samples as parallel columns (decode order)."""

    track_id: int
    dts: array = field(default_factory=lambda: array("q"))
    offset: array = field(default_factory=lambda: array("q"))
    size: array = field(default_factory=lambda: array("q"))
    keyframe: bytearray = field(default_factory=bytearray)
    pos: array = field(default_factory=lambda: array("q"))
    duration_ms: int = 0

    def __len__(self) -> int:
        return len(self.dts)

    def __getitem__(self, i: int) -> Sample:
        return Sample(
            self.dts[i], self.offset[i], self.size[i], bool(self.keyframe[i]), self.pos[i]
        )

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self.dts)))

    def to_record(self) -> dict[str, Any]:
        """Compact msgpack-friendly form for an index cache (native byte order)."""
        return {
            "track_id": self.track_id,
            "dts": self.dts.tobytes(),
            "offset": self.offset.tobytes(),
            "size": self.size.tobytes(),
            "keyframe": bytes(self.keyframe),
            "pos": self.pos.tobytes(),
            "duration_ms": self.duration_ms,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> SampleTable:
        columns = {}
        try:
            for name in ("dts", "offset", "size", "pos"):
                columns[name] = array("q")
                columns[name].frombytes(rec[name])
            table = cls(
                int(rec["track_id"]),
                keyframe=bytearray(rec["keyframe"]),
                duration_ms=int(rec["duration_ms"]),
                **columns,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"bad cached sample table: {exc}") from exc
        if (
            len(
                {
                    len(table.dts),
                    len(table.offset),
                    len(table.size),
                    len(table.pos),
                    len(table.keyframe),
                }
            )
            != 1
        ):
            raise FormatError("bad cached sample table: columns differ in length")
        return table


@dataclass
class _Trak:
    meta: TrackMeta
    header: BoxHeader
    timescale: int
    entry: SampleEntry
    stbl: dict[str, bytes]
    shift: int  # media-timescale units added to every time (edit list)
    # fragments: absolute decode time, cto, size, flags, pos
    frag_dts: list[int] = field(default_factory=list)
    frag_cto: list[int] = field(default_factory=list)
    frag_size: list[int] = field(default_factory=list)
    frag_key: list[bool] = field(default_factory=list)
    frag_pos: list[int] = field(default_factory=list)
    trex: Trex | None = None


class Mp4Demuxer:
    """Index an MP4 through ``read_at``. ``warnings`` collects recoverable damage."""

    def __init__(self, read_at: ReadAt, size: int) -> None:
        self.read_at = read_at
        self.size = size
        self.warnings: list[str] = []
        self.brands: list[str] = []
        self.mdats: list[tuple[int, int]] = []  # (payload start, end)
        self.fragmented = False
        self._traks: dict[int, _Trak] = {}
        self._tables: dict[int, SampleTable] = {}
        self.movie_timescale = 1000
        self._last_dur: dict[int, int] = {}  # last sample duration per track (fragments)
        self._cues: dict[int, TextCues] = {}  # timed-text tracks, by track id
        moov: BoxHeader | None = None
        moofs: list[BoxHeader] = []
        self._have_moov = False
        for header in self._top_level():
            if header.type == "moov":
                moov = header
                self._have_moov = True
            elif header.type == "moof":
                moofs.append(header)
            elif header.type == "mdat":
                self.mdats.append((header.payload_offset, header.end))
            elif header.type == "ftyp":
                ftyp = Ftyp.parse(payload(read_at, header, 1 << 16))
                self.brands = [ftyp.major, *ftyp.compatible]
        if moov is None:
            raise FormatError("no moov box: not a playable MP4")
        self._parse_moov(moov)
        if not self._traks:
            raise FormatError(f"moov at {moov.offset} has no audio, video or text track")
        for moof in moofs:
            self._parse_moof(moof)
        self.fragmented = bool(moofs)

    # ---- structure ------------------------------------------------------------------

    def _top_level(self) -> Iterator[BoxHeader]:
        pos = 0
        while self.size - pos >= 8:
            try:
                header = self._top_header(pos)
            except FormatError as exc:
                if not self._have_moov:
                    raise
                # junk after the movie (a damaged tail, bytes appended by a tool):
                # everything needed to play has been read already
                self.warnings.append(f"{self.size - pos} bytes of junk at {pos} ignored: {exc}")
                return
            yield header
            pos = header.end

    def _top_header(self, pos: int) -> BoxHeader:
        try:
            header = read_header(self.read_at, pos, self.size)
        except Truncated:
            header = read_header(self.read_at, pos, 1 << 62)  # see what it claimed to be
            if header.type != "mdat":
                raise
            self.warnings.append(
                f"file truncated: mdat at {pos} claims {header.size} bytes, {self.size - pos} present"
            )
            header = BoxHeader("mdat", pos, self.size - pos, header.header_size)
        return header

    def _parse_moov(self, moov: BoxHeader) -> None:
        kids = {h.type: h for h in children(self.read_at, moov)}
        if "mvhd" in kids:
            self.movie_timescale = Mvhd.parse(payload(self.read_at, kids["mvhd"])).timescale or 1000
        trexes: dict[int, Trex] = {}
        if "mvex" in kids:
            for h in children(self.read_at, kids["mvex"]):
                if h.type == "trex":
                    trex = Trex.parse(payload(self.read_at, h))
                    trexes[trex.track_id] = trex
        for h in iter_boxes(self.read_at, moov.payload_offset, moov.end, nested=True):
            if h.type == "trak":
                try:
                    trak = self._parse_trak(h)
                except FormatError as exc:
                    raise FormatError(f"trak at {h.offset}: {exc}") from exc
                if trak is None:
                    continue
                trak.trex = trexes.get(trak.meta.id)
                self._traks[trak.meta.id] = trak

    def _find(self, parent: BoxHeader, path: str) -> BoxHeader | None:
        node: BoxHeader | None = parent
        for name in path.split("/"):
            assert node is not None
            node = next((h for h in children(self.read_at, node) if h.type == name), None)
            if node is None:
                return None
        return node

    def _parse_trak(self, trak: BoxHeader) -> _Trak | None:
        tkhd_h = self._find(trak, "tkhd")
        mdhd_h = self._find(trak, "mdia/mdhd")
        hdlr_h = self._find(trak, "mdia/hdlr")
        stbl_h = self._find(trak, "mdia/minf/stbl")
        if not (tkhd_h and mdhd_h and hdlr_h and stbl_h):
            raise BoxError("trak lacks tkhd, mdhd, hdlr or stbl")
        tkhd = Tkhd.parse(payload(self.read_at, tkhd_h))
        mdhd = Mdhd.parse(payload(self.read_at, mdhd_h))
        kind = HANDLER_TYPES.get(Hdlr.parse(payload(self.read_at, hdlr_h)).handler)
        if kind is None:
            return None  # hint/timecode/etc tracks carry no media for us
        stbl = {h.type: payload(self.read_at, h) for h in children(self.read_at, stbl_h)}
        if "stsd" not in stbl:
            raise BoxError("stbl lacks stsd")
        entry = SampleEntry.parse_stsd(stbl["stsd"])
        meta = TrackMeta(
            id=tkhd.track_id, type=kind, codec=entry.codec, init=entry.init, lang=mdhd.language
        )
        if kind == "video":
            meta.width = entry.width or round(tkhd.width)
            meta.height = entry.height or round(tkhd.height)
        elif kind == "audio":
            meta.rate = entry.rate or mdhd.timescale
            meta.channels = entry.channels
            meta.size = entry.sample_size
        shift = 0
        elst_h = self._find(trak, "edts/elst")
        if elst_h is not None:
            shift = self._edit_shift(Elst.parse(payload(self.read_at, elst_h)), mdhd.timescale)
        return _Trak(meta, trak, mdhd.timescale, entry, stbl, shift)

    def _edit_shift(self, elst: Elst, timescale: int) -> int:
        shift = 0
        entries = list(elst.entries)
        if entries and entries[0].media_time == -1:
            shift += entries[0].segment_duration * timescale // self.movie_timescale
            entries = entries[1:]
        if entries and entries[0].media_time > 0:
            shift -= entries[0].media_time
        return shift

    def _parse_moof(self, moof: BoxHeader) -> None:
        for traf in children(self.read_at, moof):
            if traf.type != "traf":
                continue
            kids = children(self.read_at, traf)
            tfhd_h = next((h for h in kids if h.type == "tfhd"), None)
            if tfhd_h is None:
                raise BoxError(f"traf at {traf.offset} without tfhd")
            tfhd = Tfhd.parse(payload(self.read_at, tfhd_h))
            trak = self._traks.get(tfhd.track_id)
            if trak is None:
                self.warnings.append(f"traf at {traf.offset} for unknown track {tfhd.track_id}")
                continue
            trex = trak.trex or Trex(tfhd.track_id)
            d_dur = tfhd.duration if tfhd.duration is not None else trex.duration
            d_size = tfhd.size if tfhd.size is not None else trex.size
            d_flags = tfhd.sample_flags if tfhd.sample_flags is not None else trex.flags
            if tfhd.flags & TFHD_BASE_OFFSET and tfhd.base_data_offset is not None:
                base = tfhd.base_data_offset
            else:  # default-base-is-moof, or (as every real writer means it) the moof start
                base = moof.offset
            time = trak.frag_dts[-1] + self._last_dur.get(tfhd.track_id, 0) if trak.frag_dts else 0
            pos = base
            for h in kids:
                if h.type == "tfdt":
                    time = Tfdt.parse(payload(self.read_at, h)).base_media_decode_time
                elif h.type == "trun":
                    run = Trun.parse(payload(self.read_at, h))
                    if run.data_offset is not None:
                        pos = base + run.data_offset
                    for i in range(run.count):
                        size = run.sizes[i] if run.sizes is not None else d_size
                        dur = run.durations[i] if run.durations is not None else d_dur
                        if run.flags is not None:
                            flags = run.flags[i]
                        elif i == 0 and run.first_sample_flags is not None:
                            flags = run.first_sample_flags
                        else:
                            flags = d_flags
                        cto = (
                            run.composition_offsets[i] if run.composition_offsets is not None else 0
                        )
                        trak.frag_dts.append(time)
                        trak.frag_cto.append(cto)
                        trak.frag_size.append(size)
                        trak.frag_key.append(is_sync(flags) if trak.meta.type == "video" else True)
                        trak.frag_pos.append(pos)
                        time += dur
                        pos += size
                        self._last_dur[tfhd.track_id] = dur

    # ---- public ---------------------------------------------------------------------

    def tracks(self) -> list[TrackMeta]:
        """Track descriptions, with timing/bitrate filled in from the sample index."""
        out = []
        for tid, trak in self._traks.items():
            table = self.sample_table(tid)
            meta = trak.meta
            if len(table):
                meta.firstms = table.dts[0]
                meta.lastms = table.dts[-1]
                if table.duration_ms > 0:
                    meta.bps = sum(table.size) * 1000 // table.duration_ms
                    if meta.type == "video":
                        meta.fpks = len(table) * 1_000_000 // table.duration_ms
            if meta.codec == "MP3" and len(table):  # entry channel counts are unreliable
                head = self.read_at(table.pos[0], 4)
                if len(head) == 4 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
                    meta.channels = 1 if head[3] >> 6 == 3 else 2
            out.append(meta)
        return out

    def track_timescale(self, track_id: int) -> int:
        return self._traks[track_id].timescale

    def pcm_little_endian(self, track_id: int) -> bool:
        """Whether the track's raw samples are stored little-endian ('sowt', lpcm or
        pcmC flags): :meth:`read_sample` swaps them, a reader of raw bytes must."""
        trak = self._traks.get(track_id)
        if trak is None:
            raise FormatError(f"no track {track_id}")
        return trak.entry.little_endian

    def samples(self, track_id: int) -> list[Sample]:
        return list(self.sample_table(track_id))

    def sample_table(self, track_id: int) -> SampleTable:
        table = self._tables.get(track_id)
        if table is None:
            table = self._build_table(self._traks[track_id])
            self._tables[track_id] = table
        return table

    def _build_table(self, trak: _Trak) -> SampleTable:
        stbl = trak.stbl
        tid = trak.meta.id
        if "stsz" in stbl:
            sizes = tables.parse_stsz(stbl["stsz"], self.size)
        elif "stz2" in stbl:
            sizes = tables.parse_stz2(stbl["stz2"])
        else:
            sizes = array("I")
        n = len(sizes)
        counts, deltas = (
            tables.parse_pairs(stbl["stts"], "stts") if "stts" in stbl else (array("I"), array("I"))
        )
        if trak.meta.codec in RAW_AUDIO and n and len(deltas) == 1 and not trak.frag_dts:
            grouped = self._raw_audio(trak, sizes, int(deltas[0]))
            if grouped is not None:
                return grouped
        stts_total = sum(counts)
        if stts_total != n:
            self.warnings.append(f"track {tid}: stts covers {stts_total} samples, stsz has {n}")
            n = min(n, stts_total)
        sample_deltas = tables.expand_runs(counts, deltas, n)
        dts = array("q", accumulate(sample_deltas, initial=0))
        end_time = dts[-1] if n else 0
        del dts[n:]
        if "ctts" in stbl:
            c_counts, c_values = tables.parse_pairs(stbl["ctts"], "ctts")
            cto = tables.expand_runs(c_counts, c_values, n)
            if len(cto) < n:
                self.warnings.append(f"track {tid}: ctts covers {len(cto)} of {n} samples")
                cto.extend(array("q", [0]) * (n - len(cto)))
        else:
            cto = array("q", [0]) * n
        offsets_key = "co64" if "co64" in stbl else "stco"
        if n:
            if offsets_key not in stbl or "stsc" not in stbl:
                raise BoxError(f"track {tid}: stbl lacks stsc or stco/co64")
            first, per_chunk, _ = tables.parse_stsc(stbl["stsc"])
            chunk_offsets = tables.parse_chunk_offsets(stbl[offsets_key], offsets_key)
            pos = tables.chunk_positions(first, per_chunk, chunk_offsets, sizes[:n])
            if len(pos) < n:
                self.warnings.append(f"track {tid}: chunks hold only {len(pos)} of {n} samples")
                n = len(pos)
        else:
            pos = array("q")
        if "stss" in stbl and trak.meta.type == "video":
            key = bytearray(n)
            for number in tables.parse_stss(stbl["stss"]):
                if 0 < number <= n:
                    key[number - 1] = 1
        else:
            key = bytearray(b"\x01") * n
        all_dts = list(dts[:n])
        all_cto = list(cto[:n])
        all_size = list(sizes[:n])
        all_pos = list(pos[:n])
        if trak.frag_dts:
            all_dts += trak.frag_dts
            all_cto += trak.frag_cto
            all_size += trak.frag_size
            all_pos += trak.frag_pos
            key += bytes(trak.frag_key)
            end_time = trak.frag_dts[-1] + self._last_dur.get(tid, 0)
        # drop samples whose payload lies beyond the end of the file
        limit = len(all_pos)
        while limit and all_pos[limit - 1] + all_size[limit - 1] > self.size:
            limit -= 1
        if limit < len(all_pos):
            self.warnings.append(
                f"track {tid}: {len(all_pos) - limit} sample(s) lie past the end of the file"
            )
            del all_dts[limit:], all_cto[limit:], all_size[limit:], all_pos[limit:], key[limit:]
        ts = trak.timescale
        half = ts // 2
        shift = trak.shift
        dts_ms = tables.to_ms(all_dts, ts, shift)
        if any(all_cto):
            pts_ms = tables.to_ms(list(map(operator.add, all_dts, all_cto)), ts, shift)
            off_ms = array("q", map(operator.sub, pts_ms, dts_ms))
        else:
            off_ms = array("q", bytes(8 * len(dts_ms)))
        duration_ms = ((end_time + shift) * 1000 + half) // ts - dts_ms[0] if dts_ms else 0
        table = SampleTable(
            tid, dts_ms, off_ms, array("q", all_size), key, array("q", all_pos), duration_ms
        )
        if trak.entry.format in TEXT_FORMATS:
            table = self._text_cues(table)
        return table

    def _text_cues(self, table: SampleTable) -> SampleTable:
        """Timed text: keep the samples with text (the empty ones only end the cue
        before them) and remember each cue's duration and model payload size."""
        n = len(table)
        if not n:
            self._cues[table.track_id] = TextCues(array("q"), array("q"))
            return table
        end = table.dts[0] + table.duration_ms
        durations = array("q", map(operator.sub, [*table.dts[1:], end], table.dts))
        keep: list[int] = []
        cues = TextCues(array("q"), array("q"))
        for i in range(n):
            text = tx3g_text(self.read_at(table.pos[i], min(table.size[i], TEXT_MAX)))
            if text:
                keep.append(i)
                cues.duration.append(durations[i])
                cues.payload_size.append(len(subtitle_payload(0, text)))
        self._cues[table.track_id] = cues
        t = table
        return SampleTable(
            t.track_id,
            array("q", [t.dts[i] for i in keep]),
            array("q", [t.offset[i] for i in keep]),
            array("q", [t.size[i] for i in keep]),
            bytearray(t.keyframe[i] for i in keep),
            array("q", [t.pos[i] for i in keep]),
            t.duration_ms,
        )

    def text_cues(self, track_id: int) -> TextCues:
        """Per sample of a timed-text track: cue duration (ms) and model payload size."""
        self.sample_table(track_id)
        return self._cues[track_id]

    def _raw_audio(self, trak: _Trak, sizes: array, delta: int) -> SampleTable | None:
        """PCM/G.711 store one sample per audio frame: group each chunk into packets of
        up to RAW_AUDIO_FRAMES frames instead of indexing every 2-byte frame."""
        stbl = trak.stbl
        if sizes[0] != sizes[-1] or sizes[0] > 64 or "stsc" not in stbl:
            return None  # not one frame per sample: index the samples as they are
        if not ("stco" in stbl or "co64" in stbl):
            return None
        frame = sizes[0]
        if frame == 1 and trak.meta.size and trak.meta.channels:  # QuickTime v1: bytes per frame
            frame = max(1, trak.meta.size // 8 * trak.meta.channels)
        kind = "co64" if "co64" in stbl else "stco"
        first, per_chunk, _ = tables.parse_stsc(stbl["stsc"])
        offsets = tables.parse_chunk_offsets(stbl[kind], kind)
        n = len(sizes)
        dts_ts, size_out, pos_out = array("q"), array("q"), array("q")
        sample = 0
        for i, first_chunk in enumerate(first):
            last = first[i + 1] if i + 1 < len(first) else len(offsets) + 1
            for chunk in range(max(first_chunk, 1) - 1, min(last - 1, len(offsets))):
                left, pos = per_chunk[i], offsets[chunk]
                while left > 0 and sample < n:
                    k = min(left, RAW_AUDIO_FRAMES, n - sample)
                    if pos + k * frame > self.size:
                        self.warnings.append(
                            f"track {trak.meta.id}: audio past the end of the file"
                        )
                        left = 0
                        break
                    dts_ts.append(sample * delta)
                    size_out.append(k * frame)
                    pos_out.append(pos)
                    pos += k * frame
                    sample += k
                    left -= k
        ts, half, shift = trak.timescale, trak.timescale // 2, trak.shift
        dts_ms = tables.to_ms(dts_ts, ts, shift)
        end_ms = ((sample * delta + shift) * 1000 + half) // ts
        count = len(dts_ms)
        duration = end_ms - dts_ms[0] if count else 0
        return SampleTable(
            trak.meta.id,
            dts_ms,
            array("q", [0]) * count,
            size_out,
            bytearray(b"\x01") * count,
            pos_out,
            duration,
        )

    def read_sample(self, track_id: int, index: int) -> bytes:
        table = self.sample_table(track_id)
        pos, size = table.pos[index], table.size[index]
        data = self.read_at(pos, size)
        if len(data) != size:
            raise Truncated(f"track {track_id} sample {index} at {pos} cut off")
        trak = self._traks[track_id]
        if trak.entry.little_endian:
            data = swap_pcm(data, trak.meta.size)
        elif trak.entry.format in TEXT_FORMATS:
            data = tx3g_to_subtitle(data, self._cues[track_id].duration[index])
        return data

    def packets(
        self, track_ids: Iterable[int] | None = None, start_ms: int | None = None
    ) -> Iterator[Packet]:
        """Packets of the chosen tracks in decode order, interleaved by dts.

        With ``start_ms`` each track starts at its last keyframe at or before that time."""
        ids = list(track_ids) if track_ids is not None else list(self._traks)
        streams = [self._track_packets(tid, start_ms) for tid in ids]
        for _, _, _, packet in heapq.merge(*streams):
            yield packet

    def _track_packets(
        self, tid: int, start_ms: int | None
    ) -> Iterator[tuple[int, int, int, Packet]]:
        table = self.sample_table(tid)
        first = 0
        if start_ms is not None:
            for i in range(len(table)):
                if table.dts[i] > start_ms:
                    break
                if table.keyframe[i]:
                    first = i
        for i in range(first, len(table)):
            packet = Packet(
                tid,
                table.dts[i],
                table.offset[i],
                bool(table.keyframe[i]),
                self.read_sample(tid, i),
            )
            yield table.dts[i], tid, i, packet


def swap_pcm(data: bytes | memoryview, bits: int) -> bytes:
    """Little-endian PCM ('sowt', lpcm) to the model's big-endian; 8-bit samples have
    no byte order and stay as they are."""
    if bits in (16, 24, 32):
        return swap_endian(bytes(data), bits)
    return bytes(data)


def open_file(path: str) -> tuple[Mp4Demuxer, BinaryIO]:
    """Convenience: a demuxer over a file path and the open file (the caller closes it)."""
    fh = open(path, "rb")  # noqa: SIM115 - caller owns it
    try:
        return Mp4Demuxer(file_reader(fh), os.fstat(fh.fileno()).st_size), fh
    except BaseException:
        fh.close()
        raise


__all__ = ["Mp4Demuxer", "Sample", "SampleTable", "open_file", "swap_pcm"]
