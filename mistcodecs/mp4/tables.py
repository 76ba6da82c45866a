"""Sample tables (stts, ctts, stss, stsc, stsz/stz2, stco/co64): parsed into flat
arrays in one go and expanded to per-sample columns without per-sample objects.

``array`` + ``byteswap`` turns a big-endian table into native integers at C speed,
which is what keeps indexing a one-hour file well under a second.
"""

from __future__ import annotations

import struct
import sys
from array import array
from itertools import accumulate, repeat

from mistcodecs.mp4.boxes import BoxError, full_box, full_header, need

_SWAP = sys.byteorder == "little"


def _u32s(body: bytes, start: int, count: int, kind: str, signed: bool = False) -> array:
    need(body, 4 * count, kind, start)
    out = array("i" if signed else "I")
    if out.itemsize != 4:  # pragma: no cover - exotic platforms
        out = array("l" if signed else "L")
        out.extend(struct.unpack_from(f">{count}{'i' if signed else 'I'}", body, start))
        return out
    out.frombytes(body[start : start + 4 * count])
    if _SWAP:
        out.byteswap()
    return out


def _u64s(body: bytes, start: int, count: int, kind: str) -> array:
    need(body, 8 * count, kind, start)
    out = array("Q")
    out.frombytes(body[start : start + 8 * count])
    if _SWAP:
        out.byteswap()
    return out


def _count(body: bytes, kind: str, at: int = 4) -> int:
    need(body, 4, kind, at)
    return int(struct.unpack_from(">I", body, at)[0])


def parse_pairs(body: bytes, kind: str) -> tuple[array, array]:
    """stts/ctts: (counts, values); ctts values are signed (v1, and v0 in practice)."""
    full_header(body, kind)
    n = _count(body, kind)
    flat = _u32s(body, 8, 2 * n, kind, signed=kind == "ctts")
    counts = flat[0::2]
    if kind == "ctts":
        counts = array("I", [c & 0xFFFFFFFF for c in counts])
    return counts, flat[1::2]


def parse_stss(body: bytes) -> array:
    full_header(body, "stss")
    return _u32s(body, 8, _count(body, "stss"), "stss")


def parse_stsc(body: bytes) -> tuple[array, array, array]:
    """(first_chunk, samples_per_chunk, description_index) columns."""
    full_header(body, "stsc")
    flat = _u32s(body, 8, 3 * _count(body, "stsc"), "stsc")
    return flat[0::3], flat[1::3], flat[2::3]


def parse_stsz(body: bytes, file_size: int = 1 << 40) -> array:
    """Sample sizes; a uniform size may not claim more bytes than ``file_size``."""
    full_header(body, "stsz")
    need(body, 12, "stsz")
    uniform, count = struct.unpack_from(">II", body, 4)
    if uniform:
        if count * uniform > file_size or count > 1 << 28:
            raise BoxError(
                f"stsz claims {count} samples of {uniform} bytes, more than the file holds"
            )
        return array("I", [uniform]) * count
    return _u32s(body, 12, count, "stsz")


def parse_stz2(body: bytes) -> array:
    full_header(body, "stz2")
    need(body, 12, "stz2")
    field_size = body[7]
    count = struct.unpack_from(">I", body, 8)[0]
    if field_size == 16:
        need(body, 2 * count, "stz2", 12)
        out = array("H")
        out.frombytes(body[12 : 12 + 2 * count])
        if _SWAP:
            out.byteswap()
        return array("I", out)
    if field_size == 8:
        need(body, count, "stz2", 12)
        return array("I", body[12 : 12 + count])
    if field_size == 4:
        need(body, (count + 1) // 2, "stz2", 12)
        raw = body[12 : 12 + (count + 1) // 2]
        return array("I", [(raw[i >> 1] >> (4 if not i & 1 else 0)) & 0xF for i in range(count)])
    raise BoxError(f"stz2 field size {field_size} is not 4, 8 or 16")


def parse_chunk_offsets(body: bytes, kind: str) -> array:
    full_header(body, kind)
    n = _count(body, kind)
    if kind == "co64":
        return _u64s(body, 8, n, kind)
    return array("Q", _u32s(body, 8, n, kind))


def expand_runs(counts: array, values: array, limit: int) -> array:
    """Run-length pairs to one value per sample (at most ``limit`` samples)."""
    out = array("q")
    for count, value in zip(counts, values, strict=False):
        if len(out) + count > limit:
            count = limit - len(out)
        out.extend(array("q", [value]) * count if count > 64 else repeat(value, count))
        if len(out) >= limit:
            break
    return out


def chunk_positions(
    first_chunk: array, per_chunk: array, chunk_offsets: array, sizes: array
) -> array:
    """File offset of every sample from stsc + chunk offsets + sizes."""
    n = len(sizes)
    positions = array("q")
    cum = list(accumulate(sizes, initial=0))
    sample = 0
    n_chunks = len(chunk_offsets)
    for i, first in enumerate(first_chunk):
        if first < 1 or (i and first <= first_chunk[i - 1]):
            raise BoxError(f"stsc entry {i} first_chunk {first} out of order")
        last = first_chunk[i + 1] if i + 1 < len(first_chunk) else n_chunks + 1
        spc = per_chunk[i]
        for chunk in range(first - 1, min(last - 1, n_chunks)):
            if sample >= n:
                return positions
            end = min(sample + spc, n)
            base = chunk_offsets[chunk] - cum[sample]
            positions.extend([base + c for c in cum[sample:end]])
            sample = end
    return positions


def stsc_sample_count(first_chunk: array, per_chunk: array, n_chunks: int) -> int:
    """How many samples stsc assigns to ``n_chunks`` chunks (out-of-range runs clipped)."""
    total = 0
    for i, first in enumerate(first_chunk):
        last = first_chunk[i + 1] if i + 1 < len(first_chunk) else n_chunks + 1
        chunks = max(0, min(last - 1, n_chunks) - (first - 1))
        total += chunks * per_chunk[i]
    return total


# ---- writing -----------------------------------------------------------------------


def runs(values: list[int] | array) -> list[tuple[int, int]]:
    """Run-length encode: [(count, value)]."""
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v:
            out[-1] = (out[-1][0] + 1, v)
        else:
            out.append((1, v))
    return out


def _be32(values: list[int] | array, signed: bool = False) -> bytes:
    arr = array("i" if signed else "I", values)
    if _SWAP:
        arr.byteswap()
    return arr.tobytes()


def build_stts(deltas: list[int] | array) -> bytes:
    pairs = runs(deltas)
    flat = [x for pair in pairs for x in pair]
    return full_box("stts", 0, 0, struct.pack(">I", len(pairs)), _be32(flat))


def build_ctts(offsets: list[int] | array) -> bytes:
    pairs = runs(offsets)
    flat = [x for pair in pairs for x in pair]
    version = 1 if any(v < 0 for v in offsets) else 0
    return full_box("ctts", version, 0, struct.pack(">I", len(pairs)), _be32(flat, signed=True))


def build_stss(sample_numbers: list[int]) -> bytes:
    return full_box("stss", 0, 0, struct.pack(">I", len(sample_numbers)), _be32(sample_numbers))


def build_stsc(per_chunk: list[int]) -> bytes:
    rows: list[int] = []
    for i, spc in enumerate(per_chunk):
        if not rows or rows[-2] != spc:
            rows += [i + 1, spc, 1]
    return full_box("stsc", 0, 0, struct.pack(">I", len(rows) // 3), _be32(rows))


def build_stsz(sizes: list[int] | array) -> bytes:
    if sizes and all(s == sizes[0] for s in sizes):
        return full_box("stsz", 0, 0, struct.pack(">II", sizes[0], len(sizes)))
    return full_box("stsz", 0, 0, struct.pack(">II", 0, len(sizes)), _be32(sizes))


def build_chunk_offsets(offsets: list[int], wide: bool) -> bytes:
    if wide:
        arr = array("Q", offsets)
        if _SWAP:
            arr.byteswap()
        return full_box("co64", 0, 0, struct.pack(">I", len(offsets)), arr.tobytes())
    return full_box("stco", 0, 0, struct.pack(">I", len(offsets)), _be32(offsets))
