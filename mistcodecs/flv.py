"""FLV: file header and tags, legacy and enhanced (E-RTMP/FLV FourCC) codec headers.

Layers, each usable alone:

* :class:`FlvHeader` and :class:`FlvTag` are the binary records (``parse``/``__bytes__``);
  a tag knows the byte ``offset`` it was read from, so a VoD input can index once and
  reload by position. :func:`iter_tags` walks a whole buffer.
* :class:`FlvTagReader` is the incremental (sans-IO) tag splitter.
* :class:`FlvTagDecoder` turns tag bodies into the media model (``TrackMeta``/``Packet``);
  the RTMP layer uses it directly, since RTMP audio/video messages are FLV tag bodies.
* :class:`FlvDemuxer` = reader + decoder, with ``feed``/``end`` as every demuxer.
* :class:`FlvMuxer` writes the header, ``onMetaData``, sequence headers and tags; its
  ``*_body`` methods give bare tag bodies for RTMP.

Track ids are fixed: 1 = video, 2 = audio (FLV carries at most one of each, outside the
rarely used enhanced multitrack mode, which is skipped).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mistcodecs import amf, h264, hevc
from mistcodecs.errors import FormatError, Truncated
from shm.model import Packet, TrackMeta

TAG_AUDIO = 8
TAG_VIDEO = 9
TAG_SCRIPT = 18
TAG_TYPES = {TAG_AUDIO: "audio", TAG_VIDEO: "video", TAG_SCRIPT: "script"}
VIDEO_TRACK = 1
AUDIO_TRACK = 2

_HEADER = struct.Struct(">3sBBI")
_TAG_HEAD = struct.Struct(">IIHB")  # (type<<24 | size), (ts24<<8 | ts_ext), stream id (3 bytes)
_U32 = struct.Struct(">I")
_U24 = struct.Struct(">I")  # packed into 4 bytes then sliced

# Enhanced RTMP FourCCs <-> model codec names
VIDEO_FOURCC = {b"avc1": "H264", b"hvc1": "HEVC", b"av01": "AV1", b"vp09": "VP9", b"vp08": "VP8"}
AUDIO_FOURCC = {
    b"Opus": "opus",
    b"mp4a": "AAC",
    b".mp3": "MP3",
    b"fLaC": "FLAC",
    b"ac-3": "AC3",
    b"ec-3": "EAC3",
}
FOURCC_OF_VIDEO = {v: k for k, v in VIDEO_FOURCC.items()}
FOURCC_OF_AUDIO = {v: k for k, v in AUDIO_FOURCC.items()}
LEGACY_VIDEO = {7: "H264", 12: "HEVC", 2: "H263", 4: "VP6", 5: "VP6A", 3: "SCREEN"}
LEGACY_AUDIO = {
    10: "AAC",
    2: "MP3",
    14: "MP3",
    0: "PCM",
    3: "PCM",
    7: "ALAW",
    8: "ULAW",
    11: "speex",
}
LEGACY_RATES = (5512, 11025, 22050, 44100)
AAC_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)

# Enhanced packet types
EX_SEQUENCE_START, EX_CODED_FRAMES, EX_SEQUENCE_END, EX_CODED_FRAMES_X, EX_METADATA = 0, 1, 2, 3, 4
EX_MULTITRACK = 6


def _si24(b: bytes | memoryview, pos: int) -> int:
    v = (b[pos] << 16) | (b[pos + 1] << 8) | b[pos + 2]
    return v - (1 << 24) if v & 0x800000 else v


def _pack_si24(v: int) -> bytes:
    return (v & 0xFFFFFF).to_bytes(3, "big")


@dataclass
class FlvHeader:
    """The 9-byte file header (``FLV``, version, audio/video flags, header size)."""

    has_audio: bool = True
    has_video: bool = True
    version: int = 1
    size: int = 9

    @classmethod
    def parse(cls, buf: bytes | memoryview, pos: int = 0) -> FlvHeader:
        if len(buf) - pos < 9:
            raise Truncated(f"FLV header truncated at byte {pos} ({len(buf) - pos} of 9 bytes)")
        sig, version, flags, size = _HEADER.unpack_from(buf, pos)
        if sig != b"FLV":
            raise FormatError(f"not an FLV file: signature {bytes(sig)!r} at byte {pos}")
        if size < 9 or size > 1024:
            raise FormatError(f"FLV header size {size} out of range")
        return cls(bool(flags & 4), bool(flags & 1), version, size)

    def __bytes__(self) -> bytes:
        flags = (4 if self.has_audio else 0) | (1 if self.has_video else 0)
        return _HEADER.pack(b"FLV", self.version, flags, 9) + b"\x00\x00\x00\x00"


@dataclass
class FlvTag:
    """One tag. ``offset`` is the byte position of its 11-byte header in the file;
    ``prev_size`` the PreviousTagSize after it (``None`` when not read)."""

    type: int
    timestamp: int
    body: bytes
    offset: int = 0
    stream_id: int = 0
    prev_size: int | None = None

    HEAD_SIZE = 11

    @property
    def size(self) -> int:
        """Bytes on disk including the header and the trailing PreviousTagSize."""
        return 15 + len(self.body)

    @property
    def prev_size_ok(self) -> bool:
        return self.prev_size is None or self.prev_size == 11 + len(self.body)

    @classmethod
    def parse(cls, buf: bytes | memoryview, pos: int = 0, base: int = 0) -> FlvTag:
        """Parse the tag at ``pos`` (and its PreviousTagSize); ``base`` is added to ``offset``."""
        if len(buf) - pos < 11:
            raise Truncated(f"FLV tag header truncated at byte {base + pos}")
        type_size, ts, sid_hi, sid_lo = _TAG_HEAD.unpack_from(buf, pos)
        tag_type = (type_size >> 24) & 0x1F  # bit 5 = filter (encrypted); bits 6-7 reserved
        size = type_size & 0xFFFFFF
        if tag_type not in TAG_TYPES:
            raise FormatError(f"unknown FLV tag type {tag_type} at byte {base + pos}")
        end = pos + 11 + size
        if len(buf) < end + 4:
            raise Truncated(f"FLV tag body truncated at byte {base + pos} (tag of {size} bytes)")
        timestamp = (ts >> 8) | ((ts & 0xFF) << 24)
        (prev,) = _U32.unpack_from(buf, end)
        return cls(
            tag_type,
            timestamp,
            bytes(buf[pos + 11 : end]),
            base + pos,
            (sid_hi << 8) | sid_lo,
            prev,
        )

    def __bytes__(self) -> bytes:
        return make_tag(self.type, self.timestamp, self.body)


def make_tag(tag_type: int, timestamp: int, *body: bytes | memoryview) -> bytes:
    """A complete tag (header, body parts, PreviousTagSize) in one join."""
    size = sum(len(b) for b in body)
    ts = timestamp & 0xFFFFFFFF
    head = _TAG_HEAD.pack((tag_type << 24) | size, ((ts & 0xFFFFFF) << 8) | (ts >> 24), 0, 0)
    return b"".join((head, *body, _U32.pack(size + 11)))


def iter_tags(buf: bytes | memoryview, pos: int | None = None) -> Iterator[FlvTag]:
    """All tags of a complete buffer, starting after the header unless ``pos`` is given.
    Raises :class:`Truncated` if the buffer ends inside a tag."""
    if pos is None:
        pos = FlvHeader.parse(buf).size + 4
    while pos < len(buf):
        tag = FlvTag.parse(buf, pos)
        yield tag
        pos += tag.size


class FlvTagReader:
    """Incremental splitter: ``feed(bytes) -> list[FlvHeader | FlvTag]``."""

    def __init__(self, expect_header: bool = True) -> None:
        self._buf = bytearray()
        self._pos = 0  # absolute file position of _buf[0]
        self._need_header = expect_header
        self.header: FlvHeader | None = None

    @property
    def position(self) -> int:
        return self._pos

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[FlvHeader | FlvTag]:
        self._buf += data
        out: list[FlvHeader | FlvTag] = []
        start = 0
        buf = self._buf
        if self._need_header:
            if len(buf) < 3 and b"FLV".startswith(bytes(buf)):
                return out
            if len(buf) >= 3 and buf[:3] != b"FLV":
                raise FormatError(f"not an FLV file: starts with {bytes(buf[:3])!r}")
            if len(buf) < 13:
                return out
            self.header = FlvHeader.parse(bytes(buf[:13]))
            out.append(self.header)
            start = self.header.size + 4
            self._need_header = False
        view = memoryview(buf)
        try:
            while len(buf) - start >= 15:
                if (buf[start] & 0x1F) not in TAG_TYPES:  # fail early: do not wait for a bogus size
                    raise FormatError(
                        f"unknown FLV tag type {buf[start] & 0x1F} at byte {self._pos + start}"
                    )
                size = int.from_bytes(buf[start + 1 : start + 4], "big")
                if len(buf) - start < 15 + size:
                    break
                tag = FlvTag.parse(view, start, self._pos)
                out.append(tag)
                start += tag.size
        finally:
            view.release()
        if start:
            del self._buf[:start]
            self._pos += start
        return out

    def end(self) -> None:
        if self._need_header and not self._buf:
            raise Truncated("FLV data is empty (truncated at byte 0)")
        if self._need_header or self._buf:
            raise Truncated(
                f"FLV data truncated at byte {self._pos} ({len(self._buf)} bytes of an incomplete tag)"
            )


@dataclass
class VideoBody:
    """Decoded video tag header. ``kind``: ``config``, ``frame``, ``end``, ``info`` or ``other``."""

    codec: str
    frame_type: int
    kind: str
    cts: int
    payload: memoryview
    enhanced: bool


@dataclass
class AudioBody:
    codec: str
    kind: str
    payload: memoryview
    rate: int
    size: int
    channels: int
    enhanced: bool


def parse_video_body(body: bytes | memoryview, where: int = 0) -> VideoBody:
    """Split a video tag body into its header fields and payload."""
    b = memoryview(body)
    if len(b) < 1:
        raise Truncated(f"empty FLV video tag at byte {where}")
    first = b[0]
    if first & 0x80:  # enhanced: [1 | frame type:3 | packet type:4] fourcc
        frame_type = (first >> 4) & 7
        ptype = first & 0x0F
        if len(b) < 5:
            raise Truncated(f"enhanced FLV video header truncated at byte {where}")
        fourcc = bytes(b[1:5])
        codec = VIDEO_FOURCC.get(fourcc, fourcc.decode("latin-1"))
        pos = 5
        cts = 0
        if ptype == EX_SEQUENCE_START:
            kind = "config"
        elif ptype == EX_CODED_FRAMES:
            kind = "frame"
            if codec in ("H264", "HEVC"):
                if len(b) < 8:
                    raise Truncated(
                        f"enhanced FLV video composition time truncated at byte {where}"
                    )
                cts = _si24(b, 5)
                pos = 8
        elif ptype == EX_CODED_FRAMES_X:
            kind = "frame"
        elif ptype == EX_SEQUENCE_END:
            kind = "end"
        elif ptype == EX_METADATA:
            kind = "info"
        else:
            kind = "other"
        if frame_type == 5:  # video info/command frame, no media
            kind = "info"
        return VideoBody(codec, frame_type, kind, cts, b[pos:], True)
    frame_type = first >> 4
    codec_id = first & 0x0F
    codec = LEGACY_VIDEO.get(codec_id, f"flv-video-{codec_id}")
    if codec_id in (7, 12):
        if len(b) < 5:
            raise Truncated(f"FLV {codec} video header truncated at byte {where}")
        ptype = b[1]
        kind = {0: "config", 1: "frame", 2: "end"}.get(ptype, "other")
        if frame_type == 5:
            kind = "info"
        return VideoBody(codec, frame_type, kind, _si24(b, 2), b[5:], False)
    return VideoBody(codec, frame_type, "info" if frame_type == 5 else "frame", 0, b[1:], False)


def parse_audio_body(body: bytes | memoryview, where: int = 0) -> AudioBody:
    b = memoryview(body)
    if len(b) < 1:
        raise Truncated(f"empty FLV audio tag at byte {where}")
    first = b[0]
    fmt = first >> 4
    if fmt == 9:  # enhanced: [9:4 | packet type:4] fourcc
        if len(b) < 5:
            raise Truncated(f"enhanced FLV audio header truncated at byte {where}")
        ptype = first & 0x0F
        fourcc = bytes(b[1:5])
        codec = AUDIO_FOURCC.get(fourcc, fourcc.decode("latin-1"))
        kind = {EX_SEQUENCE_START: "config", EX_CODED_FRAMES: "frame", EX_SEQUENCE_END: "end"}.get(
            ptype, "other"
        )
        return AudioBody(codec, kind, b[5:], 0, 0, 0, True)
    rate = LEGACY_RATES[(first >> 2) & 3]
    size = 16 if first & 2 else 8
    channels = 2 if first & 1 else 1
    codec = LEGACY_AUDIO.get(fmt, f"flv-audio-{fmt}")
    if fmt == 14:
        rate = 8000
    if fmt in (7, 8):
        rate = 8000
    if fmt == 10:
        if len(b) < 2:
            raise Truncated(f"FLV AAC audio header truncated at byte {where}")
        kind = "config" if b[1] == 0 else "frame"
        return AudioBody(codec, kind, b[2:], rate, size, channels, False)
    return AudioBody(codec, "frame", b[1:], rate, size, channels, False)


def parse_audio_specific_config(asc: bytes | memoryview) -> tuple[int, int, int]:
    """(object type, sample rate, channels) of an AAC AudioSpecificConfig."""
    if len(asc) < 2:
        raise Truncated("AAC AudioSpecificConfig shorter than 2 bytes")
    bits = int.from_bytes(bytes(asc[:5]).ljust(5, b"\0"), "big")
    aot = bits >> 35
    pos = 35
    if aot == 31:
        aot = 32 + ((bits >> (pos - 6)) & 0x3F)
        pos -= 6
    idx = (bits >> (pos - 4)) & 0xF
    pos -= 4
    if idx == 15:
        rate = (bits >> (pos - 24)) & 0xFFFFFF
        pos -= 24
    else:
        rate = AAC_RATES[idx] if idx < len(AAC_RATES) else 0
    channels = (bits >> (pos - 4)) & 0xF if pos >= 4 else 0
    return aot, rate, channels


class FlvTagDecoder:
    """Turns tag bodies into tracks and packets (track 1 video, 2 audio).

    A track is announced when its codec config arrives (or with the first frame for
    codecs without one); a changed config re-announces the track with the same id.
    Frames of codecs that need a config are dropped until it arrives."""

    NEEDS_INIT = frozenset({"H264", "HEVC", "AV1", "AAC"})

    def __init__(self) -> None:
        self.tracks: dict[int, TrackMeta] = {}
        self.metadata: dict[str, Any] = {}
        self.dropped = 0  # frames before their config

    def _announce(
        self, tid: int, kind: str, codec: str, init: bytes, **extra: Any
    ) -> list[TrackMeta | Packet]:
        old = self.tracks.get(tid)
        if old is not None and old.codec == codec and old.init == init:
            return []
        track = TrackMeta(tid, kind, codec, init)
        md = self.metadata
        if kind == "video":
            track.width = int(_num(md.get("width")))
            track.height = int(_num(md.get("height")))
            track.fpks = int(_num(md.get("framerate")) * 1000)
        else:
            track.rate = int(_num(md.get("audiosamplerate")))
            track.size = int(_num(md.get("audiosamplesize")))
            track.channels = int(_num(md.get("audiochannels"))) or (
                (2 if md.get("stereo") else 1) if "stereo" in md else 0
            )
        for k, v in extra.items():
            if v:
                setattr(track, k, v)
        if kind == "video" and init and not track.width:
            track.width, track.height, fps = _video_geometry(codec, init)
            track.fpks = track.fpks or int(fps * 1000)
        self.tracks[tid] = track
        return [track]

    def video(
        self, body: bytes | memoryview, timestamp: int, where: int = 0
    ) -> list[TrackMeta | Packet]:
        v = parse_video_body(body, where)
        if v.kind == "config":
            return self._announce(VIDEO_TRACK, "video", v.codec, bytes(v.payload))
        if v.kind != "frame" or not len(v.payload):
            return []
        out: list[TrackMeta | Packet] = []
        if VIDEO_TRACK not in self.tracks:
            if v.codec in self.NEEDS_INIT:
                self.dropped += 1
                return out
            out += self._announce(VIDEO_TRACK, "video", v.codec, b"")
        out.append(Packet(VIDEO_TRACK, timestamp, v.cts, v.frame_type == 1, bytes(v.payload)))
        return out

    def audio(
        self, body: bytes | memoryview, timestamp: int, where: int = 0
    ) -> list[TrackMeta | Packet]:
        a = parse_audio_body(body, where)
        if a.kind == "config":
            init = bytes(a.payload)
            if a.codec == "AAC":
                try:
                    _aot, rate, channels = parse_audio_specific_config(init)
                except FormatError:
                    rate, channels = 0, 0
                return self._announce(
                    AUDIO_TRACK, "audio", "AAC", init, rate=rate, channels=channels, size=16
                )
            if a.codec == "opus" and len(init) >= 12:
                return self._announce(
                    AUDIO_TRACK, "audio", "opus", init, rate=48000, channels=init[9], size=16
                )
            return self._announce(AUDIO_TRACK, "audio", a.codec, init)
        if a.kind != "frame" or not len(a.payload):
            return []
        out: list[TrackMeta | Packet] = []
        data = bytes(a.payload)
        if a.codec == "PCM":
            data = _pcm_to_be(data, a.size)
        if AUDIO_TRACK not in self.tracks:
            if a.codec in self.NEEDS_INIT:
                self.dropped += 1
                return out
            out += self._announce(
                AUDIO_TRACK, "audio", a.codec, b"", rate=a.rate, size=a.size, channels=a.channels
            )
        out.append(Packet(AUDIO_TRACK, timestamp, 0, True, data))
        return out

    def script(self, body: bytes | memoryview) -> list[Any]:
        """Decode a script tag; ``onMetaData`` (also behind ``@setDataFrame``) is kept."""
        values = amf.decode_all(body)
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            self.metadata = dict(values[1])
        return values

    def tag(self, tag: FlvTag) -> list[TrackMeta | Packet]:
        if tag.type == TAG_VIDEO:
            return self.video(tag.body, tag.timestamp, tag.offset)
        if tag.type == TAG_AUDIO:
            return self.audio(tag.body, tag.timestamp, tag.offset)
        try:
            self.script(tag.body)
        except FormatError as exc:
            raise FormatError(f"FLV script tag at byte {tag.offset}: {exc}") from exc
        return []


def _video_geometry(codec: str, init: bytes) -> tuple[int, int, float]:
    """Width, height and frame rate from the SPS in an avcC/hvcC, for streams without
    ``onMetaData``; zeros when the record cannot be read."""
    try:
        if codec == "H264":
            cfg = h264.parse_avcc(init)
            if cfg.sps:
                sps = h264.parse_sps(cfg.sps[0])
                return sps.width, sps.height, sps.fps
        elif codec == "HEVC":
            hcfg = hevc.parse_hvcc(init)
            if hcfg.arrays.get(hevc.NAL_SPS):
                hsps = hevc.parse_sps(hcfg.arrays[hevc.NAL_SPS][0])
                return hsps.width, hsps.height, 0.0
    except (FormatError, IndexError, ValueError):
        pass
    return 0, 0, 0.0


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def _pcm_to_be(data: bytes, size: int) -> bytes:
    """FLV PCM is little-endian (8-bit unsigned); the model wants big-endian signed."""
    if size == 16:
        swapped = bytearray(len(data) & ~1)
        swapped[0::2] = data[1 : len(swapped) : 2]
        swapped[1::2] = data[0 : len(swapped) : 2]
        return bytes(swapped)
    return bytes(b ^ 0x80 for b in data)


class FlvDemuxer:
    """FLV file/stream demuxer: ``feed(data)``/``end()`` -> ``list[TrackMeta | Packet]``."""

    def __init__(self, expect_header: bool = True) -> None:
        self.reader = FlvTagReader(expect_header)
        self.decoder = FlvTagDecoder()

    @property
    def metadata(self) -> dict[str, Any]:
        return self.decoder.metadata

    @property
    def header(self) -> FlvHeader | None:
        return self.reader.header

    def feed(self, data: bytes) -> list[TrackMeta | Packet]:
        out: list[TrackMeta | Packet] = []
        for item in self.reader.feed(data):
            if isinstance(item, FlvTag):
                out += self.decoder.tag(item)
        return out

    def end(self) -> list[TrackMeta | Packet]:
        self.reader.end()
        return []


# ---------------------------------------------------------------------------- muxing

_LEGACY_VIDEO_ID = {"H264": 7}
_ENHANCED_VIDEO = frozenset({"HEVC", "AV1", "VP9", "VP8"})
_ENHANCED_AUDIO = frozenset({"opus", "FLAC", "AC3", "EAC3"})


def _legacy_audio_byte(track: TrackMeta) -> int:
    if track.codec == "AAC":
        return 0xAF
    stereo = 1 if track.channels != 1 else 0
    if track.codec == "MP3":
        if track.rate == 8000:
            return (14 << 4) | 2 | stereo
        rate_bits = {5512: 0, 11025: 1, 22050: 2}.get(track.rate, 3)
        return (2 << 4) | (rate_bits << 2) | 2 | stereo
    if track.codec == "PCM":
        rate_bits = {5512: 0, 11025: 1, 22050: 2}.get(track.rate, 3)
        return (3 << 4) | (rate_bits << 2) | (2 if track.size != 8 else 0) | stereo
    if track.codec in ("ALAW", "ULAW"):
        return ((7 if track.codec == "ALAW" else 8) << 4) | 2 | stereo
    raise FormatError(f"FLV cannot carry {track.codec} audio")


class FlvMuxer:
    """Writes FLV from the media model. H264/AAC/MP3/PCM use legacy tags; HEVC, AV1,
    VP9 and Opus use enhanced (FourCC) tags. The first video and first audio track are
    muxed; packets of other tracks give ``b""``."""

    def __init__(self, tracks: Sequence[TrackMeta]) -> None:
        self.video = next((t for t in tracks if t.type == "video"), None)
        self.audio = next((t for t in tracks if t.type == "audio"), None)
        if (
            self.video is not None
            and self.video.codec not in _LEGACY_VIDEO_ID
            and self.video.codec not in _ENHANCED_VIDEO
        ):
            raise FormatError(f"FLV cannot carry {self.video.codec} video")
        if self.audio is not None and self.audio.codec not in _ENHANCED_AUDIO:
            _legacy_audio_byte(self.audio)  # raises for codecs FLV lacks
        self._vid = self.video.id if self.video else None
        self._aid = self.audio.id if self.audio else None
        self._fourcc_v = FOURCC_OF_VIDEO.get(self.video.codec, b"") if self.video else b""
        self._fourcc_a = FOURCC_OF_AUDIO.get(self.audio.codec, b"") if self.audio else b""
        # Pre-built header bytes for the hot path
        self._v_key = self._v_inter = b""
        self._v_cts = False  # H264/HEVC carry a composition offset after the header
        if self.video is not None:
            if self.video.codec == "H264":
                self._v_key, self._v_inter = b"\x17\x01", b"\x27\x01"
            else:
                self._v_key = bytes((0x80 | 0x10 | EX_CODED_FRAMES,)) + self._fourcc_v
                self._v_inter = bytes((0x80 | 0x20 | EX_CODED_FRAMES,)) + self._fourcc_v
            self._v_cts = self.video.codec in ("H264", "HEVC")
        self._a_prefix = b""
        if self.audio is not None:
            if self.audio.codec in _ENHANCED_AUDIO:
                self._a_prefix = bytes((0x90 | EX_CODED_FRAMES,)) + self._fourcc_a
            elif self.audio.codec == "AAC":
                self._a_prefix = b"\xaf\x01"
            else:
                self._a_prefix = bytes((_legacy_audio_byte(self.audio),))

    # -- bare tag bodies (for RTMP) --

    def metadata_body(self, duration: float = 0.0) -> bytes:
        md = amf.EcmaArray()
        md["duration"] = duration
        if self.video is not None:
            if self.video.width:
                md["width"] = float(self.video.width)
                md["height"] = float(self.video.height)
            if self.video.fpks:
                md["framerate"] = self.video.fpks / 1000
            md["videocodecid"] = float(
                _LEGACY_VIDEO_ID.get(self.video.codec) or int.from_bytes(self._fourcc_v, "big")
            )
        if self.audio is not None:
            if self.audio.rate:
                md["audiosamplerate"] = float(self.audio.rate)
            md["audiosamplesize"] = float(self.audio.size or 16)
            md["stereo"] = self.audio.channels != 1
            if self.audio.channels:
                md["audiochannels"] = float(self.audio.channels)
            md["audiocodecid"] = float(
                int.from_bytes(self._fourcc_a, "big")
                if self._fourcc_a and self.audio.codec in _ENHANCED_AUDIO
                else _legacy_audio_byte(self.audio) >> 4
            )
        md["encoder"] = "mistpy"
        return amf.encode_all("onMetaData", md)

    def sequence_bodies(self) -> list[tuple[int, bytes]]:
        """(tag type, body) of the codec configs to send before media."""
        out: list[tuple[int, bytes]] = []
        v = self.video
        if v is not None and v.init:
            if v.codec == "H264":
                out.append((TAG_VIDEO, b"\x17\x00\x00\x00\x00" + v.init))
            else:
                out.append(
                    (TAG_VIDEO, bytes((0x80 | 0x10 | EX_SEQUENCE_START,)) + self._fourcc_v + v.init)
                )
        a = self.audio
        if a is not None and a.init:
            if a.codec == "AAC":
                out.append((TAG_AUDIO, b"\xaf\x00" + a.init))
            elif a.codec in _ENHANCED_AUDIO:
                out.append(
                    (TAG_AUDIO, bytes((0x90 | EX_SEQUENCE_START,)) + self._fourcc_a + a.init)
                )
        return out

    def _video_head(self, p: Packet) -> bytes:
        head = self._v_key if p.keyframe else self._v_inter
        return head + _pack_si24(p.offset) if self._v_cts else head

    def _audio_data(self, p: Packet) -> bytes | memoryview:
        assert self.audio is not None
        return _pcm_from_be(bytes(p.data), self.audio.size) if self.audio.codec == "PCM" else p.data

    def body(self, p: Packet) -> tuple[int, bytes] | None:
        """(tag type, body) for one packet, or ``None`` if its track is not muxed."""
        made = self.body_parts(p)
        return None if made is None else (made[0], b"".join((made[1], made[2])))

    def body_parts(self, p: Packet) -> tuple[int, bytes, bytes | memoryview] | None:
        """(tag type, head, data): the body as its few header bytes and the payload,
        for writers that frame it further without joining it first (live RTMP)."""
        if p.track == self._vid:
            return TAG_VIDEO, self._video_head(p), p.data
        if p.track == self._aid:
            return TAG_AUDIO, self._a_prefix, self._audio_data(p)
        return None

    # -- file form --

    def header(self) -> bytes:
        parts = [bytes(FlvHeader(self.audio is not None, self.video is not None))]
        parts.append(make_tag(TAG_SCRIPT, 0, self.metadata_body()))
        for tag_type, body in self.sequence_bodies():
            parts.append(make_tag(tag_type, 0, body))
        return b"".join(parts)

    def packet(self, p: Packet) -> bytes:
        if p.track == self._vid:
            return make_tag(TAG_VIDEO, max(p.dts, 0), self._video_head(p), p.data)
        if p.track == self._aid:
            return make_tag(TAG_AUDIO, max(p.dts, 0), self._a_prefix, self._audio_data(p))
        return b""

    def end(self, timestamp: int = 0) -> bytes:
        """End-of-sequence tags for AVC/HEVC (players use them to flush)."""
        if self.video is None:
            return b""
        if self.video.codec == "H264":
            return make_tag(TAG_VIDEO, timestamp, b"\x17\x02\x00\x00\x00")
        return make_tag(
            TAG_VIDEO, timestamp, bytes((0x80 | 0x10 | EX_SEQUENCE_END,)) + self._fourcc_v
        )


def _pcm_from_be(data: bytes, size: int) -> bytes:
    return _pcm_to_be(data, size)  # the same swap / sign flip, both ways
