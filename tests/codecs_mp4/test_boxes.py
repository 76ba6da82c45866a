"""Box layer and records: round trips, bounds checks, damaged and fuzzed input."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mistcodecs.errors import FormatError, Truncated
from mistcodecs.mp4 import Mp4Demuxer, buffer_reader, iter_boxes, read_header
from mistcodecs.mp4 import records as r
from mistcodecs.mp4.boxes import box, full_box, payload
from mistcodecs.mp4.sampleentry import (
    SampleEntry,
    build_esds,
    dops_to_opushead,
    opushead_to_dops,
    parse_esds,
)

RECORDS = [
    r.Ftyp("iso6", 0, ["iso6", "cmfc"]),
    r.Mvhd(90000, 1 << 33, 3),
    r.Tkhd(1, 1234, 640.0, 360.0, 0, 3),
    r.Mdhd(48000, 96000, "eng"),
    r.Hdlr("soun", "SoundHandler"),
    r.Trex(2, 1, 1024, 0, 0x02000000),
    r.Mfhd(77),
    r.Tfhd(1, r.TFHD_DEFAULT_BASE_IS_MOOF, None, None, 40, 100, 0x01010000),
    r.Tfdt(1 << 40),
    r.Trun(data_offset=120, durations=[40, 40], sizes=[10, 20], flags=[0x02000000, 0x01010000], composition_offsets=[0, -40], count=2),
    r.Sidx(1, 1000, 5, 0, [r.SidxRef(0, 1000, 2000, True, 1, 0)]),
    r.Emsg("urn:scte:scte35:2013:bin", "1", 1000, 123456, 500, 9, b"\x01\x02"),
]  # fmt: skip


@pytest.mark.parametrize("record", RECORDS, ids=lambda rec: type(rec).__name__)
def test_records_round_trip(record: object) -> None:
    raw = bytes(record)  # type: ignore[call-overload]
    header = read_header(buffer_reader(raw), 0, len(raw))
    assert header.size == len(raw)
    body = payload(buffer_reader(raw), header)
    parsed = type(record).parse(body)  # type: ignore[attr-defined]
    assert parsed == record or bytes(parsed) == raw
    for cut in range(len(body)):
        try:
            type(record).parse(body[:cut])  # type: ignore[attr-defined]
        except FormatError:
            pass


def test_elst_round_trip() -> None:
    elst = r.Elst([r.EditEntry(1000, -1), r.EditEntry(5000, 1024)])
    raw = bytes(elst)
    edts = read_header(buffer_reader(raw), 0, len(raw))
    inner = next(iter_boxes(buffer_reader(raw), edts.payload_offset, edts.end))
    assert r.Elst.parse(payload(buffer_reader(raw), inner)) == elst


def test_header_sizes() -> None:
    big = struct.pack(">I4sQ", 1, b"mdat", 24) + bytes(8)
    h = read_header(buffer_reader(big), 0, len(big))
    assert (h.type, h.size, h.header_size) == ("mdat", 24, 16)
    to_end = struct.pack(">I4s", 0, b"mdat") + bytes(20)
    assert read_header(buffer_reader(to_end), 0, len(to_end)).size == 28
    uuid = box("uuid", bytes(range(16)), b"xx")
    h = read_header(buffer_reader(uuid), 0, len(uuid))
    assert h.usertype == bytes(range(16)) and h.payload_size == 2
    with pytest.raises(FormatError):
        read_header(buffer_reader(struct.pack(">I4s", 4, b"free")), 0, 8)  # smaller than a header
    with pytest.raises(Truncated):
        read_header(buffer_reader(box("free", bytes(10))), 0, 12)  # child past parent
    with pytest.raises(FormatError):
        read_header(buffer_reader(struct.pack(">I4sQ", 1, b"mdat", 8)), 0, 16)  # largesize < header


def test_esds_and_dops_round_trip() -> None:
    asc = bytes([0x12, 0x10])
    raw = build_esds(0x40, asc, 1, 128000)
    assert parse_esds(raw[8:]) == (0x40, asc)
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48000, 0, 0)
    assert dops_to_opushead(opushead_to_dops(head)[8:]) == head


def test_box_size_loop_and_nesting_terminate() -> None:
    # a container whose child claims to be the container itself again and again
    inner = struct.pack(">I4s", 16, b"moov") + struct.pack(">I4s", 8, b"trak")
    data = box("ftyp", b"isom", bytes(4)) + struct.pack(">I4s", 8 + len(inner), b"moov") + inner
    with pytest.raises(FormatError):
        Mp4Demuxer(buffer_reader(data), len(data))
    # deep nesting of containers is bounded
    nested = b""
    for _ in range(200):
        nested = box("trak", nested)
    data = box("ftyp", b"isom", bytes(4)) + box("moov", nested)
    with pytest.raises(FormatError):
        Mp4Demuxer(buffer_reader(data), len(data))


def _exercise(data: bytes) -> None:
    try:
        demux = Mp4Demuxer(buffer_reader(data), len(data))
        for meta in demux.tracks():
            demux.sample_table(meta.id)
        for _ in demux.packets():
            pass
    except FormatError:
        pass


def test_truncated_every_7th_byte(media: dict[str, Path]) -> None:
    data = media["frag.mp4"].read_bytes()[:6000]
    for cut in range(0, len(data), 7):
        _exercise(data[:cut])
    small = media["faststart.mp4"].read_bytes()
    moov_end = small.index(b"mdat") + 200
    for cut in range(0, moov_end, 7):
        _exercise(small[:cut])


def test_bit_flips_and_wrong_sizes(media: dict[str, Path]) -> None:
    data = bytearray(media["faststart.mp4"].read_bytes())
    moov_end = data.index(b"mdat")
    for i in range(0, moov_end, 3):
        damaged = bytearray(data)
        damaged[i] ^= 0x10 << (i % 4)
        _exercise(bytes(damaged))
    for at in range(0, moov_end - 4, 97):  # overwrite a word with a hostile size
        for value in (0, 1, 7, 0xFFFFFFFF):
            damaged = bytearray(data)
            damaged[at : at + 4] = struct.pack(">I", value)
            _exercise(bytes(damaged))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data: bytes) -> None:
    _exercise(data)
    try:
        list(iter_boxes(buffer_reader(data), 0, len(data)))
    except FormatError:
        pass


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_fuzz_mutated_file(media: dict[str, Path], data: st.DataObject) -> None:
    original = media["frag.mp4"].read_bytes()[:4000]
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    _exercise(bytes(mutated))


def test_full_box_helper() -> None:
    raw = full_box("mfhd", 0, 0, struct.pack(">I", 5))
    assert r.Mfhd.parse(raw[8:]).sequence_number == 5


PARSERS = [
    r.Mvhd.parse, r.Tkhd.parse, r.Mdhd.parse, r.Hdlr.parse, r.Elst.parse, r.Trex.parse, r.Mfhd.parse,
    r.Tfhd.parse, r.Tfdt.parse, r.Trun.parse, r.Sidx.parse, r.Emsg.parse, r.Ftyp.parse,
    SampleEntry.parse_stsd, parse_esds, dops_to_opushead,
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(PARSERS), st.binary(max_size=120))
def test_fuzz_record_parsers(parser: object, body: bytes) -> None:
    try:
        parser(body)  # type: ignore[operator]
    except FormatError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        ["avc1", "hvc1", "av01", "vp09", "mp4a", "Opus", "ac-3", "fLaC", "sowt", "lpcm"]
    ),
    st.binary(max_size=160),
)
def test_fuzz_sample_entries(kind: str, body: bytes) -> None:
    try:
        SampleEntry.parse(kind, body)
    except FormatError:
        pass


def test_nested_size_zero_is_an_error() -> None:
    inner = struct.pack(">I", 0) + b"trak" + b"\0" * 24
    moov = box("moov", inner)
    read = buffer_reader(moov)
    with pytest.raises(FormatError, match="size 0"):
        list(iter_boxes(read, 8, len(moov), nested=True))
    top = list(iter_boxes(buffer_reader(inner), 0, len(inner)))  # top level: to the end
    assert top[0].size == len(inner)
