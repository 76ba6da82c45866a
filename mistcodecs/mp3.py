"""MPEG-1/2/2.5 audio (MP1/MP2/MP3) framing: header parse, a raw-stream splitter, a muxer.

A raw ``.mp3`` is an optional ID3v2 tag followed by frames, each starting with an 11-bit
sync word; the header alone gives the frame length. A leading Xing/Info/VBRI frame is
metadata (it decodes to silence) and is skipped like ffmpeg does; a trailing ID3v1
``TAG`` block ends the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import UsageError
from mistcodecs.errors import FormatError, Truncated
from shm.model import Packet, TrackMeta

_BITRATES = {  # kbit/s by (version class, layer); index 0 = free format, 15 = bad
    (1, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_BITRATES[(2, 3)] = _BITRATES[(2, 2)]
_RATES = {1.0: (44100, 48000, 32000), 2.0: (22050, 24000, 16000), 2.5: (11025, 12000, 8000)}
_VERSIONS = {0: 2.5, 2: 2.0, 3: 1.0}  # 1 is reserved


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The 4-byte MPEG audio frame header, decoded."""

    raw: int
    version: float  # 1, 2 or 2.5
    layer: int  # 1..3
    bitrate: int  # kbit/s
    rate: int
    channels: int
    padding: bool

    @classmethod
    def parse(
        cls, buf: bytes | bytearray | memoryview, pos: int = 0, where: int = 0
    ) -> FrameHeader:
        if pos + 4 > len(buf):
            raise Truncated(f"MPEG audio header truncated at byte {where + pos}")
        raw = int.from_bytes(buf[pos : pos + 4], "big")
        if raw >> 21 != 0x7FF:
            raise FormatError(f"no MPEG audio sync word at byte {where + pos}")
        vbits, lbits = (raw >> 19) & 3, (raw >> 17) & 3
        bidx, ridx = (raw >> 12) & 15, (raw >> 10) & 3
        if vbits == 1 or lbits == 0 or bidx in (0, 15) or ridx == 3:
            raise FormatError(f"invalid MPEG audio header 0x{raw:08x} at byte {where + pos}")
        version = _VERSIONS[vbits]
        layer = 4 - lbits
        bitrate = _BITRATES[(1 if version == 1.0 else 2, layer)][bidx]
        channels = 1 if (raw >> 6) & 3 == 3 else 2
        return cls(
            raw, version, layer, bitrate, _RATES[version][ridx], channels, bool((raw >> 9) & 1)
        )

    @property
    def samples(self) -> int:
        if self.layer == 1:
            return 384
        return 1152 if self.layer == 2 or self.version == 1.0 else 576

    @property
    def frame_len(self) -> int:
        if self.layer == 1:
            return (12000 * self.bitrate // self.rate + self.padding) * 4
        return self.samples // 8 * 1000 * self.bitrate // self.rate + self.padding

    def __bytes__(self) -> bytes:
        return self.raw.to_bytes(4, "big")


def _is_info_frame(frame: bytes, hdr: FrameHeader) -> bool:
    side = (
        (32 if hdr.channels == 2 else 17)
        if hdr.version == 1.0
        else (17 if hdr.channels == 2 else 9)
    )
    tag = frame[4 + side : 8 + side]
    return tag in (b"Xing", b"Info") or frame[36:40] == b"VBRI"


class Mp3Demuxer:
    """Sans-IO splitter for raw MPEG audio streams: one track, one packet per frame."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0
        self._track: TrackMeta | None = None
        self._samples = 0
        self._first = True
        self._done = False
        self.skipped = 0  # bytes of junk resynchronised over

    def feed(self, data: bytes) -> list[TrackMeta | Packet]:
        self._buf += data
        out: list[TrackMeta | Packet] = []
        buf = self._buf
        pos = 0
        while not self._done:
            if self._first and buf[pos : pos + 3] == b"ID3":
                if len(buf) - pos < 10:
                    break
                size = 10 + sum((buf[pos + 6 + i] & 0x7F) << (7 * (3 - i)) for i in range(4))
                size += 10 if buf[pos + 5] & 0x10 else 0
                if len(buf) - pos < size:
                    break
                pos += size
                continue
            if buf[pos : pos + 3] == b"TAG" and self._track is not None:
                self._done = True
                break
            if len(buf) - pos < 4:
                break
            try:
                hdr = FrameHeader.parse(buf, pos, self._base)
            except FormatError:
                pos += 1
                self.skipped += 1
                continue
            end = pos + hdr.frame_len
            if end > len(buf):
                break
            frame = bytes(buf[pos:end])
            pos = end
            if self._first:
                self._first = False
                if _is_info_frame(frame, hdr):
                    continue
            if self._track is None:
                self._track = TrackMeta(
                    1, "audio", "MP3", rate=hdr.rate, channels=hdr.channels, size=16
                )
                out.append(self._track)
            rate = self._track.rate
            out.append(Packet(1, self._samples * 1000 // rate, 0, True, frame))
            self._samples += hdr.samples * rate // hdr.rate
        del buf[:pos]
        self._base += pos
        return out

    def end(self) -> list[TrackMeta | Packet]:
        if self._track is None:
            raise FormatError("no MPEG audio frames found")
        if len(self._buf) > 128 and not self._done:
            raise Truncated(f"MPEG audio frame truncated at byte {self._base}")
        return []


class Mp3Muxer:
    """Raw MP3 output: the frames themselves, nothing around them."""

    def __init__(self, tracks: list[TrackMeta]) -> None:
        audio = [t for t in tracks if t.codec == "MP3"]
        if not audio:
            raise UsageError("MP3 output needs an MP3 track")
        self.track = audio[0]

    def header(self) -> bytes:
        return b""

    def packet(self, p: Packet) -> bytes:
        return bytes(p.data) if p.track == self.track.id else b""

    def end(self) -> bytes:
        return b""
