"""Live Matroska/WebM muxer: EBML header, a Segment and Clusters of unknown size.

The output is progressive: ``header()`` once, then ``packet()`` per frame, each
returning the bytes to send, so one muxer serves every viewer of a live stream. Blocks
are SimpleBlocks stamped with presentation time (Matroska's convention). A Cluster is
started on every video keyframe, after ~5 s, and whenever a block's timestamp would not
fit the 16-bit offset from its Cluster. No Cues are written (live-style file).
"""

from __future__ import annotations

import struct

from common.errors import UsageError
from mistcodecs.ebml import schema as s
from mistcodecs.ebml.block import KEYFRAME, Block
from mistcodecs.ebml.element import (
    element,
    float_element,
    str_element,
    uint_element,
    unknown_size_master,
)
from mistcodecs.errors import FormatError
from shm.model import Packet, TrackMeta

CODEC_IDS: dict[str, str] = {
    "H264": "V_MPEG4/ISO/AVC",
    "HEVC": "V_MPEGH/ISO/HEVC",
    "AV1": "V_AV1",
    "VP8": "V_VP8",
    "VP9": "V_VP9",
    "MPEG2": "V_MPEG2",
    "AAC": "A_AAC",
    "opus": "A_OPUS",
    "vorbis": "A_VORBIS",
    "MP3": "A_MPEG/L3",
    "AC3": "A_AC3",
    "EAC3": "A_EAC3",
    "FLAC": "A_FLAC",
    "PCM": "A_PCM/INT/BIG",
    "subtitle": "S_TEXT/UTF8",
}
WEBM_CODECS = frozenset({"VP8", "VP9", "AV1", "opus", "vorbis"})
CLUSTER_MS = 5000
_TRACK_TYPES = {"video": 1, "audio": 2, "meta": 0x11}
_WRITER = "mistpy"


def supports(codec: str, *, webm: bool) -> bool:
    """Whether ``codec`` can be muxed into WebM (``webm``) or Matroska."""
    return codec in (WEBM_CODECS if webm else CODEC_IDS)


class EbmlMuxer:
    """Sans-IO Matroska/WebM writer for a fixed set of tracks."""

    def __init__(
        self, tracks: list[TrackMeta], *, webm: bool, duration_ms: int | None = None
    ) -> None:
        """``duration_ms`` (VoD) is written to Info so players show a length; live
        output leaves it out."""
        self.duration_ms = duration_ms
        bad = [t.codec for t in tracks if not supports(t.codec, webm=webm)]
        if bad:
            raise UsageError(f"codecs {bad} cannot be muxed into {'WebM' if webm else 'Matroska'}")
        self.tracks = list(tracks)
        self.webm = webm
        self._numbers = {t.id: i + 1 for i, t in enumerate(self.tracks)}
        self._by_id = {t.id: t for t in self.tracks}
        self._has_video = any(t.type == "video" for t in self.tracks)
        self._cluster_ts: int | None = None
        self._video_in_cluster = False
        # Opus: block times include the pre-skip written as CodecDelay (demuxers subtract it)
        self._delay_ms = {
            t.id: (self._pre_skip(t) * 1000 + 24000) // 48000
            for t in self.tracks
            if t.codec == "opus"
        }

    @staticmethod
    def _pre_skip(t: TrackMeta) -> int:
        return int.from_bytes(bytes(t.init[10:12]), "little") if len(t.init) >= 12 else 312

    def header(self) -> bytes:
        doc = "webm" if self.webm else "matroska"
        ebml = b"".join(
            (
                uint_element(0x4286, 1),
                uint_element(0x42F7, 1),
                uint_element(0x42F2, 4),
                uint_element(0x42F3, 8),
                str_element(0x4282, doc),
                uint_element(0x4287, 4),
                uint_element(0x4285, 2),
            )
        )
        info_body = uint_element(s.TIMESTAMP_SCALE, 1_000_000)
        if self.duration_ms is not None:
            info_body += float_element(s.DURATION, float(self.duration_ms))
        info = element(
            s.INFO, info_body + str_element(0x4D80, _WRITER) + str_element(0x5741, _WRITER)
        )
        entries = b"".join(self._track_entry(t) for t in self.tracks)
        return (
            element(s.EBML, ebml)
            + unknown_size_master(s.SEGMENT)
            + info
            + element(s.TRACKS, entries)
        )

    def _track_entry(self, t: TrackMeta) -> bytes:
        n = self._numbers[t.id]
        body = [
            uint_element(s.TRACK_NUMBER, n),
            uint_element(0x73C5, n),
            uint_element(s.TRACK_TYPE, _TRACK_TYPES.get(t.type, 0x11)),
            uint_element(0x9C, 0),  # FlagLacing: we never lace
            str_element(s.CODEC_ID, CODEC_IDS[t.codec]),
        ]
        if t.lang:
            body.append(str_element(s.LANGUAGE, t.lang))
        if t.init and t.codec not in ("VP8", "VP9", "PCM", "subtitle", "MP3", "AC3"):
            body.append(element(s.CODEC_PRIVATE, bytes(t.init)))
        if t.type == "video":
            if t.fpks:
                body.append(uint_element(s.DEFAULT_DURATION, round(1e12 / t.fpks)))
            body.append(
                element(
                    s.VIDEO,
                    uint_element(s.PIXEL_WIDTH, t.width) + uint_element(s.PIXEL_HEIGHT, t.height),
                )
            )
        elif t.type == "audio":
            audio = float_element(s.SAMPLING_FREQUENCY, float(t.rate or 8000)) + uint_element(
                s.CHANNELS, t.channels or 1
            )
            if t.codec == "PCM" or t.size:
                audio += uint_element(s.BIT_DEPTH, t.size or 16)
            body.append(element(s.AUDIO, audio))
            if t.codec == "opus":
                body.append(uint_element(s.CODEC_DELAY, self._pre_skip(t) * 1_000_000_000 // 48000))
                body.append(uint_element(s.SEEK_PRE_ROLL, 80_000_000))
        return element(s.TRACK_ENTRY, b"".join(body))

    def packet(self, p: Packet) -> bytes:
        """Bytes for one packet (a new Cluster first when one is due)."""
        track = self._by_id.get(p.track)
        if track is None:
            raise UsageError(f"packet for track {p.track}, which this muxer was not given")
        pts = max(0, p.pts + self._delay_ms.get(p.track, 0))
        out = b""
        is_video = track.type == "video"
        if self._cluster_ts is None:
            start = True
        else:
            rel = pts - self._cluster_ts
            # a keyframe opens a Cluster unless this Cluster has no video yet (so that
            # audio stamped just before the keyframe does not make a Cluster of its own)
            key_cut = is_video and p.keyframe and self._video_in_cluster
            start = key_cut or rel >= CLUSTER_MS or not -32768 <= rel <= 32767
        if start or self._cluster_ts is None:
            out += unknown_size_master(s.CLUSTER) + uint_element(s.TIMESTAMP, pts)
            self._cluster_ts = pts
            self._video_in_cluster = False
        self._video_in_cluster |= is_video
        rel = pts - self._cluster_ts
        flags = KEYFRAME if (p.keyframe or track.type != "video") else 0
        if track.codec == "subtitle":  # the cue's duration goes in a BlockGroup
            if len(p.data) < 4:
                raise FormatError(f"subtitle packet at {p.pts} ms is {len(p.data)} bytes, needs 4+")
            duration = struct.unpack_from(">I", p.data)[0]
            block = Block(self._numbers[p.track], rel, 0, [bytes(p.data[4:])])
            group = element(s.BLOCK, bytes(block)) + uint_element(s.BLOCK_DURATION, duration)
            return out + element(s.BLOCK_GROUP, group)
        block = Block(self._numbers[p.track], rel, flags, [bytes(p.data)])
        return out + element(s.SIMPLE_BLOCK, bytes(block))

    def end(self) -> bytes:
        """Nothing to close: unknown-size masters end with the stream."""
        return b""
