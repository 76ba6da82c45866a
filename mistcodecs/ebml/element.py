"""EBML primitives (RFC 8794): variable-length integers, element headers, typed values.

An element is ``ID | size | body``. IDs keep their length marker bits (``0x1A45DFA3``),
sizes do not; a size whose value bits are all ones means "unknown" (live streams write
Segments and Clusters that way). Everything here works on absolute offsets into a
buffer so that errors can say where in the file they happened.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from mistcodecs.ebml.schema import ElementType, element_name, element_type
from mistcodecs.errors import FormatError, Truncated

MAX_ID_LEN = 4
MAX_SIZE_LEN = 8
UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


_VINT_LEN = bytes([0] + [9 - b.bit_length() for b in range(1, 256)])


def vint_length(first: int) -> int:
    """Length in bytes of a vint from its first byte; 0 when the byte is 0x00 (invalid)."""
    return _VINT_LEN[first]


def read_id(buf: bytes | bytearray | memoryview, pos: int, where: int = 0) -> tuple[int, int]:
    """Read an element ID (marker bits kept) at ``pos``; returns ``(id, length)``."""
    if pos >= len(buf):
        raise Truncated(f"EBML element ID truncated at byte {where + pos}")
    n = vint_length(buf[pos])
    if n == 0 or n > MAX_ID_LEN:
        raise FormatError(
            f"EBML element ID with bad first byte 0x{buf[pos]:02x} at byte {where + pos}"
        )
    if pos + n > len(buf):
        raise Truncated(f"EBML element ID truncated at byte {where + pos}")
    return int.from_bytes(buf[pos : pos + n], "big"), n


def read_size(
    buf: bytes | bytearray | memoryview, pos: int, where: int = 0
) -> tuple[int | None, int]:
    """Read an element data size at ``pos``; returns ``(size or None if unknown, length)``."""
    if pos >= len(buf):
        raise Truncated(f"EBML element size truncated at byte {where + pos}")
    n = vint_length(buf[pos])
    if n == 0:
        raise FormatError(f"EBML element size with bad first byte 0x00 at byte {where + pos}")
    if pos + n > len(buf):
        raise Truncated(f"EBML element size truncated at byte {where + pos}")
    value = int.from_bytes(buf[pos : pos + n], "big") & ((1 << (7 * n)) - 1)
    if value == (1 << (7 * n)) - 1:
        return None, n
    return value, n


def read_vint(buf: bytes | bytearray | memoryview, pos: int, where: int = 0) -> tuple[int, int]:
    """A vint used as a number inside a body (block track numbers, lace sizes)."""
    value, n = read_size(buf, pos, where)
    if value is None:  # all ones: the reserved value; as a number it is the maximum
        value = (1 << (7 * n)) - 1
    return value, n


def encode_id(element_id: int) -> bytes:
    n = max(1, (element_id.bit_length() + 7) // 8)
    return element_id.to_bytes(n, "big")


def encode_size(size: int, width: int = 0) -> bytes:
    """Shortest vint for ``size`` (or exactly ``width`` bytes); never the all-ones value."""
    n = 1
    while size >= (1 << (7 * n)) - 1:
        n += 1
    n = max(n, width)
    if n > MAX_SIZE_LEN:
        raise ValueError(f"EBML size {size} does not fit in 8 bytes")
    return (size | (1 << (7 * n))).to_bytes(n, "big")


@dataclass(frozen=True, slots=True)
class ElementHeader:
    """One element's header: where it starts, its ID and body size (``None``: unknown)."""

    id: int
    size: int | None
    offset: int  # absolute offset of the ID's first byte
    header_len: int

    @classmethod
    def parse(
        cls, buf: bytes | bytearray | memoryview, pos: int = 0, base: int = 0
    ) -> ElementHeader:
        """Parse at ``buf[pos]``; ``base`` is the absolute offset of ``buf[0]``."""
        eid, n = read_id(buf, pos, base)
        size, m = read_size(buf, pos + n, base)
        return cls(eid, size, base + pos, n + m)

    @property
    def data_offset(self) -> int:
        return self.offset + self.header_len

    @property
    def end(self) -> int | None:
        return None if self.size is None else self.data_offset + self.size

    @property
    def name(self) -> str:
        return element_name(self.id)

    def __bytes__(self) -> bytes:
        return encode_id(self.id) + (UNKNOWN_SIZE if self.size is None else encode_size(self.size))


def decode_value(
    etype: ElementType, data: bytes | bytearray | memoryview, where: int = 0
) -> int | float | str | bytes:
    """Decode a leaf element body according to its type."""
    n = len(data)
    if etype is ElementType.UINT:
        if n > 8:
            raise FormatError(f"EBML unsigned integer of {n} bytes at byte {where}")
        return int.from_bytes(data, "big")
    if etype is ElementType.INT:
        if n > 8:
            raise FormatError(f"EBML signed integer of {n} bytes at byte {where}")
        return int.from_bytes(data, "big", signed=True)
    if etype is ElementType.FLOAT:
        if n == 0:
            return 0.0
        if n not in (4, 8):
            raise FormatError(f"EBML float of {n} bytes at byte {where}")
        value = float(struct.unpack(">f" if n == 4 else ">d", data)[0])
        if not math.isfinite(value):
            raise FormatError(f"EBML float {value} at byte {where}")
        return value
    if etype is ElementType.DATE:
        if n not in (0, 8):
            raise FormatError(f"EBML date of {n} bytes at byte {where}")
        return int.from_bytes(data, "big", signed=True)
    if etype in (ElementType.STRING, ElementType.UTF8):
        return bytes(data).split(b"\0", 1)[0].decode("utf-8", "replace")
    return bytes(data)


def value_of(
    element_id: int, data: bytes | bytearray | memoryview, where: int = 0
) -> int | float | str | bytes:
    return decode_value(element_type(element_id), data, where)


# -- writing -------------------------------------------------------------------------


def element(element_id: int, body: bytes) -> bytes:
    return encode_id(element_id) + encode_size(len(body)) + body


def uint_element(element_id: int, value: int) -> bytes:
    n = max(1, (value.bit_length() + 7) // 8)
    return element(element_id, value.to_bytes(n, "big"))


def float_element(element_id: int, value: float) -> bytes:
    return element(element_id, struct.pack(">d", value))


def str_element(element_id: int, value: str) -> bytes:
    return element(element_id, value.encode("utf-8"))


def unknown_size_master(element_id: int) -> bytes:
    """The opening of a master element whose size is not known yet (live)."""
    return encode_id(element_id) + UNKNOWN_SIZE


def iter_children(
    buf: bytes | bytearray | memoryview, start: int, end: int, base: int = 0
) -> list[ElementHeader]:
    """Headers of the elements in ``buf[start:end]`` (a whole master body). A child
    running past ``end`` or with an unknown size is a FormatError: inside a fully
    buffered master nothing may overrun its parent."""
    out: list[ElementHeader] = []
    pos = start
    while pos < end:
        try:
            hdr = ElementHeader.parse(buf[:end], pos, base)
        except Truncated as exc:
            raise FormatError(
                f"{exc} (child runs past the end of its parent at byte {base + end})"
            ) from None
        if hdr.size is None:
            raise FormatError(
                f"{hdr.name} with unknown size inside a sized parent at byte {hdr.offset}"
            )
        child_end = pos + hdr.header_len + hdr.size
        if child_end > end:
            raise FormatError(
                f"{hdr.name} at byte {hdr.offset} is {hdr.size} bytes: runs past its parent's end at byte {base + end}"
            )
        out.append(hdr)
        pos = child_end
    return out
