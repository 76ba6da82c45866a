"""WAV (RIFF/WAVE) for PCM audio: a live-capable muxer and a streaming demuxer.

WAV stores little-endian samples (8-bit ones unsigned); the media model's PCM is
big-endian signed, so both directions convert. For live output the RIFF and data sizes
are unknown and written as their maximum (``0xFFFFFFFF``), which players treat as "read
until the end".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from common.errors import UsageError
from mistcodecs.errors import FormatError, Truncated
from shm.model import Packet, TrackMeta

FORMAT_PCM = 1
FORMAT_EXTENSIBLE = 0xFFFE
LIVE_SIZE = 0xFFFFFFFF
PACKET_FRAMES = 1024  # sample frames per demuxed packet
_FMT = struct.Struct("<HHIIHH")


def swap_endian(data: bytes, bits: int) -> bytes:
    """Little <-> big endian for signed samples; 8-bit flips between unsigned and signed."""
    if bits == 8:
        return bytes(b ^ 0x80 for b in data)
    width = bits // 8
    usable = len(data) - len(data) % width
    out = bytearray(usable)
    for i in range(width):
        out[i::width] = data[width - 1 - i : usable : width]
    return bytes(out)


@dataclass(frozen=True, slots=True)
class WavFormat:
    """The ``fmt `` chunk fields we use."""

    tag: int
    channels: int
    rate: int
    bits: int

    @property
    def block_align(self) -> int:
        return self.channels * self.bits // 8

    @classmethod
    def parse(cls, body: bytes, where: int = 0) -> WavFormat:
        if len(body) < _FMT.size:
            raise FormatError(f"WAV fmt chunk of {len(body)} bytes at byte {where}")
        tag, channels, rate, _byte_rate, _align, bits = _FMT.unpack_from(body)
        if tag == FORMAT_EXTENSIBLE and len(body) >= 26:
            tag = int.from_bytes(body[24:26], "little")  # first two bytes of the subformat GUID
        if tag != FORMAT_PCM:
            raise FormatError(f"WAV format tag {tag} at byte {where} is not PCM")
        if channels == 0 or rate == 0 or bits not in (8, 16, 24, 32):
            raise FormatError(
                f"WAV fmt with {channels} channels, {rate} Hz, {bits} bits at byte {where}"
            )
        return cls(tag, channels, rate, bits)

    def __bytes__(self) -> bytes:
        body = _FMT.pack(
            self.tag,
            self.channels,
            self.rate,
            self.rate * self.block_align,
            self.block_align,
            self.bits,
        )
        return b"fmt " + struct.pack("<I", len(body)) + body


class WavMuxer:
    """RIFF/WAVE writer for one PCM track. ``total_bytes`` (of sample data) makes exact
    sizes; without it the sizes are the live maximum."""

    def __init__(self, tracks: list[TrackMeta], total_bytes: int | None = None) -> None:
        pcm = [t for t in tracks if t.codec == "PCM"]
        if not pcm:
            raise UsageError("WAV output needs a PCM track")
        self.track = pcm[0]
        self.format = WavFormat(
            FORMAT_PCM, self.track.channels or 1, self.track.rate or 8000, self.track.size or 16
        )
        self.total_bytes = total_bytes

    def header(self) -> bytes:
        fmt = bytes(self.format)
        if self.total_bytes is None:
            riff_size = data_size = LIVE_SIZE
        else:
            data_size = self.total_bytes
            riff_size = 4 + len(fmt) + 8 + data_size
        return (
            b"RIFF"
            + struct.pack("<I", riff_size)
            + b"WAVE"
            + fmt
            + b"data"
            + struct.pack("<I", data_size)
        )

    def packet(self, p: Packet) -> bytes:
        if p.track != self.track.id:
            return b""
        return swap_endian(bytes(p.data), self.format.bits)

    def end(self) -> bytes:
        return b""


class WavDemuxer:
    """Streaming RIFF/WAVE reader (PCM only): one track, packets of ``PACKET_FRAMES``."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # absolute offset of _buf[0]
        self._header_done = False
        self._format: WavFormat | None = None
        self._data_left: int | None = None  # None: until the end
        self._frames = 0
        self._finished = False

    def feed(self, data: bytes) -> list[TrackMeta | Packet]:
        self._buf += data
        out: list[TrackMeta | Packet] = []
        if not self._header_done and not self._parse_header(out):
            return out
        self._samples(out, final=False)
        return out

    def end(self) -> list[TrackMeta | Packet]:
        out: list[TrackMeta | Packet] = []
        if not self._header_done:
            raise Truncated(f"WAV header truncated at byte {self._pos + len(self._buf)}")
        self._samples(out, final=True)
        if self._data_left:
            raise Truncated(f"WAV data chunk ends {self._data_left} bytes early")
        return out

    def _parse_header(self, out: list[TrackMeta | Packet]) -> bool:
        buf = self._buf
        if len(buf) < 12:
            return False
        if buf[0:4] not in (b"RIFF", b"RF64") or buf[8:12] != b"WAVE":
            raise FormatError("not a RIFF/WAVE file at byte 0")
        pos = 12
        while True:
            if len(buf) - pos < 8:
                return False
            cid = bytes(buf[pos : pos + 4])
            (size,) = struct.unpack_from("<I", buf, pos + 4)
            if cid == b"data":
                if self._format is None:
                    raise FormatError(f"WAV data chunk before fmt at byte {pos}")
                self._data_left = None if size in (LIVE_SIZE, 0) else size
                del buf[: pos + 8]
                self._pos = pos + 8
                self._header_done = True
                fmt = self._format
                out.append(
                    TrackMeta(
                        1, "audio", "PCM", rate=fmt.rate, channels=fmt.channels, size=fmt.bits
                    )
                )
                return True
            if size > 1 << 20:
                raise FormatError(f"WAV {cid!r} chunk of {size} bytes at byte {pos}")
            if len(buf) - pos < 8 + size + (size & 1):
                return False
            if cid == b"fmt ":
                self._format = WavFormat.parse(bytes(buf[pos + 8 : pos + 8 + size]), pos)
            pos += 8 + size + (size & 1)

    def _samples(self, out: list[TrackMeta | Packet], final: bool) -> None:
        fmt = self._format
        assert fmt is not None
        step = PACKET_FRAMES * fmt.block_align
        while not self._finished:
            avail = (
                len(self._buf) if self._data_left is None else min(len(self._buf), self._data_left)
            )
            take = min(step, avail - avail % fmt.block_align)
            if take < step and not (
                final or (self._data_left is not None and take == self._data_left)
            ):
                return
            if take <= 0:
                return
            chunk = bytes(self._buf[:take])
            del self._buf[:take]
            self._pos += take
            if self._data_left is not None:
                self._data_left -= take
                self._finished = self._data_left == 0
            out.append(
                Packet(1, self._frames * 1000 // fmt.rate, 0, True, swap_endian(chunk, fmt.bits))
            )
            self._frames += take // fmt.block_align
