"""The media model every input, output and analyser agrees on.

Times are integer milliseconds, as MistServer's DTSC: ``dts`` is the decode time,
``offset`` the composition offset (pts = dts + offset). Codec names and the form of
``init`` (codec private data) and of packet payloads are fixed here so that any
input can feed any output:

========  =====================================  =========================================
codec     init                                   payload
========  =====================================  =========================================
H264      AVCDecoderConfigurationRecord (avcC)   AVCC: 4-byte big-endian NAL lengths
HEVC      HEVCDecoderConfigurationRecord (hvcC)  HVCC: 4-byte big-endian NAL lengths
AV1       AV1CodecConfigurationRecord (av1C)     low-overhead OBU stream (as in MP4)
VP8/VP9   empty (or vpcC body for VP9)           one frame
AAC       AudioSpecificConfig                    raw AAC frame (no ADTS header)
MP3       empty                                  one MPEG audio frame (with header)
opus      OpusHead                               one Opus packet
vorbis    Xiph-laced id/comment/setup headers    one Vorbis packet
AC3       empty                                  one AC-3 frame
FLAC      fLaC + STREAMINFO block                one FLAC frame
PCM       empty; ``size`` bits, big-endian       interleaved signed samples
subtitle  empty                                  4-byte BE cue duration (ms) + UTF-8 text
========  =====================================  =========================================

Track ``type`` is ``video``, ``audio`` or ``meta`` (subtitles, JSON).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

VIDEO_CODECS = frozenset({"H264", "HEVC", "AV1", "VP8", "VP9", "MPEG2", "JPEG"})
AUDIO_CODECS = frozenset(
    {"AAC", "MP3", "opus", "vorbis", "AC3", "EAC3", "FLAC", "PCM", "ALAW", "ULAW"}
)
META_CODECS = frozenset({"subtitle", "JSON"})


class StreamState(enum.IntEnum):
    """Stream status byte, as MistServer's ``/MstSTATE<stream>`` (reference 6.2)."""

    OFF = 0
    INIT = 1
    BOOT = 2
    WAIT = 3
    READY = 4
    SHUTDOWN = 5
    INVALID = 255


@dataclass
class TrackMeta:
    """One track's description as it lives on the metadata page."""

    id: int
    type: str
    codec: str
    init: bytes = b""
    width: int = 0
    height: int = 0
    fpks: int = 0  # frames per 1000 s (MistServer's unit); 0 when unknown
    rate: int = 0  # audio sample rate
    channels: int = 0
    size: int = 0  # bits per sample (audio)
    bps: int = 0  # average bytes per second
    maxbps: int = 0
    lang: str = ""
    firstms: int = 0
    lastms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """A msgpack-friendly dict (bytes stay bytes)."""
        return asdict(self)

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> TrackMeta:
        known = {k: rec[k] for k in cls.__dataclass_fields__ if k in rec}
        return cls(**known)

    @property
    def fps(self) -> float:
        return self.fpks / 1000.0


@dataclass(slots=True)
class Packet:
    """One media frame. ``data`` may be a memoryview into shared memory: copy it
    (``bytes(p.data)``) if it must outlive the next read from the same reader."""

    track: int
    dts: int
    offset: int
    keyframe: bool
    data: bytes | memoryview

    @property
    def pts(self) -> int:
        return self.dts + self.offset
