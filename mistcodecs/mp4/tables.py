"""Sample tables (stts, ctts, stss, stsc, stsz/stz2, stco/co64): parsed into flat
arrays in one go, expanded to per-sample columns and built back into boxes without
per-sample Python code.

``array`` + ``byteswap`` turns a big-endian table into native integers at C speed, and
``map``/``compress``/``accumulate`` over ``operator`` functions do the per-sample
arithmetic in C: Python-level loops run once per run or per chunk, never per sample.
That is what keeps indexing a one-hour file (the demuxer, the analyser) and laying one
out as progressive MP4 (:mod:`mistcodecs.mp4.progressive`) well under a second.
"""

from __future__ import annotations

import operator
import struct
import sys
from array import array
from collections.abc import Sequence
from itertools import accumulate, compress, islice, pairwise, repeat

from mistcodecs.mp4.boxes import BoxError, full_box, full_header, need

_SWAP = sys.byteorder == "little"
_HIGH_NIBBLE = bytes(b >> 4 for b in range(256))
_LOW_NIBBLE = bytes(b & 0xF for b in range(256))


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
    flat = _u32s(body, 8, 2 * n, kind)
    values = flat[1::2]
    if kind == "ctts":
        values = _reinterpret(values, "i")
    return flat[0::2], values


def _reinterpret(values: array, code: str) -> array:
    """The same 4-byte items under another type code (unsigned <-> signed)."""
    out = array(code)
    if out.itemsize != values.itemsize:  # pragma: no cover - exotic platforms
        return array(code, [v - (1 << 32) if v >= 1 << 31 else v for v in values])
    out.frombytes(values.tobytes())
    return out


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
        return array("I", array("B", body[12 : 12 + count]))
    if field_size == 4:
        need(body, (count + 1) // 2, "stz2", 12)
        raw = body[12 : 12 + (count + 1) // 2]
        nibbles = bytearray(2 * len(raw))
        nibbles[0::2] = raw.translate(_HIGH_NIBBLE)
        nibbles[1::2] = raw.translate(_LOW_NIBBLE)
        return array("I", array("B", nibbles[:count]))
    raise BoxError(f"stz2 field size {field_size} is not 4, 8 or 16")


def parse_chunk_offsets(body: bytes, kind: str) -> array:
    full_header(body, kind)
    n = _count(body, kind)
    if kind == "co64":
        return _u64s(body, 8, n, kind)
    return array("Q", _u32s(body, 8, n, kind))


def expand_runs(counts: Sequence[int], values: Sequence[int], limit: int) -> array:
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
    """File offset of every sample from stsc + chunk offsets + sizes.

    A sample's position is the running sum of all sizes before it, shifted by its
    chunk's (offset - running sum at the chunk's first sample). Per stsc entry (a run
    of chunks with ``spc`` samples each) the shifts are one strided slice of the running
    sum, spread over the samples with strided slice assignments: all per-sample work is
    C-level, Python loops once per entry and min(chunks, samples per chunk)."""
    n = len(sizes)
    cum = array("q", accumulate(sizes, initial=0))
    n_chunks = len(chunk_offsets)
    shifts = array("q")
    sample = 0
    for i, first in enumerate(first_chunk):
        if first < 1 or (i and first <= first_chunk[i - 1]):
            raise BoxError(f"stsc entry {i} first_chunk {first} out of order")
        if sample >= n:
            break
        last = first_chunk[i + 1] if i + 1 < len(first_chunk) else n_chunks + 1
        spc = per_chunk[i]
        avail = min(last - 1, n_chunks) - (first - 1)
        if avail <= 0 or spc == 0:
            continue
        full = min(avail, (n - sample) // spc)  # chunks whose samples all exist
        if full:
            starts = cum[sample : sample + full * spc : spc]
            base = array(
                "q", map(operator.sub, chunk_offsets[first - 1 : first - 1 + full], starts)
            )
            if spc <= full:
                block = array("q", bytes(8 * full * spc))
                for j in range(spc):
                    block[j::spc] = base
            else:
                block = array("q")
                for b in base:
                    block.extend(array("q", [b]) * spc)
            shifts.extend(block)
            sample += full * spc
        if full < avail and sample < n:  # the samples run out inside this chunk
            shift = chunk_offsets[first - 1 + full] - cum[sample]
            shifts.extend(array("q", [shift]) * (n - sample))
            sample = n
    return array("q", map(operator.add, islice(cum, sample), shifts))


def stsc_sample_count(first_chunk: array, per_chunk: array, n_chunks: int) -> int:
    """How many samples stsc assigns to ``n_chunks`` chunks (out-of-range runs clipped)."""
    total = 0
    for i, first in enumerate(first_chunk):
        last = first_chunk[i + 1] if i + 1 < len(first_chunk) else n_chunks + 1
        chunks = max(0, min(last - 1, n_chunks) - (first - 1))
        total += chunks * per_chunk[i]
    return total


# ---- writing -----------------------------------------------------------------------


def int64s(values: Sequence[int]) -> array:
    """The column as ``array('q')`` (itself if it already is one)."""
    if isinstance(values, array) and values.typecode == "q":
        return values
    return array("q", values)


def _be(values: array) -> bytes:
    """Big-endian bytes of an array (a copy is swapped, the caller's is left alone)."""
    if _SWAP:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _be32(values: Sequence[int], signed: bool = False) -> bytes:
    return _be(array("i" if signed else "I", values))


def run_bounds(values: Sequence[int]) -> list[int]:
    """Where each run of equal values starts, plus ``len(values)``: found with
    ``compress`` over a not-equal map, so the Python-level work is per run."""
    n = len(values)
    changes = compress(range(1, n), map(operator.ne, islice(values, 1, None), values))
    return [0, *changes, n] if n else [0]


def runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """Run-length encode: [(count, value)]."""
    bounds = run_bounds(values)
    return [(b - a, values[a]) for a, b in pairwise(bounds)]


def _pairs_box(kind: str, values: Sequence[int]) -> bytes:
    """stts/ctts: (count, value) pairs; ctts is version 1 (signed) if any value is < 0."""
    bounds = run_bounds(values)
    n_runs = len(bounds) - 1
    code = "i" if kind == "ctts" else "I"
    flat = array(code, bytes(8 * n_runs))
    flat[0::2] = array(code, map(operator.sub, islice(bounds, 1, None), bounds))
    flat[1::2] = array(code, map(values.__getitem__, islice(bounds, n_runs)))
    version = 1 if kind == "ctts" and n_runs and min(values) < 0 else 0
    return full_box(kind, version, 0, struct.pack(">I", n_runs), _be(flat))


def build_stts(deltas: Sequence[int]) -> bytes:
    return _pairs_box("stts", deltas)


def build_ctts(offsets: Sequence[int]) -> bytes:
    return _pairs_box("ctts", offsets)


def build_stss(sample_numbers: Sequence[int]) -> bytes:
    return full_box("stss", 0, 0, struct.pack(">I", len(sample_numbers)), _be32(sample_numbers))


def keyframe_numbers(keyframe: Sequence[int] | bytes | bytearray) -> list[int]:
    """1-based numbers of the key samples (stss) from a per-sample flag column."""
    return list(compress(range(1, len(keyframe) + 1), keyframe))


def build_stsc(per_chunk: Sequence[int]) -> bytes:
    """One row per run of chunks holding the same number of samples."""
    bounds = run_bounds(per_chunk)
    rows = array("I", bytes(12 * (len(bounds) - 1)))
    rows[0::3] = array("I", [b + 1 for b in bounds[:-1]])
    rows[1::3] = array("I", [per_chunk[b] for b in bounds[:-1]])
    rows[2::3] = array("I", [1]) * (len(bounds) - 1)
    return full_box("stsc", 0, 0, struct.pack(">I", len(bounds) - 1), _be(rows))


def build_stsz(sizes: Sequence[int]) -> bytes:
    if len(sizes) and not any(map(operator.ne, sizes, repeat(sizes[0]))):
        return full_box("stsz", 0, 0, struct.pack(">II", sizes[0], len(sizes)))
    return full_box("stsz", 0, 0, struct.pack(">II", 0, len(sizes)), _be32(sizes))


def build_chunk_offsets(offsets: Sequence[int], wide: bool) -> bytes:
    if wide:
        return full_box("co64", 0, 0, struct.pack(">I", len(offsets)), _be(array("Q", offsets)))
    return full_box("stco", 0, 0, struct.pack(">I", len(offsets)), _be32(offsets))


def to_ms(times: Sequence[int], timescale: int, shift: int = 0) -> array:
    """Media times (plus ``shift``) in milliseconds, rounded half up (a comprehension:
    CPython's specialised integer operations beat a chain of ``operator`` maps here)."""
    half = timescale // 2
    return array("q", [((t + shift) * 1000 + half) // timescale for t in times])
