"""Streaming Matroska/WebM demuxer: bytes in, :class:`TrackMeta` and :class:`Packet` out.

Theory of operation: the parser keeps a stack of the masters it descends into
(Segment and Cluster, which live streams write with unknown size). Every other element
is either read whole (EBML header, Info, Tracks, Cues, blocks: small and needed) or
skipped by size without buffering (Attachments, Tags, Void, unknown IDs). A child may
never run past a sized parent; an unknown-size master ends at the first element that
cannot be its child. Bytes are consumed as soon as they are parsed, so memory stays
bounded by the largest element read whole (capped by ``MAX_ELEMENT``).

Byte positions of every emitted packet are kept in :attr:`EbmlDemuxer.positions` (one
:class:`BlockPos` per packet, same order) so that a VoD input can index a file once and
later re-read a single block with :meth:`EbmlDemuxer.reload`.
"""

from __future__ import annotations

import heapq
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mistcodecs import aac
from mistcodecs.ebml import schema as s
from mistcodecs.ebml.block import Block
from mistcodecs.ebml.element import ElementHeader, iter_children, value_of
from mistcodecs.errors import FormatError, Truncated
from mistcodecs.wav import swap_endian
from shm.model import Packet, TrackMeta

MAX_ELEMENT = 64 * 1024 * 1024  # larger whole-read elements are treated as damage
DESCEND = frozenset({s.SEGMENT, s.CLUSTER})
READ_WHOLE = frozenset(
    {s.EBML, s.INFO, s.TRACKS, s.CUES, s.TIMESTAMP, s.SIMPLE_BLOCK, s.BLOCK_GROUP, 0xA7, 0xAB}
)
# Video codecs whose frames can arrive out of presentation order (B-frames).
REORDERING = frozenset({"H264", "HEVC", "MPEG2"})
_EBML_ID = s.EBML.to_bytes(4, "big")
_SEGMENT_ID = s.SEGMENT.to_bytes(4, "big")
PROBE_FRAMES = 16  # frames looked at before choosing a reordering track's dts delay

CODECS: dict[str, tuple[str, str]] = {
    "V_MPEG4/ISO/AVC": ("video", "H264"),
    "V_MPEGH/ISO/HEVC": ("video", "HEVC"),
    "V_AV1": ("video", "AV1"),
    "V_VP8": ("video", "VP8"),
    "V_VP9": ("video", "VP9"),
    "V_MPEG2": ("video", "MPEG2"),
    "V_MJPEG": ("video", "JPEG"),
    "A_AAC": ("audio", "AAC"),
    "A_OPUS": ("audio", "opus"),
    "A_VORBIS": ("audio", "vorbis"),
    "A_MPEG/L3": ("audio", "MP3"),
    "A_AC3": ("audio", "AC3"),
    "A_EAC3": ("audio", "EAC3"),
    "A_FLAC": ("audio", "FLAC"),
    "A_PCM/INT/BIG": ("audio", "PCM"),
    "A_PCM/INT/LIT": ("audio", "PCM"),
    "S_TEXT/UTF8": ("meta", "subtitle"),
    "S_TEXT/WEBVTT": ("meta", "subtitle"),
    "D_WEBVTT/SUBTITLES": ("meta", "subtitle"),  # WebM's WebVTT mapping, as ffmpeg writes it
    "D_WEBVTT/CAPTIONS": ("meta", "subtitle"),
}


@dataclass(frozen=True, slots=True)
class BlockPos:
    """Where one packet lives: the (Simple)Block element at ``pos`` (``size`` bytes,
    header included), lace number ``lace``, and the timing the demuxer gave it."""

    track: int
    dts: int
    offset: int
    keyframe: bool
    pos: int
    size: int
    lace: int = 0


@dataclass(frozen=True, slots=True)
class CuePoint:
    time_ms: int
    track: int  # our track id (0 if the Cue names an unknown track)
    cluster_pos: int  # absolute file offset of the Cluster


@dataclass
class _Track:
    meta: TrackMeta
    number: int
    codec_id: str
    default_duration: int = 0  # ns
    little_endian_pcm: bool = False  # A_PCM/INT/LIT: converted to the model's big-endian
    delay_ms: int = 0  # CodecDelay, subtracted from block times
    pending: deque[tuple[int, bool, bytes, int, int, int]] = field(default_factory=deque)
    heap: list[int] = field(default_factory=list)
    last_dts: int | None = None
    depth: int = 0
    delay: int | None = None  # ms subtracted from sorted pts (fixed at the first frame)


def _aac_asc(rate: int, channels: int) -> bytes:
    """AudioSpecificConfig (AAC-LC) for old-style A_AAC/... tracks without CodecPrivate."""
    return aac.build_asc(2, rate, channels)


class EbmlDemuxer:
    """Sans-IO Matroska/WebM demuxer (see module docstring).

    ``on_element(header, depth, body)`` is called for every element seen, with the body
    for elements read whole and ``None`` for those descended into or skipped; the
    analyser uses it to print the tree with the same parser the server runs.
    """

    def __init__(
        self,
        *,
        reorder_depth: int = 4,
        on_element: Callable[[ElementHeader, int, bytes | None], None] | None = None,
    ) -> None:
        self.reorder_depth = reorder_depth
        self.on_element = on_element
        self.timestamp_scale = 1_000_000  # ns per timestamp unit
        self.doc_type = ""
        self.duration_ms: int | None = None
        self.segment_data_offset: int | None = None
        self.cues: list[CuePoint] = []
        self.positions: list[BlockPos] = []
        self.unsupported: dict[int, str] = {}  # Matroska track number -> CodecID
        self.trailing_bytes = 0
        self._tracks: dict[int, _Track] = {}
        self._buf = bytearray()
        self._base = 0  # absolute offset of _buf[0]
        self._pos = 0  # absolute offset of the next element header
        self._skip_end = 0  # absolute end of an element being skipped
        self._stack: list[tuple[int, int | None]] = []  # (id, absolute end or None)
        self._cluster_ts = 0
        self._segment_end: int | None = None
        self._done = False
        self._out: list[TrackMeta | Packet] = []

    # -- public API -----------------------------------------------------------

    @property
    def tracks(self) -> list[TrackMeta]:
        return [t.meta for t in self._tracks.values()]

    def feed(self, data: bytes) -> list[TrackMeta | Packet]:
        if not self._done:
            self._buf += data
            self._parse()
        else:
            self.trailing_bytes += len(data)
        out, self._out = self._out, []
        return out

    def end(self) -> list[TrackMeta | Packet]:
        """Flush held-back video frames; raise :class:`Truncated` if the data stopped
        inside an element."""
        for track in self._tracks.values():
            self._flush(track)
        out, self._out = self._out, []
        if self._done:
            return out
        unread = self._base + len(self._buf) - max(self._pos, self._skip_end)
        sized_open = [(eid, end) for eid, end in self._stack if end is not None and end > self._pos]
        if unread > 0 or self._skip_end > self._base + len(self._buf) or sized_open:
            self._out = out  # keep them for a caller that catches the error
            where = self._pos
            raise Truncated(f"EBML data ends inside an element at byte {where}")
        return out

    def seek(self, cluster_pos: int) -> list[TrackMeta | Packet]:
        """Continue from the Cluster at absolute offset ``cluster_pos`` (from :attr:`cues`
        or :attr:`positions`): the caller then feeds file bytes from there. Held-back
        frames are returned first; the tracks stay as they were."""
        if self.segment_data_offset is None:
            raise FormatError("cannot seek before the Segment and Tracks were read")
        for track in self._tracks.values():
            self._flush(track)
        out, self._out = self._out, []
        self._buf.clear()
        self._base = self._pos = self._skip_end = cluster_pos
        self._stack = [(s.SEGMENT, self._segment_end)]
        self._cluster_ts = 0
        self._done = False
        for track in self._tracks.values():
            track.last_dts = None
            track.heap.clear()
        return out

    def reload(self, ref: BlockPos, element: bytes) -> Packet:
        """Rebuild the packet at ``ref`` from the bytes of its block element
        (``element`` = file bytes ``[ref.pos, ref.pos + ref.size)``)."""
        hdr = ElementHeader.parse(element, 0, ref.pos)
        if hdr.size is None or hdr.header_len + hdr.size != len(element):
            raise FormatError(f"no complete block element at byte {ref.pos}")
        block, _key, duration = self._block_of(
            hdr, memoryview(element)[hdr.header_len :], hdr.data_offset
        )
        track = self._tracks.get(block.track)
        if ref.lace >= len(block.frames) or track is None:
            raise FormatError(f"block at byte {ref.pos} has no lace {ref.lace} of a known track")
        return Packet(
            ref.track,
            ref.dts,
            ref.offset,
            ref.keyframe,
            self._payload(track, block.frames[ref.lace], duration),
        )

    # -- element walk ---------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buf
        while True:
            if self._skip_end > self._pos:
                self._pos = min(self._skip_end, self._base + len(buf))
                if self._pos < self._skip_end:
                    break
            # close sized masters we have reached the end of, with anything inside them
            # (an unknown-size Cluster in a sized Segment ends with the Segment)
            for i, (_eid, end) in enumerate(self._stack):
                if end is not None and self._pos >= end:
                    del self._stack[i:]
                    break
            rel = self._pos - self._base
            if not self._stack and self.segment_data_offset is not None:
                # after a complete Segment only another EBML stream may follow
                if len(buf) - rel < 4:
                    break
                if bytes(buf[rel : rel + 4]) not in (_EBML_ID, _SEGMENT_ID):
                    self._done = True
                    self.trailing_bytes = len(buf) - rel
                    break
            try:
                hdr = ElementHeader.parse(buf, rel, self._base)
            except Truncated:
                break
            self._close_unknown(hdr.id)
            if self._done:
                return
            depth = len(self._stack)
            parent_end = None  # end of the innermost sized ancestor
            for _eid, end in self._stack:
                parent_end = end if end is not None else parent_end
            if hdr.size is None and hdr.id not in DESCEND:  # Matroska allows it nowhere else
                raise FormatError(
                    f"{hdr.name} at byte {hdr.offset} has an unknown size "
                    "(only Segment and Cluster may have an unknown size)"
                )
            if hdr.end is None and hdr.id in DESCEND:
                pass  # unknown size: ends where its sized ancestor ends
            elif parent_end is not None and (hdr.end is None or hdr.end > parent_end):
                raise FormatError(
                    f"{hdr.name} at byte {hdr.offset} ({hdr.size} bytes) runs past its parent's end at byte {parent_end}"
                )
            if hdr.id in DESCEND:
                if self.on_element:
                    self.on_element(hdr, depth, None)
                self._stack.append((hdr.id, hdr.end))
                self._pos = hdr.data_offset
                if hdr.id == s.SEGMENT:
                    self.segment_data_offset = hdr.data_offset
                    self._segment_end = hdr.end
                elif hdr.id == s.CLUSTER:
                    self._cluster_ts = 0
                continue
            assert hdr.size is not None  # unknown sizes are only allowed in DESCEND
            if hdr.id in READ_WHOLE:
                if hdr.size > MAX_ELEMENT:
                    raise FormatError(f"{hdr.name} at byte {hdr.offset} claims {hdr.size} bytes")
                end_rel = rel + hdr.header_len + hdr.size
                if end_rel > len(buf):
                    break
                body = bytes(buf[rel + hdr.header_len : end_rel])
                if self.on_element:
                    self.on_element(hdr, depth, body)
                self._pos = hdr.offset + hdr.header_len + hdr.size
                self._element(hdr, body)
            else:
                if self.on_element:
                    self.on_element(hdr, depth, None)
                self._skip_end = hdr.data_offset + hdr.size
                self._pos = hdr.data_offset
            # drop consumed bytes
            consumed = min(self._pos, self._base + len(buf)) - self._base
            if consumed > 65536:
                del buf[:consumed]
                self._base += consumed
        consumed = min(self._pos, self._base + len(buf)) - self._base
        if consumed > 0:
            del buf[:consumed]
            self._base += consumed

    def _close_unknown(self, eid: int) -> None:
        """Pop unknown-size masters that ``eid`` cannot belong to; at the top level only
        an EBML header or a Segment may follow, anything else is trailing junk."""
        while self._stack and self._stack[-1][1] is None:
            top = self._stack[-1][0]
            if (
                top == s.CLUSTER
                and (eid == s.CLUSTER or eid in s.LEVEL1 or eid in (s.EBML, s.SEGMENT))
            ) or (top == s.SEGMENT and eid in (s.EBML, s.SEGMENT)):
                self._stack.pop()
            else:
                break
        if not self._stack and eid not in (s.EBML, s.SEGMENT):
            if self.segment_data_offset is None:
                raise FormatError(
                    f"not EBML: element 0x{eid:X} at byte {self._pos} where an EBML header belongs"
                )
            self._done = True
            self.trailing_bytes = self._base + len(self._buf) - self._pos

    def _element(self, hdr: ElementHeader, body: bytes) -> None:
        eid = hdr.id
        if eid == s.EBML:
            for child in iter_children(body, 0, len(body), hdr.data_offset):
                if child.id == 0x4282:
                    self.doc_type = str(self._leaf(body, child, hdr.data_offset))
        elif eid == s.INFO:
            self._info(body, hdr.data_offset)
        elif eid == s.TRACKS:
            self._parse_tracks(body, hdr.data_offset)
        elif eid == s.CUES:
            self._parse_cues(body, hdr.data_offset)
        elif eid == s.TIMESTAMP:
            self._cluster_ts = int(value_of(eid, body, hdr.data_offset))
        elif eid in (s.SIMPLE_BLOCK, s.BLOCK_GROUP):
            block, keyframe, duration = self._block_of(hdr, body, hdr.data_offset)
            self._packets(block, keyframe, hdr, duration)

    @staticmethod
    def _leaf(body: bytes, child: ElementHeader, base: int) -> int | float | str | bytes:
        start = child.data_offset - base
        return value_of(child.id, body[start : start + (child.size or 0)], child.data_offset)

    def _fields(self, body: bytes, base: int) -> dict[int, list[ElementHeader]]:
        found: dict[int, list[ElementHeader]] = {}
        for child in iter_children(body, 0, len(body), base):
            found.setdefault(child.id, []).append(child)
        return found

    def _info(self, body: bytes, base: int) -> None:
        f = self._fields(body, base)
        if s.TIMESTAMP_SCALE in f:
            scale = int(self._leaf(body, f[s.TIMESTAMP_SCALE][0], base))
            if scale <= 0:
                raise FormatError(
                    f"TimestampScale {scale} at byte {f[s.TIMESTAMP_SCALE][0].offset}"
                )
            self.timestamp_scale = scale
        if s.DURATION in f:
            hdr = f[s.DURATION][0]
            ms = float(self._leaf(body, hdr, base)) * self.timestamp_scale / 1e6
            if not 0 <= ms < 2**53:
                raise FormatError(f"Duration {ms} ms at byte {hdr.offset}")
            self.duration_ms = round(ms)

    # -- tracks ---------------------------------------------------------------

    def _parse_tracks(self, body: bytes, base: int) -> None:
        for entry in iter_children(body, 0, len(body), base):
            if entry.id != s.TRACK_ENTRY:
                continue
            start = entry.data_offset - base
            sub = body[start : start + (entry.size or 0)]
            self._track_entry(sub, entry.data_offset)

    def _track_entry(self, body: bytes, base: int) -> None:
        f = self._fields(body, base)

        def get(eid: int, default: int | float | str | bytes) -> int | float | str | bytes:
            return self._leaf(body, f[eid][0], base) if eid in f else default

        number = int(get(s.TRACK_NUMBER, 0))
        codec_id = str(get(s.CODEC_ID, ""))
        if number == 0 or number in self._tracks:
            return
        kind = CODECS.get(codec_id) or (("audio", "AAC") if codec_id.startswith("A_AAC") else None)
        if kind is None or s.CONTENT_ENCODINGS in f:
            self.unsupported[number] = codec_id + (" (ContentEncodings)" if kind else "")
            return
        meta = TrackMeta(id=len(self._tracks) + 1, type=kind[0], codec=kind[1])
        meta.init = bytes(get(s.CODEC_PRIVATE, b""))  # type: ignore[arg-type]
        meta.lang = str(get(s.LANGUAGE, ""))
        if meta.lang == "und":
            meta.lang = ""
        track = _Track(meta, number, codec_id, int(get(s.DEFAULT_DURATION, 0)))
        if track.default_duration:
            meta.fpks = round(1e12 / track.default_duration)
        for sub_id, target in ((s.VIDEO, "video"), (s.AUDIO, "audio")):
            if sub_id not in f:
                continue
            hdr = f[sub_id][0]
            start = hdr.data_offset - base
            sub = body[start : start + (hdr.size or 0)]
            g = self._fields(sub, hdr.data_offset)

            def sget(
                eid: int,
                default: float,
                g: dict[int, list[ElementHeader]] = g,
                sub: bytes = sub,
                b: int = hdr.data_offset,
            ) -> float:
                return float(self._leaf(sub, g[eid][0], b)) if eid in g else default

            if target == "video":
                meta.width = int(sget(s.PIXEL_WIDTH, 0))
                meta.height = int(sget(s.PIXEL_HEIGHT, 0))
            else:
                rate = sget(s.SAMPLING_FREQUENCY, 8000.0)
                if not 0 < rate < 2**32:
                    raise FormatError(f"SamplingFrequency {rate} in track {number}")
                meta.rate = round(rate)
                meta.channels = int(sget(s.CHANNELS, 1))
                meta.size = int(sget(s.BIT_DEPTH, 0))
        if meta.codec == "AAC" and not meta.init:
            meta.init = _aac_asc(meta.rate, meta.channels)
        if meta.codec in ("VP8", "VP9", "AC3", "MP3", "EAC3", "PCM", "subtitle"):
            meta.init = b""
        if meta.codec == "PCM":
            meta.size = meta.size or 16
            track.little_endian_pcm = codec_id.endswith("LIT")
        if meta.codec in ("AAC", "opus", "vorbis", "MP3", "AC3", "EAC3", "FLAC") and not meta.size:
            meta.size = 16
        if "WEBVTT" in codec_id:
            meta.extra["subtitle_format"] = "webvtt"
        if s.CODEC_DELAY in f:
            # Block times include the decoder delay (Opus pre-skip); like ffmpeg, report
            # times with it removed so that audio stays in sync with video.
            delay = int(get(s.CODEC_DELAY, 0))
            meta.extra["codec_delay_ns"] = delay
            track.delay_ms = (delay + 500_000) // 1_000_000
        track.depth = self.reorder_depth if meta.codec in REORDERING else 0
        self._tracks[number] = track
        self._out.append(meta)

    def _parse_cues(self, body: bytes, base: int) -> None:
        seg = self.segment_data_offset or 0
        for point in iter_children(body, 0, len(body), base):
            if point.id != s.CUE_POINT:
                continue
            start = point.data_offset - base
            pbody = body[start : start + (point.size or 0)]
            f = self._fields(pbody, point.data_offset)
            if s.CUE_TIME not in f:
                continue
            ms = round(
                int(self._leaf(pbody, f[s.CUE_TIME][0], point.data_offset))
                * self.timestamp_scale
                / 1e6
            )
            for tp in f.get(s.CUE_TRACK_POSITIONS, []):
                tstart = tp.data_offset - point.data_offset
                tbody = pbody[tstart : tstart + (tp.size or 0)]
                g = self._fields(tbody, tp.data_offset)
                if s.CUE_CLUSTER_POSITION not in g:
                    continue
                num = (
                    int(self._leaf(tbody, g[s.CUE_TRACK][0], tp.data_offset))
                    if s.CUE_TRACK in g
                    else 0
                )
                pos = int(self._leaf(tbody, g[s.CUE_CLUSTER_POSITION][0], tp.data_offset))
                track = self._tracks.get(num)
                self.cues.append(CuePoint(ms, track.meta.id if track else 0, seg + pos))

    # -- blocks ---------------------------------------------------------------

    def _block_of(
        self, hdr: ElementHeader, body: bytes | memoryview, base: int
    ) -> tuple[Block, bool, int | None]:
        """The block, whether it is a keyframe, and its BlockDuration (ticks) if any."""
        if hdr.id == s.SIMPLE_BLOCK:
            block = Block.parse(body, base)
            return block, block.keyframe, None
        block_body: bytes | memoryview | None = None
        block_base = base
        keyframe = True
        duration = None
        for child in iter_children(body, 0, len(body), base):
            start = child.data_offset - base
            if child.id == s.BLOCK:
                block_body = body[start : start + (child.size or 0)]
                block_base = child.data_offset
            elif child.id == s.REFERENCE_BLOCK:
                keyframe = False
            elif child.id == s.BLOCK_DURATION:
                duration = int(self._leaf(bytes(body), child, base))
        if block_body is None:
            raise FormatError(f"BlockGroup at byte {hdr.offset} has no Block")
        return Block.parse(block_body, block_base), keyframe, duration

    def _payload(self, track: _Track, frame: bytes, duration: int | None) -> bytes:
        if track.little_endian_pcm:
            return swap_endian(frame, track.meta.size)
        if track.meta.codec == "subtitle":
            return self._cue(track, frame, duration)
        return frame

    def _cue(self, track: _Track, frame: bytes, duration: int | None) -> bytes:
        """A subtitle payload as the model wants it: the cue duration in ms (from
        BlockDuration, else the track's DefaultDuration) as 4 bytes, then the text."""
        if duration is not None:
            ms = duration * self.timestamp_scale // 1_000_000
        else:
            ms = track.default_duration // 1_000_000
        return struct.pack(">I", min(ms, 0xFFFFFFFF)) + frame

    def _packets(
        self, block: Block, keyframe: bool, hdr: ElementHeader, duration: int | None = None
    ) -> None:
        track = self._tracks.get(block.track)
        if track is None:
            if block.track not in self.unsupported:
                raise FormatError(f"block at byte {hdr.offset} for undeclared track {block.track}")
            return
        if track.meta.type != "video":
            keyframe = True
        ns = (self._cluster_ts + block.timestamp) * self.timestamp_scale
        size = hdr.header_len + (hdr.size or 0)
        pending = track.pending
        for i, frame in enumerate(block.frames):
            pts = round((ns + i * track.default_duration) / 1e6) - track.delay_ms
            frame = self._payload(track, frame, duration)
            if not track.depth:  # no reordering: dts = pts, nothing held back
                self._out.append(Packet(track.meta.id, pts, 0, keyframe, frame))
                self.positions.append(
                    BlockPos(track.meta.id, pts, 0, keyframe, hdr.offset, size, i)
                )
                continue
            pending.append((pts, keyframe, frame, hdr.offset, size, i))
            heapq.heappush(track.heap, pts)
            if track.delay is None and len(pending) < PROBE_FRAMES:
                continue
            while len(pending) > track.depth:
                self._emit(track)

    def _emit(self, track: _Track) -> None:
        # Matroska stores presentation times only. Decode times are rebuilt by sorting:
        # the n-th frame in decode order decodes at the n-th smallest presentation time
        # (looked up in a window of ``depth`` frames, enough for x264/x265 B-pyramids),
        # minus a fixed delay chosen from the first PROBE_FRAMES frames (encoders such as
        # x265 may start without B-frames) so that no frame decodes after it is shown.
        # That keeps dts monotonic and pts = dts + offset with offset >= 0 whenever the
        # stream's reordering fits the window. Like ffmpeg, the first dts of a B-frame
        # stream may therefore lie before the first pts (even below zero).
        if track.delay is None:
            order = [item[0] for item in track.pending]
            track.delay = max(0, *(a - b for a, b in zip(sorted(order), order, strict=True)))
        pts, keyframe, data, pos, size, lace = track.pending.popleft()
        candidate = min(heapq.heappop(track.heap) - track.delay, pts)
        last = track.last_dts
        dts = candidate if last is None or candidate > last else last
        track.last_dts = dts
        self._out.append(Packet(track.meta.id, dts, pts - dts, keyframe, data))
        self.positions.append(BlockPos(track.meta.id, dts, pts - dts, keyframe, pos, size, lace))

    def _flush(self, track: _Track) -> None:
        while track.pending:
            self._emit(track)
