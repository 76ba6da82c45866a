"""MistAnalyserMP4: box tree, decoded fields, consistency checks and a timeline summary.

MP4 needs random access (moov may sit after the media), so input is spooled to a
temporary file (memory first) and analysed once it has all arrived. Every problem is
reported with its box path and byte offset; damage never escapes as a traceback.
Local files are read in place.

Detail (``-D``): 0 summary line only; 1 per-track timeline and A/V sync; 2 box tree
with decoded fields (default); 3 deeper nesting; 5 trun sample sizes; 6 raw table
heads; 10 every trun size. Checks: sample counts in stsz vs stts/ctts/stsc, stss
range, chunk offsets inside the file and inside an mdat, trun data inside an mdat,
sample payloads past the end of a truncated file.
"""

from __future__ import annotations

import bisect
import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from analysers.common import Analyser, make_main, open_source
from analysers.mp4_progress import Mp4Progress
from common.errors import MediaError
from mistcodecs.errors import FormatError
from mistcodecs.mp4 import records, tables
from mistcodecs.mp4.boxes import (
    CONTAINERS,
    MAX_DEPTH,
    BoxHeader,
    ReadAt,
    children,
    payload,
    read_header,
)
from mistcodecs.mp4.codecs import codec_string
from mistcodecs.mp4.demux import Mp4Demuxer
from mistcodecs.mp4.sampleentry import SampleEntry, dops_to_opushead, parse_esds

SPOOL_IN_MEMORY = 64 * 1024 * 1024
REPLAY_STEP_MS = 100  # -V plays a complete file out in steps of this much media
TABLES = {"stts", "ctts", "stss", "stsc", "stsz", "stz2", "stco", "co64"}
DECODED = TABLES | {
    "ftyp", "styp", "mvhd", "tkhd", "mdhd", "hdlr", "trex", "mfhd", "tfhd", "tfdt",
    "elst", "trun", "sidx", "emsg", "stsd",
}  # fmt: skip


def _avcc(body: bytes) -> dict[str, Any]:
    if len(body) < 7:
        raise FormatError("avcC shorter than 7 bytes")
    return {
        "profile": body[1],
        "compat": body[2],
        "level": body[3],
        "nal_length_size": (body[4] & 3) + 1,
        "sps": body[5] & 0x1F,
        "codec": f"avc1.{body[1]:02x}{body[2]:02x}{body[3]:02x}",
    }


def _hvcc(body: bytes) -> dict[str, Any]:
    if len(body) < 23:
        raise FormatError("hvcC shorter than 23 bytes")
    return {
        "profile_space": body[1] >> 6,
        "tier": (body[1] >> 5) & 1,
        "profile": body[1] & 0x1F,
        "level": body[12],
        "nal_length_size": (body[21] & 3) + 1,
        "arrays": body[22],
    }


def _av1c(body: bytes) -> dict[str, Any]:
    if len(body) < 4 or not body[0] & 0x80:
        raise FormatError("av1C marker/version invalid")
    return {
        "profile": body[1] >> 5,
        "level": body[1] & 0x1F,
        "tier": body[2] >> 7,
        "high_bitdepth": (body[2] >> 6) & 1,
        "monochrome": (body[2] >> 4) & 1,
        "config_obus": len(body) - 4,
    }


def _asc(dsi: bytes) -> dict[str, Any]:
    if len(dsi) < 2:
        return {}
    aot = dsi[0] >> 3
    freq = ((dsi[0] & 7) << 1) | (dsi[1] >> 7)
    return {
        "aot": aot,
        "freq_index": freq,
        "channel_config": (dsi[1] >> 3) & 0xF,
        "codec": f"mp4a.40.{aot}",
    }


def _config(kind: str, body: bytes) -> dict[str, Any]:
    if kind == "avcC":
        return _avcc(body)
    if kind == "hvcC":
        return _hvcc(body)
    if kind == "av1C":
        return _av1c(body)
    if kind == "esds":
        oti, dsi = parse_esds(body)
        return {"object_type": f"0x{oti:02x}", **_asc(dsi)}
    if kind == "dOps":
        head = dops_to_opushead(body)
        channels, pre_skip, rate = struct.unpack_from("<BHI", head, 9)
        return {"channels": channels, "pre_skip": pre_skip, "input_rate": rate}
    if kind == "vpcC" and len(body) >= 8:
        return {"profile": body[4], "level": body[5], "bit_depth": body[6] >> 4}
    return {"bytes": len(body)}


class Mp4Analyser(Analyser):
    name = "MP4"

    def __init__(self, detail: int, as_json: bool, **options: Any) -> None:
        super().__init__(detail, as_json, **options)
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        self._size = 0
        self.mdats: list[tuple[int, int]] = []
        self.boxes = 0
        self._progress = Mp4Progress(self.read_at)  # media time while data arrives (-V)
        self._replay: list[int] = []  # sample times (ms) still to play out for -V

    def feed(self, data: bytes) -> None:
        if isinstance(data, LocalFile):  # analyse in place instead of copying
            self._spool.close()
            self._spool = open(data.path, "rb")  # noqa: SIM115 - closed in finish()
            self._size = os.fstat(self._spool.fileno()).st_size
            return
        self._spool.seek(0, os.SEEK_END)  # read_at moves the position
        self._spool.write(data)
        self._size += len(data)
        self.media_ms = self._progress.update(self._size)

    def backlog(self) -> Iterator[None]:
        """After the analysis, play the samples' times out so -V paces a file (and
        the rest of a stream) in media time."""
        replay, self._replay = self._replay, []
        for ms in replay:
            if self.media_ms is None or ms > self.media_ms:
                self.media_ms = ms
                yield

    def read_at(self, offset: int, size: int) -> bytes:
        self._spool.seek(offset)
        return self._spool.read(size)

    def finish(self) -> None:
        try:
            self.analyse(self.read_at, self._size)
        finally:
            self._spool.close()

    # ---- tree -----------------------------------------------------------------------

    def analyse(self, read_at: ReadAt, size: int) -> None:
        self._size = size
        if size == 0:
            self.problem("empty input")
            return
        top = self._walk(read_at, 0, size, "", 0, top_level=True)
        self.mdats = [(h.payload_offset, h.end) for h in top if h.type == "mdat"]
        self.mdats.sort()
        for h in top:
            if h.type == "moov":
                self._check_moov(read_at, h, size)
            elif h.type == "moof":
                self._check_moof(read_at, h)
        if not any(h.type == "moov" for h in top):
            self.problem("no moov box: file cannot be played")
            return
        self._timeline(read_at, size)

    def _walk(
        self, read_at: ReadAt, start: int, end: int, path: str, depth: int, top_level: bool = False
    ) -> list[BoxHeader]:
        found: list[BoxHeader] = []
        pos = start
        while end - pos >= 8:
            try:
                header = read_header(read_at, pos, end, nested=not top_level)
            except FormatError as exc:
                self.problem(f"{path or '/'} @{pos}: {exc}")
                return found
            found.append(header)
            self.boxes += 1
            box_path = f"{path}/{header.type}"
            fields: dict[str, Any] = {}
            try:
                fields = self._decode(read_at, header)
            except FormatError as exc:
                self.problem(f"{box_path} @{header.offset}: {exc}")
            indent = "  " * depth
            text = f"{indent}[{header.type}] @{header.offset} size {header.size}"
            if fields:
                text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
            self.emit(
                text,
                {
                    "box": header.type,
                    "path": box_path,
                    "offset": header.offset,
                    "size": header.size,
                    **fields,
                },
                level=2 if depth < 6 else 3,
            )
            if header.type in CONTAINERS:
                if depth + 1 >= MAX_DEPTH:
                    self.problem(
                        f"{box_path} @{header.offset}: boxes nested deeper than {MAX_DEPTH}"
                    )
                else:
                    self._walk(read_at, header.payload_offset, header.end, box_path, depth + 1)
            pos = header.end
        if top_level and end - pos > 0:
            self.problem(f"/ @{pos}: {end - pos} trailing bytes, too short for a box")
        return found

    def _decode(self, read_at: ReadAt, h: BoxHeader) -> dict[str, Any]:
        kind = h.type
        if kind not in DECODED:
            return {}  # never load bodies we do not decode (mdat, free, uuid, ...)
        body = payload(read_at, h)
        if kind in ("ftyp", "styp"):
            ftyp = records.Ftyp.parse(body, kind)
            return {
                "major": ftyp.major,
                "minor": ftyp.minor,
                "compatible": ",".join(ftyp.compatible),
            }
        simple: dict[str, Callable[[bytes], Any]] = {
            "mvhd": records.Mvhd.parse,
            "tkhd": records.Tkhd.parse,
            "mdhd": records.Mdhd.parse,
            "hdlr": records.Hdlr.parse,
            "trex": records.Trex.parse,
            "mfhd": records.Mfhd.parse,
            "tfhd": records.Tfhd.parse,
            "tfdt": records.Tfdt.parse,
        }
        if kind in simple:
            return {k: v for k, v in vars(simple[kind](body)).items() if v is not None}
        if kind == "elst":
            return {
                "edits": [
                    (e.segment_duration, e.media_time) for e in records.Elst.parse(body).entries
                ]
            }
        if kind == "trun":
            run = records.Trun.parse(body)
            out: dict[str, Any] = {"samples": run.count, "data_offset": run.data_offset}
            if run.sizes is not None:
                out["bytes"] = sum(run.sizes)
            if run.durations is not None:
                out["duration"] = sum(run.durations)
            if self.detail >= 5 and run.sizes is not None:
                out["sizes"] = run.sizes[: 10 if self.detail < 10 else None]
            return out
        if kind == "sidx":
            sidx = records.Sidx.parse(body)
            return {
                "reference_id": sidx.reference_id,
                "timescale": sidx.timescale,
                "earliest_pts": sidx.earliest_presentation_time,
                "references": len(sidx.references),
                "duration": sum(r.duration for r in sidx.references),
            }
        if kind == "emsg":
            emsg = records.Emsg.parse(body)
            return {
                "scheme": emsg.scheme_id_uri,
                "value": emsg.value,
                "time": emsg.presentation_time,
                "id": emsg.id,
            }
        if kind == "stsd":
            entry = SampleEntry.parse_stsd(body)
            out = {"format": entry.format, "codec": entry.codec}
            if entry.width:
                out |= {"width": entry.width, "height": entry.height}
            if entry.channels:
                out |= {"channels": entry.channels, "rate": entry.rate, "bits": entry.sample_size}
            for sub, sub_body in entry.boxes.items():
                decoded = _config(sub, sub_body)
                out[sub] = decoded
            return out
        if kind in TABLES:
            return self._table_summary(kind, body)
        return {}

    def _table_summary(self, kind: str, body: bytes) -> dict[str, Any]:
        if kind in ("stts", "ctts"):
            counts, values = tables.parse_pairs(body, kind)
            out: dict[str, Any] = {"entries": len(counts), "samples": sum(counts)}
            if len(values):
                out |= {"min": min(values), "max": max(values)}
        elif kind == "stss":
            out = {"keyframes": len(tables.parse_stss(body))}
        elif kind == "stsc":
            first, _per_chunk, _ = tables.parse_stsc(body)
            out = {"entries": len(first)}
        elif kind in ("stsz", "stz2"):
            sizes = (
                tables.parse_stsz(body, self._size) if kind == "stsz" else tables.parse_stz2(body)
            )
            out = {"samples": len(sizes), "bytes": sum(sizes)}
        else:
            offsets = tables.parse_chunk_offsets(body, kind)
            out = {"chunks": len(offsets)}
        if self.detail >= 6:
            out["raw_head"] = body[8:40].hex()
        return out

    # ---- checks ---------------------------------------------------------------------

    def _in_mdat(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self.mdats, (start, 1 << 62)) - 1
        return i >= 0 and self.mdats[i][0] <= start and end <= self.mdats[i][1]

    def _check_moov(self, read_at: ReadAt, moov: BoxHeader, size: int) -> None:
        try:
            kids = list(_children(read_at, moov))
        except FormatError:
            return  # already reported by the tree walk
        for trak in kids:
            if trak.type != "trak":
                continue
            try:
                self._check_trak(read_at, trak, size)
            except FormatError as exc:
                self.problem(f"/moov/trak @{trak.offset}: {exc}")

    def _check_trak(self, read_at: ReadAt, trak: BoxHeader, size: int) -> None:
        stbl = _descend(read_at, trak, ["mdia", "minf", "stbl"])
        if stbl is None:
            self.problem(f"/moov/trak @{trak.offset}: no mdia/minf/stbl")
            return
        boxes = {h.type: h for h in _children(read_at, stbl)}
        where = f"/moov/trak/mdia/minf/stbl @{stbl.offset}"
        bodies = {k: payload(read_at, h) for k, h in boxes.items() if k in TABLES}
        if "stsz" in bodies:
            sizes = tables.parse_stsz(bodies["stsz"], size)
        elif "stz2" in bodies:
            sizes = tables.parse_stz2(bodies["stz2"])
        else:
            self.problem(f"{where}: no stsz/stz2")
            return
        n = len(sizes)
        stts_n = sum(tables.parse_pairs(bodies["stts"], "stts")[0]) if "stts" in bodies else 0
        if stts_n != n:
            self.problem(f"{where}: stts covers {stts_n} samples but stsz has {n}")
        if "ctts" in bodies:
            ctts_n = sum(tables.parse_pairs(bodies["ctts"], "ctts")[0])
            if ctts_n != n:
                self.problem(f"{where}: ctts covers {ctts_n} samples but stsz has {n}")
        if "stss" in bodies:
            bad = [k for k in tables.parse_stss(bodies["stss"]) if not 0 < k <= n]
            if bad:
                self.problem(f"{where}: stss names sample {bad[0]} of {n}")
        co_kind = "co64" if "co64" in bodies else "stco"
        if n == 0:
            return
        if co_kind not in bodies or "stsc" not in bodies:
            self.problem(f"{where}: no stsc or stco/co64")
            return
        first, per_chunk, _ = tables.parse_stsc(bodies["stsc"])
        offsets = tables.parse_chunk_offsets(bodies[co_kind], co_kind)
        positions = tables.chunk_positions(first, per_chunk, offsets, sizes)
        named = tables.stsc_sample_count(first, per_chunk, len(offsets))
        if named > n:
            self.problem(
                f"{where}/stsc: names {named} samples in {len(offsets)} chunk(s) but stsz has {n}"
            )
        if len(positions) != n:
            self.problem(f"{where}: stsc/{co_kind} place {len(positions)} samples but stsz has {n}")
        outside = 0
        first_bad = -1
        for i in range(len(positions)):
            start = positions[i]
            if start + sizes[i] > size or not self._in_mdat(start, start + sizes[i]):
                outside += 1
                if first_bad < 0:
                    first_bad = i
        if outside:
            pos = positions[first_bad]
            self.problem(
                f"{where}/{co_kind}: {outside} sample(s) outside the file or any mdat "
                f"(first: sample {first_bad + 1} at {pos}, {sizes[first_bad]} bytes, file {size})"
            )

    def _check_moof(self, read_at: ReadAt, moof: BoxHeader) -> None:
        try:
            for traf in _children(read_at, moof):
                if traf.type != "traf":
                    continue
                kids = list(_children(read_at, traf))
                tfhd_h = next((h for h in kids if h.type == "tfhd"), None)
                if tfhd_h is None:
                    self.problem(f"/moof/traf @{traf.offset}: no tfhd")
                    continue
                tfhd = records.Tfhd.parse(payload(read_at, tfhd_h))
                base = tfhd.base_data_offset if tfhd.base_data_offset is not None else moof.offset
                for h in kids:
                    if h.type != "trun":
                        continue
                    run = records.Trun.parse(payload(read_at, h))
                    if run.data_offset is None or run.sizes is None:
                        continue
                    start = base + run.data_offset
                    end = start + sum(run.sizes)
                    if not self._in_mdat(start, end):
                        self.problem(
                            f"/moof/traf/trun @{h.offset}: data {start}..{end} is not inside an mdat"
                        )
        except FormatError as exc:
            self.problem(f"/moof @{moof.offset}: {exc}")

    # ---- timeline -------------------------------------------------------------------

    def _timeline(self, read_at: ReadAt, size: int) -> None:
        try:
            demux = Mp4Demuxer(read_at, size)
            metas = demux.tracks()
        except MediaError as exc:
            self.problem(f"cannot index samples: {exc}")
            return
        for warning in demux.warnings:
            self.problem(warning)
        first_pts: dict[str, int] = {}
        times: set[int] = set()
        for meta in metas:
            table = demux.sample_table(meta.id)
            n = len(table)
            keys = [table.dts[i] for i in range(n) if table.keyframe[i]]
            interval = (keys[-1] - keys[0]) / (len(keys) - 1) if len(keys) > 1 else 0.0
            pts0 = min((table.dts[i] + table.offset[i] for i in range(min(n, 32))), default=0)
            first_pts.setdefault(meta.type, pts0)
            try:
                rfc6381 = codec_string(meta)
            except MediaError:
                rfc6381 = ""
            record = {
                "track": meta.id,
                "codec_string": rfc6381,
                "type": meta.type,
                "codec": meta.codec,
                "samples": n,
                "keyframes": len(keys),
                "first_dts": table.dts[0] if n else None,
                "first_pts": pts0,
                "duration_ms": table.duration_ms,
                "kbps": round(meta.bps * 8 / 1000, 1),
                "keyframe_interval_ms": round(interval, 1),
                "width": meta.width,
                "height": meta.height,
                "rate": meta.rate,
                "channels": meta.channels,
            }
            self.emit(
                f"track {meta.id} {meta.type} {meta.codec} ({rfc6381}): {n} samples, {len(keys)} keyframes, "
                f"{table.duration_ms} ms, {record['kbps']} kbit/s, keyframe every {interval:.0f} ms, "
                f"first pts {pts0} ms",
                {"timeline": record},
                level=1,
            )
            times.update(table.dts[i] // REPLAY_STEP_MS * REPLAY_STEP_MS for i in range(n))
        if "video" in first_pts and "audio" in first_pts:
            sync = first_pts["audio"] - first_pts["video"]
            self.emit(
                f"A/V sync at start: audio starts {sync:+d} ms relative to video",
                {"av_sync_ms": sync},
                level=1,
            )
            self.summary["av_sync_ms"] = sync
        self._replay = sorted(times)
        self.summary["tracks"] = len(metas)
        self.summary["boxes"] = self.boxes
        self.summary["fragmented"] = int(demux.fragmented)


def _children(read_at: ReadAt, parent: BoxHeader) -> list[BoxHeader]:
    return children(read_at, parent)


def _descend(read_at: ReadAt, node: BoxHeader, path: list[str]) -> BoxHeader | None:
    current: BoxHeader | None = node
    for name in path:
        assert current is not None
        current = next((h for h in _children(read_at, current) if h.type == name), None)
        if current is None:
            return None
    return current


class LocalFile(bytes):
    """An empty chunk that names a local file: MP4 is read in place, not streamed."""

    path: str


def _source(source: str, timeout: float, _options: dict[str, Any]) -> Iterator[bytes]:
    if source != "-" and not source.startswith(("http://", "https://")) and os.path.isfile(source):
        marker = LocalFile()
        marker.path = source
        return iter([marker])
    return open_source(source, timeout)


main = make_main(
    Mp4Analyser,
    "Analyse an MP4/MOV/fMP4 file: box tree, sample tables, timeline.",
    source_chunks=_source,
)

if __name__ == "__main__":
    main()
