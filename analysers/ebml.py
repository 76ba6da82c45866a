"""MistAnalyserEBML: print and check Matroska/WebM files and streams.

It runs the server's own demuxer (:class:`mistcodecs.ebml.EbmlDemuxer`) and watches the
elements it walks. Detail levels: 1 tracks and the summary; 2 adds Segment-level
elements (EBML header, Info, Tracks, Clusters) with decoded values; 3 adds every block
(track, timestamp, keyframe, size); 4 and up print the full element tree. Problems:
sizes beyond a parent, known elements under the wrong parent, Cluster or track
timestamps going backwards, trailing junk and truncation. A timeline summary (per track
codec, frames, duration, bitrate, keyframe interval, and A/V start/end skew) ends the run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from analysers.common import Analyser, make_main
from mistcodecs.ebml import schema as s
from mistcodecs.ebml.block import Block
from mistcodecs.ebml.demux import REORDERING, EbmlDemuxer
from mistcodecs.ebml.element import ElementHeader, iter_children, value_of
from mistcodecs.errors import FormatError
from shm.model import Packet, TrackMeta

_LEVEL2_MASTERS = frozenset({s.EBML, s.INFO, s.TRACKS})


@dataclass
class _Timeline:
    meta: TrackMeta
    frames: int = 0
    keyframes: list[int] = field(default_factory=list)
    first: int | None = None
    last: int | None = None
    last_pts: int | None = None
    bytes: int = 0


class EbmlAnalyser(Analyser):
    name = "EBML"

    def __init__(self, detail: int, as_json: bool, **options: Any) -> None:
        super().__init__(detail, as_json, **options)
        self.demuxer = EbmlDemuxer(on_element=self._element)
        self._parents: list[int] = []  # element IDs by depth
        self._cluster_ts: int | None = None
        self._timelines: dict[int, _Timeline] = {}
        self._read = 0
        self._progress_at = 0.0 if sys.stderr.isatty() else None  # progress only on a terminal

    # -- input ----------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._read += len(data)
        self._events(self.demuxer.feed(data))
        if self._progress_at is not None and time.monotonic() - self._progress_at > 1.0:
            self._progress_at = time.monotonic()
            seconds = (self.media_ms or 0) / 1000
            sys.stderr.write(f"\r{self._read / 1e6:.1f} MB read, {seconds:.1f} s of media\x1b[K")
            sys.stderr.flush()

    def finish(self) -> None:
        if self._progress_at:
            sys.stderr.write("\r\x1b[K")
        try:
            self._events(self.demuxer.end())
        finally:
            if self.demuxer.trailing_bytes:
                self.problem(
                    f"{self.demuxer.trailing_bytes} bytes of trailing data after the Segment"
                )
            if self.demuxer.segment_data_offset is None:
                self.problem("no Segment found")
            elif self.demuxer.doc_type not in ("matroska", "webm"):
                self.problem(f"DocType {self.demuxer.doc_type!r} is neither matroska nor webm")
            for number, codec in self.demuxer.unsupported.items():
                self.emit(
                    f"track {number}: codec {codec} not supported, blocks skipped",
                    {"unsupported_track": number, "codec": codec},
                )
            self._summary()

    def _events(self, events: list[TrackMeta | Packet]) -> None:
        for ev in events:
            if isinstance(ev, TrackMeta):
                self._timelines[ev.id] = _Timeline(ev)
                self.emit(
                    f"Track {ev.id}: {ev.type} {ev.codec} {self._track_text(ev)}",
                    {
                        "track": ev.id,
                        "type": ev.type,
                        "codec": ev.codec,
                        "init": ev.init,
                        **self._track_fields(ev),
                    },
                )
            else:
                self._packet(ev)

    @staticmethod
    def _track_fields(t: TrackMeta) -> dict[str, Any]:
        if t.type == "video":
            return {"width": t.width, "height": t.height, "fps": t.fpks / 1000}
        if t.type == "audio":
            return {"rate": t.rate, "channels": t.channels, "bits": t.size}
        return {}

    def _track_text(self, t: TrackMeta) -> str:
        return " ".join(f"{k}={v}" for k, v in self._track_fields(t).items()) + (
            f" init={len(t.init)}B" if t.init else ""
        )

    def _packet(self, p: Packet) -> None:
        tl = self._timelines[p.track]
        pts = p.pts
        tl.frames += 1
        tl.bytes += len(p.data)
        tl.first = pts if tl.first is None else min(tl.first, pts)
        tl.last = pts if tl.last is None else max(tl.last, pts)
        if p.keyframe:
            tl.keyframes.append(pts)
        if tl.meta.codec not in REORDERING and tl.last_pts is not None and pts < tl.last_pts:
            self.problem(
                f"track {p.track}: timestamp goes backwards from {tl.last_pts} to {pts} ms"
            )
        tl.last_pts = pts
        self.media_ms = p.dts

    # -- element tree ---------------------------------------------------------

    def _element(self, hdr: ElementHeader, depth: int, body: bytes | None) -> None:
        del self._parents[depth:]
        parent = self._parents[-1] if self._parents else s.ROOT
        if not s.may_contain(parent, hdr.id) and not (
            parent == s.ROOT and hdr.id in (s.EBML, s.SEGMENT)
        ):
            self.problem(
                f"{hdr.name} at byte {hdr.offset} is not allowed inside {s.element_name(parent)}"
            )
        self._parents.append(hdr.id)
        if hdr.id == s.TIMESTAMP and body is not None:
            ts = int(value_of(hdr.id, body, hdr.data_offset))
            if self._cluster_ts is not None and ts < self._cluster_ts:
                self.problem(
                    f"Cluster timestamp goes backwards from {self._cluster_ts} to {ts} at byte {hdr.offset}"
                )
            self._cluster_ts = ts
        level = self._level(hdr, depth)
        if hdr.id in (s.SIMPLE_BLOCK, s.BLOCK_GROUP) and body is not None:
            self._block(hdr, depth, body)
            if self.detail >= 4 and hdr.id == s.BLOCK_GROUP:
                self._tree(hdr, depth, body)
            return
        if self.detail >= level:
            self._print(hdr, depth, body)
            if (
                body is not None
                and s.element_type(hdr.id) is s.ElementType.MASTER
                and (hdr.id in _LEVEL2_MASTERS or self.detail >= 4)
            ):
                self._tree(hdr, depth, body)

    @staticmethod
    def _level(hdr: ElementHeader, depth: int) -> int:
        if hdr.id in (s.EBML, s.SEGMENT, s.INFO, s.TRACKS, s.CLUSTER, s.CUES):
            return 2
        if hdr.id == s.TIMESTAMP:
            return 3
        return 4

    def _print(self, hdr: ElementHeader, depth: int, body: bytes | None) -> None:
        value: Any = None
        etype = s.element_type(hdr.id)
        if body is not None and etype is not s.ElementType.MASTER:
            value = value_of(hdr.id, body, hdr.data_offset)
            if isinstance(value, bytes) and len(value) > 32:
                value = value[:32]
        size = "unknown" if hdr.size is None else str(hdr.size)
        shown = "" if value is None else f" = {value.hex() if isinstance(value, bytes) else value}"
        self.emit(
            f"{'  ' * depth}{hdr.name} @{hdr.offset} size={size}{shown}",
            {
                "element": hdr.name,
                "id": f"0x{hdr.id:X}",
                "offset": hdr.offset,
                "size": hdr.size,
                "depth": depth,
                "value": value,
            },
            level=1,
        )

    def _tree(self, hdr: ElementHeader, depth: int, body: bytes) -> None:
        for child in iter_children(body, 0, len(body), hdr.data_offset):
            if not s.may_contain(hdr.id, child.id):
                self.problem(
                    f"{child.name} at byte {child.offset} is not allowed inside {hdr.name}"
                )
            start = child.data_offset - hdr.data_offset
            sub = body[start : start + (child.size or 0)]
            self._print(child, depth + 1, sub)
            if s.element_type(child.id) is s.ElementType.MASTER:
                self._tree(child, depth + 1, sub)

    def _block(self, hdr: ElementHeader, depth: int, body: bytes) -> None:
        if self.detail < 3:
            return
        keyframe = True
        block_body, where = body, hdr.data_offset
        if hdr.id == s.BLOCK_GROUP:
            block_body = b""
            for child in iter_children(body, 0, len(body), hdr.data_offset):
                start = child.data_offset - hdr.data_offset
                if child.id == s.BLOCK:
                    block_body, where = body[start : start + (child.size or 0)], child.data_offset
                elif child.id == s.REFERENCE_BLOCK:
                    keyframe = False
            if not block_body:
                raise FormatError(f"BlockGroup at byte {hdr.offset} has no Block")
        block = Block.parse(block_body, where)
        if hdr.id == s.SIMPLE_BLOCK:
            keyframe = block.keyframe
        ts = (self._cluster_ts or 0) + block.timestamp
        ms = ts * self.demuxer.timestamp_scale / 1e6
        size = sum(len(f) for f in block.frames)
        self.emit(
            f"{'  ' * depth}{hdr.name} @{hdr.offset} track={block.track} time={ms:.3f}ms"
            f"{' key' if keyframe else ''} frames={len(block.frames)} size={size}",
            {
                "block": hdr.name,
                "offset": hdr.offset,
                "track": block.track,
                "time_ms": ms,
                "keyframe": keyframe,
                "frames": len(block.frames),
                "size": size,
            },
            level=3,
        )

    # -- summary --------------------------------------------------------------

    def _summary(self) -> None:
        starts: dict[str, int] = {}
        ends: dict[str, int] = {}
        for tl in self._timelines.values():
            if tl.first is None or tl.last is None:
                self.emit(
                    f"Track {tl.meta.id} {tl.meta.codec}: no frames",
                    {"timeline": tl.meta.id, "frames": 0},
                    level=1,
                )
                continue
            duration = tl.last - tl.first
            rate = tl.bytes * 8 / (duration / 1000) if duration > 0 else 0.0
            gaps = [b - a for a, b in zip(tl.keyframes, tl.keyframes[1:], strict=False)]
            key_interval = sum(gaps) / len(gaps) if gaps else 0.0
            record = {
                "timeline": tl.meta.id,
                "codec": tl.meta.codec,
                "frames": tl.frames,
                "keyframes": len(tl.keyframes),
                "first_ms": tl.first,
                "last_ms": tl.last,
                "duration_ms": duration,
                "bitrate_bps": round(rate),
                "keyframe_interval_ms": round(key_interval, 1),
            }
            self.emit(
                f"Track {tl.meta.id} {tl.meta.codec}: {tl.frames} frames ({len(tl.keyframes)} key), "
                f"{tl.first}-{tl.last} ms, {rate / 1000:.1f} kbit/s, keyframe every {key_interval:.0f} ms",
                record,
                level=1,
            )
            starts.setdefault(tl.meta.type, tl.first)
            ends.setdefault(tl.meta.type, tl.last)
            self.summary[f"track{tl.meta.id}"] = f"{tl.meta.codec}/{tl.frames}"
        if "audio" in starts and "video" in starts:
            skew_start = starts["audio"] - starts["video"]
            skew_end = ends["audio"] - ends["video"]
            self.emit(
                f"A/V sync: audio starts {skew_start:+d} ms and ends {skew_end:+d} ms from video",
                {"av_sync_start_ms": skew_start, "av_sync_end_ms": skew_end},
                level=1,
            )
            self.summary["av_skew_ms"] = skew_start
        self.summary["tracks"] = len(self._timelines)


main = make_main(EbmlAnalyser, "Print and validate Matroska/WebM (EBML) files and streams.")

if __name__ == "__main__":
    main()
