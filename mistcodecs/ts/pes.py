"""PES packets: header parse/build, 33-bit PTS/DTS and their wrap-around.

A PES packet starts in a TS packet with the payload-unit-start flag and runs until
its length is satisfied, or (length 0, usual for video) until the next start.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mistcodecs.errors import FormatError, Truncated

TS_MASK = (1 << 33) - 1
TS_WRAP = 1 << 33
STREAM_ID_VIDEO = 0xE0
STREAM_ID_AUDIO = 0xC0
STREAM_ID_PRIVATE1 = 0xBD
# stream ids without the optional header (13818-1 table 2-21 exceptions)
_NO_HEADER = frozenset({0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xF2, 0xF8, 0xFF})
_TS_FIELD = struct.Struct(">BHH")


def decode_ts(data: bytes | memoryview, pos: int) -> int:
    a, b, c = _TS_FIELD.unpack_from(data, pos)
    return ((a >> 1) & 7) << 30 | (b >> 1) << 15 | (c >> 1)


def encode_ts(prefix: int, value: int) -> bytes:
    value &= TS_MASK
    return _TS_FIELD.pack(
        (prefix << 4) | ((value >> 29) & 0x0E) | 1,
        ((value >> 14) & 0xFFFE) | 1,
        ((value << 1) & 0xFFFE) | 1,
    )


@dataclass(slots=True)
class PesHeader:
    stream_id: int
    length: int  # PES_packet_length: bytes after the length field, 0 = unbounded
    header_size: int  # bytes before the payload
    pts: int | None = None
    dts: int | None = None
    data_alignment: bool = False

    @classmethod
    def parse(cls, data: bytes | memoryview, where: str = "PES") -> PesHeader:
        if len(data) < 6:
            raise Truncated(f"{where}: PES header truncated ({len(data)} bytes)")
        if data[0] != 0 or data[1] != 0 or data[2] != 1:
            raise FormatError(f"{where}: no PES start code ({bytes(data[:3]).hex()})")
        sid = data[3]
        length = (data[4] << 8) | data[5]
        if sid in _NO_HEADER:
            return cls(sid, length, 6)
        if len(data) < 9:
            raise Truncated(f"{where}: PES optional header truncated")
        if data[6] & 0xC0 != 0x80:
            raise FormatError(f"{where}: PES header marker bits wrong (0x{data[6]:02x})")
        flags = data[7]
        size = 9 + data[8]
        if len(data) < size:
            raise Truncated(f"{where}: PES header of {size} bytes truncated at {len(data)}")
        hdr = cls(sid, length, size, data_alignment=bool(data[6] & 0x04))
        kind = flags >> 6
        if kind & 2:
            if size < 14:
                raise FormatError(f"{where}: PES header too short for its PTS")
            hdr.pts = decode_ts(data, 9)
            if kind == 3:
                if size < 19:
                    raise FormatError(f"{where}: PES header too short for its DTS")
                hdr.dts = decode_ts(data, 14)
        return hdr

    def __bytes__(self) -> bytes:
        """The header as written (PES_packet_length taken from ``length`` as is)."""
        raw = bytearray(build_pes_header(self.stream_id, 0, self.pts, self.dts, bounded=False))
        raw[4:6] = self.length.to_bytes(2, "big")
        if not self.data_alignment:
            raw[6] &= ~0x04
        return bytes(raw)


def build_pes_header(
    stream_id: int,
    payload_len: int,
    pts: int | None,
    dts: int | None = None,
    *,
    bounded: bool = True,
) -> bytes:
    """PES header for ``payload_len`` bytes; ``bounded=False`` writes length 0 (video)."""
    opt = b""
    flags = 0
    if pts is not None:
        if dts is not None and (dts & TS_MASK) != (pts & TS_MASK):
            flags = 0xC0
            opt = encode_ts(3, pts) + encode_ts(1, dts)
        else:
            flags = 0x80
            opt = encode_ts(2, pts)
    length = 3 + len(opt) + payload_len
    if not bounded or length > 0xFFFF:
        length = 0
    return (
        b"\x00\x00\x01"
        + bytes((stream_id, length >> 8, length & 0xFF, 0x84, flags, len(opt)))
        + opt
    )


class Unwrapper:
    """Turns 33-bit timestamps into a monotonic-ish 64-bit line: each value is placed
    in the wrap period nearest to the previous one, so jumps both ways are safe."""

    def __init__(self) -> None:
        self.last: int | None = None

    def __call__(self, value: int) -> int:
        if self.last is None:
            self.last = value
            return value
        base = self.last - (self.last & TS_MASK)
        cand = base + value
        if cand - self.last > TS_WRAP // 2:
            cand -= TS_WRAP
        elif self.last - cand > TS_WRAP // 2:
            cand += TS_WRAP
        self.last = cand
        return cand
