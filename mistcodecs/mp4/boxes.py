"""ISO-BMFF box layer: header parsing, bounded child iteration and box building.

Boxes are read through a ``read_at(offset, size) -> bytes`` callable so that a file
(or a huge remote object) is never loaded whole. Every header is checked against its
parent's end: a child may not run past its parent, sizes smaller than the header are
rejected, and since each box is at least 8 bytes long iteration always moves forward
and nesting depth is capped, a damaged file cannot make the walk hang.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from mistcodecs.errors import FormatError, Truncated

ReadAt = Callable[[int, int], bytes]

# Boxes whose payload is just a sequence of child boxes.
CONTAINERS = frozenset(
    {
        "moov", "trak", "mdia", "minf", "stbl", "dinf", "edts", "mvex", "moof", "traf",
        "mfra", "udta", "sinf", "schi", "tref", "meco", "strk", "strd", "rinf", "grpl",
    }
)  # fmt: skip
MAX_DEPTH = 16

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class BoxError(FormatError):
    """A box header or body is malformed."""


def buffer_reader(buf: bytes | bytearray | memoryview) -> ReadAt:
    """A ``read_at`` over an in-memory buffer (short reads at the end, like a file)."""
    view = memoryview(buf)

    def read_at(offset: int, size: int) -> bytes:
        if offset < 0 or size < 0:
            raise BoxError(f"bad read at {offset} size {size}")
        return bytes(view[offset : offset + size])

    return read_at


def file_reader(fh: BinaryIO) -> ReadAt:
    """A ``read_at`` over a binary file (``pread``: no shared seek position)."""
    fd = fh.fileno()

    def read_at(offset: int, size: int) -> bytes:
        return os.pread(fd, size, offset)

    return read_at


def fourcc(raw: bytes) -> str:
    return raw.decode("latin-1")


@dataclass(frozen=True, slots=True)
class BoxHeader:
    """Where one box lives: ``offset`` of its first byte, total ``size``."""

    type: str
    offset: int
    size: int
    header_size: int
    usertype: bytes | None = None

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def payload_offset(self) -> int:
        return self.offset + self.header_size

    @property
    def payload_size(self) -> int:
        return self.size - self.header_size


def read_header(read_at: ReadAt, offset: int, limit: int, nested: bool = False) -> BoxHeader:
    """Parse the box header at ``offset``; the box must end at or before ``limit``.
    Size 0 ("to the end of the file") is only legal at top level: a ``nested`` box
    with size 0 is an error rather than silently swallowing its siblings."""
    if limit - offset < 8:
        raise Truncated(f"box header at {offset} cut off ({limit - offset} bytes left)")
    head = read_at(offset, 16 if limit - offset >= 16 else 8)
    if len(head) < 8:
        raise Truncated(f"box header at {offset} cut off (file ends)")
    size = _U32.unpack_from(head)[0]
    kind = fourcc(head[4:8])
    header_size = 8
    if size == 1:
        if len(head) < 16:
            raise Truncated(f"'{kind}' 64-bit size at {offset} cut off")
        size = _U64.unpack_from(head, 8)[0]
        header_size = 16
    elif size == 0:
        if nested:
            raise BoxError(
                f"'{_printable(kind)}' box at {offset} has size 0 (to the end of the file), "
                "which only a top-level box may have"
            )
        size = limit - offset
    usertype = None
    if kind == "uuid":
        if offset + header_size + 16 > limit:
            raise Truncated(f"'uuid' box at {offset}: user type cut off")
        usertype = read_at(offset + header_size, 16)
        if len(usertype) < 16:
            raise Truncated(f"'uuid' box at {offset}: user type cut off")
        header_size += 16
    if size < header_size:
        raise BoxError(f"'{_printable(kind)}' box at {offset} has impossible size {size}")
    if offset + size > limit:
        raise Truncated(
            f"'{_printable(kind)}' box at {offset} size {size} runs past its parent/file end {limit}"
        )
    return BoxHeader(kind, offset, size, header_size, usertype)


def _printable(kind: str) -> str:
    return kind if kind.isprintable() else kind.encode("latin-1").hex()


def iter_boxes(read_at: ReadAt, start: int, end: int, nested: bool = False) -> Iterator[BoxHeader]:
    """Child headers between ``start`` and ``end``; up to 7 trailing bytes are padding.
    ``nested``: these are children of a box (size 0 is then an error)."""
    pos = start
    while end - pos >= 8:
        header = read_header(read_at, pos, end, nested)
        yield header
        pos = header.end  # size >= 8 so this always advances


def find_path(
    read_at: ReadAt, start: int, end: int, path: str, nested: bool = False
) -> BoxHeader | None:
    """First box along ``path`` such as ``moov/mvex/trex`` (``nested``: start..end is
    inside a box, not the top level)."""
    parts = path.split("/")
    found: BoxHeader | None = None
    for depth, name in enumerate(parts):
        if depth >= MAX_DEPTH:
            return None
        kids = iter_boxes(read_at, start, end, nested or depth > 0)
        found = next((h for h in kids if h.type == name), None)
        if found is None:
            return None
        start, end = found.payload_offset, found.end
    return found


def children(read_at: ReadAt, parent: BoxHeader) -> list[BoxHeader]:
    return list(iter_boxes(read_at, parent.payload_offset, parent.end, nested=True))


def payload(read_at: ReadAt, header: BoxHeader, limit: int = 1 << 28) -> bytes:
    """The box body; refuses absurd sizes rather than allocate them."""
    if header.payload_size > limit:
        raise BoxError(
            f"'{header.type}' at {header.offset} too large to load ({header.payload_size})"
        )
    data = read_at(header.payload_offset, header.payload_size)
    if len(data) != header.payload_size:
        raise Truncated(f"'{header.type}' at {header.offset} body cut off")
    return data


def full_header(body: bytes, kind: str = "box") -> tuple[int, int]:
    """(version, flags) of a FullBox body."""
    if len(body) < 4:
        raise Truncated(f"'{kind}' full-box header cut off")
    word = _U32.unpack_from(body)[0]
    return word >> 24, word & 0xFFFFFF


def need(body: bytes | memoryview, size: int, kind: str, at: int = 0) -> None:
    """Raise unless ``body`` holds ``size`` bytes from ``at``."""
    if len(body) < at + size:
        raise Truncated(f"'{kind}' needs {at + size} bytes, has {len(body)}")


# ---- building ----------------------------------------------------------------------


def box(kind: str, *parts: bytes) -> bytes:
    """Serialise a box; switches to a 64-bit size when needed."""
    body = b"".join(parts)
    size = 8 + len(body)
    if size > 0xFFFFFFFF:
        return _U32.pack(1) + kind.encode("latin-1") + _U64.pack(size + 8) + body
    return _U32.pack(size) + kind.encode("latin-1") + body


def full_box(kind: str, version: int, flags: int, *parts: bytes) -> bytes:
    return box(kind, _U32.pack((version << 24) | (flags & 0xFFFFFF)), *parts)
