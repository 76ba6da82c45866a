"""Bit-level reading for codec headers (SPS, VPS, ADTS): MSB-first bits and exp-Golomb.

Parameter sets are small, so a plain integer-accumulator reader is fast enough; the
payload hot paths never go through here.
"""

from __future__ import annotations

from mistcodecs.errors import Truncated


def unescape_rbsp(nal: bytes | memoryview) -> bytes:
    """Drop emulation-prevention bytes (00 00 03 -> 00 00) from a NAL unit body."""
    data = bytes(nal)
    if b"\x00\x00\x03" not in data:
        return data
    out = bytearray()
    start = 0
    while True:
        i = data.find(b"\x00\x00\x03", start)
        if i < 0:
            out += data[start:]
            return bytes(out)
        out += data[start : i + 2]
        start = i + 3


class BitReader:
    """MSB-first bit reader over bytes; raises :class:`Truncated` past the end."""

    __slots__ = ("_data", "_end", "_pos", "what")

    def __init__(self, data: bytes | memoryview, what: str = "bitstream") -> None:
        self._data = bytes(data)
        self._pos = 0  # in bits
        self._end = len(self._data) * 8
        self.what = what

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def read(self, n: int) -> int:
        """Read ``n`` bits as an unsigned integer."""
        if n == 0:
            return 0
        if self._pos + n > self._end:
            raise Truncated(f"{self.what} truncated at bit {self._pos} (wanted {n} more)")
        first = self._pos >> 3
        last = (self._pos + n + 7) >> 3
        chunk = int.from_bytes(self._data[first:last], "big")
        shift = last * 8 - self._pos - n
        self._pos += n
        return (chunk >> shift) & ((1 << n) - 1)

    def flag(self) -> bool:
        return self.read(1) == 1

    def skip(self, n: int) -> None:
        if self._pos + n > self._end:
            raise Truncated(f"{self.what} truncated at bit {self._pos} (skipping {n})")
        self._pos += n

    def ue(self) -> int:
        """Unsigned exp-Golomb code."""
        zeros = 0
        while self.read(1) == 0:
            zeros += 1
            if zeros > 31:
                raise Truncated(f"{self.what}: exp-Golomb code too long at bit {self._pos}")
        return (1 << zeros) - 1 + self.read(zeros)

    def se(self) -> int:
        """Signed exp-Golomb code."""
        k = self.ue()
        return (k + 1) >> 1 if k & 1 else -(k >> 1)


class BitWriter:
    """MSB-first bit writer (for the few headers we build bit by bit)."""

    __slots__ = ("_acc", "_bits")

    def __init__(self) -> None:
        self._acc = 0
        self._bits = 0

    def write(self, value: int, n: int) -> None:
        self._acc = (self._acc << n) | (value & ((1 << n) - 1))
        self._bits += n

    def to_bytes(self) -> bytes:
        pad = (-self._bits) % 8
        return (self._acc << pad).to_bytes((self._bits + pad) // 8, "big")
