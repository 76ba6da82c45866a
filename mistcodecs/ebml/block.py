"""Matroska Block / SimpleBlock bodies: track number, relative timestamp, flags, lacing.

A block body is ``track (vint) | timestamp (int16, relative to the Cluster) | flags |
frames``. Several frames may be packed into one block ("lacing"): Xiph (sizes as runs
of 255), EBML (first size as a vint, the others as signed vint differences) or fixed
(equal sizes). The last frame's size is whatever remains.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from mistcodecs.ebml.element import encode_size, read_vint
from mistcodecs.errors import FormatError

KEYFRAME = 0x80
INVISIBLE = 0x08
LACING_MASK = 0x06
DISCARDABLE = 0x01

NO_LACING, XIPH_LACING, FIXED_LACING, EBML_LACING = 0x00, 0x02, 0x04, 0x06
_I16 = struct.Struct(">h")


@dataclass(slots=True)
class Block:
    """A parsed block body; ``frames`` are the laced frames (one without lacing)."""

    track: int
    timestamp: int  # relative to the Cluster timestamp, in TimestampScale units
    flags: int
    frames: list[bytes] = field(default_factory=list)

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & KEYFRAME)

    @property
    def lacing(self) -> int:
        return self.flags & LACING_MASK

    @classmethod
    def parse(cls, body: bytes | bytearray | memoryview, where: int = 0) -> Block:
        """Parse a (Simple)Block body; ``where`` is its absolute offset for messages."""
        track, n = read_vint(body, 0, where)
        if n + 3 > len(body):
            raise FormatError(f"Block header truncated at byte {where}")
        (timestamp,) = _I16.unpack_from(body, n)
        flags = body[n + 2]
        pos = n + 3
        lacing = flags & LACING_MASK
        if lacing == NO_LACING:
            return cls(track, timestamp, flags, [bytes(body[pos:])])
        if pos >= len(body):
            raise FormatError(f"Block lace count missing at byte {where + pos}")
        count = body[pos] + 1
        pos += 1
        sizes: list[int] = []
        if lacing == XIPH_LACING:
            for _ in range(count - 1):
                size = 0
                while True:
                    if pos >= len(body):
                        raise FormatError(f"Xiph lace sizes truncated at byte {where + pos}")
                    b = body[pos]
                    pos += 1
                    size += b
                    if b != 255:
                        break
                sizes.append(size)
        elif lacing == EBML_LACING:
            first, m = read_vint(body, pos, where)
            pos += m
            sizes.append(first)
            for _ in range(count - 2):
                raw, m = read_vint(body, pos, where)
                delta = raw - ((1 << (7 * m - 1)) - 1)  # signed vint: subtract the bias
                pos += m
                sizes.append(sizes[-1] + delta)
                if sizes[-1] < 0:
                    raise FormatError(f"EBML lace size negative at byte {where + pos}")
        else:  # fixed
            total = len(body) - pos
            if total % count:
                raise FormatError(
                    f"fixed-size lacing: {total} bytes do not split into {count} frames at byte {where}"
                )
            sizes = [total // count] * (count - 1)
        remaining = len(body) - pos - sum(sizes)
        if remaining < 0:
            raise FormatError(f"Block lace sizes exceed the block at byte {where}")
        sizes.append(remaining)
        frames = []
        for size in sizes:
            frames.append(bytes(body[pos : pos + size]))
            pos += size
        return cls(track, timestamp, flags, frames)

    def __bytes__(self) -> bytes:
        """Serialise; more than one frame is written with EBML lacing."""
        if not -32768 <= self.timestamp <= 32767:
            raise ValueError(f"block timestamp {self.timestamp} does not fit 16 bits")
        head = encode_size(self.track) + _I16.pack(self.timestamp)
        if len(self.frames) == 1:
            return head + bytes([self.flags & ~LACING_MASK]) + self.frames[0]
        lace = bytearray([len(self.frames) - 1])
        lace += encode_size(len(self.frames[0]))
        for prev, cur in zip(self.frames[:-2], self.frames[1:-1], strict=True):
            delta = len(cur) - len(prev)
            m = 1
            while not -((1 << (7 * m - 1)) - 1) <= delta <= (1 << (7 * m - 1)) - 1:
                m += 1
            lace += encode_size(delta + (1 << (7 * m - 1)) - 1, m)
        flags = (self.flags & ~LACING_MASK) | EBML_LACING
        return head + bytes([flags]) + bytes(lace) + b"".join(self.frames)
