"""EBML primitives, block lacing, and fuzzing where only FormatError may escape."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mistcodecs.ebml import Block, EbmlDemuxer, ElementHeader, value_of
from mistcodecs.ebml.block import FIXED_LACING, XIPH_LACING
from mistcodecs.ebml.element import encode_id, encode_size, iter_children, read_size, uint_element
from mistcodecs.errors import FormatError, Truncated


@given(st.integers(0, (1 << 56) - 2), st.integers(0, 8))
def test_size_round_trip(size: int, width: int) -> None:
    try:
        raw = encode_size(size, width)
    except ValueError:
        return
    assert read_size(raw, 0) == (size, len(raw))


def test_unknown_size_and_header_bytes() -> None:
    hdr = ElementHeader.parse(b"\x1f\x43\xb6\x75\x01\xff\xff\xff\xff\xff\xff\xff", 0, 100)
    assert (hdr.name, hdr.size, hdr.offset, hdr.header_len, hdr.end) == (
        "Cluster",
        None,
        100,
        12,
        None,
    )
    assert bytes(hdr) == b"\x1f\x43\xb6\x75\x01\xff\xff\xff\xff\xff\xff\xff"
    assert read_size(b"\xff", 0) == (None, 1)
    assert encode_id(0xA3) == b"\xa3"


def test_bad_and_truncated_headers() -> None:
    with pytest.raises(FormatError, match="bad first byte 0x00 at byte 5"):
        ElementHeader.parse(b"\x00\x81", 0, 5)
    with pytest.raises(FormatError, match="bad first byte"):
        ElementHeader.parse(b"\x08\x00\x00\x00\x00\x81", 0)  # 5-byte ID: over the limit
    with pytest.raises(Truncated):
        ElementHeader.parse(b"\x1a\x45", 0)


def test_values() -> None:
    assert value_of(0x2AD7B1, b"\x0f\x42\x40") == 1_000_000
    assert value_of(0xFB, b"\xff\xd8") == -40
    assert value_of(0x4489, b"\x40\x8f\x40\x00\x00\x00\x00\x00") == 1000.0
    assert value_of(0x4282, b"webm\x00\x00") == "webm"
    with pytest.raises(FormatError, match="float of 3 bytes"):
        value_of(0x4489, b"\x00\x00\x00")


def test_child_may_not_exceed_parent() -> None:
    body = uint_element(0xD7, 1) + b"\x86\x85V_VP"  # CodecID claims 5 bytes, 3 present
    with pytest.raises(FormatError, match="past"):
        iter_children(body, 0, len(body), 1000)


def test_lacing() -> None:
    frames = [b"a" * 300, b"b" * 10, b"c" * 700, b"d" * 5]
    ebml = Block(1, -5, 0x80, frames)
    parsed = Block.parse(bytes(ebml))
    assert (parsed.track, parsed.timestamp, parsed.keyframe, parsed.frames) == (1, -5, True, frames)
    xiph = (
        b"\x81\x00\x10"
        + bytes([XIPH_LACING, 2])
        + b"\xff\x2d\x0a"
        + b"a" * 300
        + b"b" * 10
        + b"c" * 3
    )
    assert Block.parse(xiph).frames == [b"a" * 300, b"b" * 10, b"ccc"]
    fixed = b"\x82\x00\x00" + bytes([FIXED_LACING, 2]) + b"xyz" * 3
    assert Block.parse(fixed).frames == [b"xyz"] * 3
    with pytest.raises(FormatError, match="fixed-size lacing"):
        Block.parse(fixed + b"!")
    with pytest.raises(FormatError, match="exceed"):
        Block.parse(b"\x81\x00\x00" + bytes([XIPH_LACING, 1]) + b"\x50" + b"short")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_header_and_block(data: bytes) -> None:
    for parse in (lambda: ElementHeader.parse(data, 0), lambda: Block.parse(data)):
        try:
            parse()
        except FormatError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_demuxer_random(data: bytes) -> None:
    d = EbmlDemuxer()
    try:
        d.feed(b"\x1a\x45\xdf\xa3\x80\x18\x53\x80\x67\xff" + data)
        d.end()
    except FormatError:
        pass


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_fuzz_demuxer_mutated(ebml_media: dict[str, Path], data: st.DataObject) -> None:
    original = ebml_media["vp9_opus"].read_bytes()[:6000]
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    d = EbmlDemuxer()
    try:
        d.feed(bytes(raw))
        d.end()
    except FormatError:
        pass
