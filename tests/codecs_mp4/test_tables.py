"""Sample tables: build -> parse round trips, compact forms, expansion."""

from __future__ import annotations

import itertools
import struct
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mistcodecs.errors import FormatError
from mistcodecs.mp4 import tables
from mistcodecs.mp4.boxes import full_box


def _body(raw: bytes) -> bytes:
    return raw[8:]


@given(st.lists(st.integers(0, 5000), min_size=1, max_size=300))
def test_stts_ctts_round_trip(values: list[int]) -> None:
    counts, deltas = tables.parse_pairs(_body(tables.build_stts(values)), "stts")
    assert list(tables.expand_runs(counts, deltas, len(values))) == values
    signed = [v - 2500 for v in values]
    counts, offs = tables.parse_pairs(_body(tables.build_ctts(signed)), "ctts")
    assert list(tables.expand_runs(counts, offs, len(values))) == signed


@given(st.lists(st.integers(1, 70000), min_size=1, max_size=200), st.integers(1, 9))
def test_layout_round_trip(sizes: list[int], per: int) -> None:
    chunks = [per] * (len(sizes) // per) + ([len(sizes) % per] if len(sizes) % per else [])
    offsets, pos = [], 1000
    expected = []
    for count in chunks:
        offsets.append(pos)
        for _ in range(count):
            expected.append(pos)
            pos += sizes[len(expected) - 1]
        pos += 17  # a gap between chunks
    first, spc, _ = tables.parse_stsc(_body(tables.build_stsc(chunks)))
    parsed_sizes = tables.parse_stsz(_body(tables.build_stsz(sizes)))
    assert list(parsed_sizes) == sizes
    for wide in (False, True):
        kind = "co64" if wide else "stco"
        parsed = tables.parse_chunk_offsets(_body(tables.build_chunk_offsets(offsets, wide)), kind)
        assert list(tables.chunk_positions(first, spc, parsed, parsed_sizes)) == expected


def test_stz2_field_sizes() -> None:
    values = [3, 15, 0, 7, 9]
    packed = bytes([(3 << 4) | 15, (0 << 4) | 7, 9 << 4])
    body = full_box("stz2", 0, 0, b"\0\0\0" + bytes([4]), struct.pack(">I", 5), packed)[8:]
    assert list(tables.parse_stz2(body)) == values
    body = full_box(
        "stz2", 0, 0, b"\0\0\0" + bytes([16]), struct.pack(">I", 2), struct.pack(">HH", 300, 65535)
    )[8:]
    assert list(tables.parse_stz2(body)) == [300, 65535]
    with pytest.raises(FormatError):
        tables.parse_stz2(full_box("stz2", 0, 0, b"\0\0\0\x05", struct.pack(">I", 1), b"\0")[8:])


def test_uniform_stsz_bounded_by_file_size() -> None:
    body = full_box("stsz", 0, 0, struct.pack(">II", 1000, 1 << 27))[8:]
    with pytest.raises(FormatError):
        tables.parse_stsz(body, 10_000_000)
    assert tables.parse_stsz(full_box("stsz", 0, 0, struct.pack(">II", 4, 3))[8:], 100) == array(
        "I", [4, 4, 4]
    )


def test_stsc_out_of_order_rejected() -> None:
    with pytest.raises(FormatError):
        tables.chunk_positions(
            array("I", [2, 1]), array("I", [1, 1]), array("Q", [0, 10]), array("I", [1, 1])
        )


def test_stsc_sample_count() -> None:
    first, per = array("I", [1, 3]), array("I", [5, 2])
    assert tables.stsc_sample_count(first, per, 4) == 2 * 5 + 2 * 2
    assert tables.stsc_sample_count(first, per, 1) == 5  # runs past the chunk count clip
    assert tables.stsc_sample_count(array("I"), array("I"), 3) == 0


def test_stz2_eight_bit_sizes() -> None:
    values = [1, 200, 7, 255, 0, 9, 128, 3]  # a multiple of 4 bytes: not one 32-bit item
    body = full_box("stz2", 0, 0, b"\0\0\0\x08", struct.pack(">I", len(values)), bytes(values))
    assert list(tables.parse_stz2(body[8:])) == values


@given(
    st.lists(st.integers(-(1 << 40), 1 << 40), max_size=100),
    st.sampled_from([1000, 90000, 44100, 48000, 600, 1]),
    st.integers(-5000, 5000),
)
def test_to_ms_rounds_like_the_formula(times: list[int], timescale: int, shift: int) -> None:
    expected = [((t + shift) * 1000 + timescale // 2) // timescale for t in times]
    assert list(tables.to_ms(array("q", times), timescale, shift)) == expected


@given(st.lists(st.integers(0, 3), max_size=200))
def test_runs_and_stss(values: list[int]) -> None:
    pairs = tables.runs(values)
    assert [v for count, v in pairs for _ in range(count)] == values
    assert all(a[1] != b[1] for a, b in itertools.pairwise(pairs))
    flags = bytearray(1 if v == 0 else 0 for v in values)
    numbers = tables.keyframe_numbers(flags)
    assert numbers == [i + 1 for i, v in enumerate(values) if v == 0]
    assert list(tables.parse_stss(_body(tables.build_stss(numbers)))) == numbers


@given(
    st.lists(st.tuples(st.integers(1, 4), st.integers(0, 7)), min_size=1, max_size=8),
    st.integers(0, 40),
    st.integers(0, 120),
)
def test_chunk_positions_match_a_naive_walk(
    entries: list[tuple[int, int]], n_chunks: int, n_samples: int
) -> None:
    """stsc runs (chunks per run, samples per chunk) against a per-sample reference,
    including more chunks than samples and samples left over."""
    first_chunk, per_chunk, chunk = array("I"), array("I"), 1
    for run, spc in entries:
        first_chunk.append(chunk)
        per_chunk.append(spc)
        chunk += run
    offsets = array("Q", [1000 * (c + 1) for c in range(n_chunks)])
    sizes = array("I", [(7 * i) % 13 + 1 for i in range(n_samples)])
    expected: list[int] = []
    for i, first in enumerate(first_chunk):
        last = first_chunk[i + 1] if i + 1 < len(first_chunk) else n_chunks + 1
        for c in range(first - 1, min(last - 1, n_chunks)):
            pos = offsets[c]
            for _ in range(per_chunk[i]):
                if len(expected) < n_samples:
                    expected.append(pos)
                    pos += sizes[len(expected) - 1]
    assert list(tables.chunk_positions(first_chunk, per_chunk, offsets, sizes)) == expected
