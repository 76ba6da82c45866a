"""Hypothesis fuzzing: only our FormatError may escape the parsers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mistcodecs import aac, h264, hevc
from mistcodecs.errors import FormatError
from mistcodecs.ts import TsDemuxer
from mistcodecs.ts.packets import TsPacket
from mistcodecs.ts.pes import PesHeader
from mistcodecs.ts.psi import Pat, Pmt, SectionAssembler

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SAMPLE: list[bytes] = []


def _sample(ts_files: dict[str, Path]) -> bytes:
    if not _SAMPLE:
        _SAMPLE.append(ts_files["h264_aac"].read_bytes()[: 188 * 200])
    return _SAMPLE[0]


@FUZZ
@given(st.binary(max_size=2000))
def test_demuxer_random_bytes(data: bytes) -> None:
    demuxer = TsDemuxer()
    demuxer.feed(b"\x47" + data)
    demuxer.end()


@pytest.fixture
def sample(ts_files: dict[str, Path]) -> bytes:
    return _sample(ts_files)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(st.tuples(st.integers(0, 188 * 200 - 1), st.integers(0, 255)), min_size=1, max_size=30)
)
def test_demuxer_byte_flips(sample: bytes, flips: list[tuple[int, int]]) -> None:
    data = bytearray(sample)
    for pos, value in flips:
        data[pos] = value
    demuxer = TsDemuxer()
    events = demuxer.feed(bytes(data)) + demuxer.end()
    assert isinstance(events, list)


@FUZZ
@given(st.binary(max_size=400))
def test_record_parsers(data: bytes) -> None:
    for parse in (Pat.parse, Pmt.parse, PesHeader.parse, TsPacket.parse, aac.parse_adts, aac.parse_asc,
                  h264.parse_sps, h264.parse_avcc, hevc.parse_sps, hevc.parse_hvcc, h264.avcc_to_annexb):  # fmt: skip
        try:
            parse(data)
        except FormatError:
            pass
    asm = SectionAssembler()
    for sec in asm.feed(data[:184], True) + asm.feed(data[184:], False):
        try:
            Pmt.parse(sec)
        except FormatError:
            pass


@FUZZ
@given(st.binary(min_size=1, max_size=64))
def test_sps_with_valid_headers(body: bytes) -> None:
    for parse, head in (
        (h264.parse_sps, b"\x67"),
        (hevc.parse_sps, b"\x42\x01"),
        (aac.parse_adts, b"\xff\xf1"),
    ):
        try:
            parse(head + body)
        except FormatError:
            pass


def _structured_stream(units: list[tuple[int, bool, bytes]]) -> bytes:
    """A valid PAT/PMT (H.264, AAC, MP3, AC-3, Opus, HEVC) followed by packets with fuzzed payloads."""
    from mistcodecs.ts.packets import build_packet
    from mistcodecs.ts.psi import PmtStream

    streams = [PmtStream(0x1B, 0x100), PmtStream(0x0F, 0x101), PmtStream(0x03, 0x102), PmtStream(0x81, 0x103),
               PmtStream(0x06, 0x104, b"\x05\x04Opus\x7f\x02\x80\x02"), PmtStream(0x24, 0x105)]  # fmt: skip
    out = bytearray()
    for pid, section in ((0, bytes(Pat(1, {1: 0x1000}))), (0x1000, bytes(Pmt(1, 0x100, streams)))):
        out += build_packet(pid, b"\x00" + section + b"\xff" * (183 - len(section)), 0, pusi=True)
    ccs: dict[int, int] = {}
    for index, pusi, payload in units:
        pid = 0x100 + index
        ccs[pid] = (ccs.get(pid, -1) + 1) & 0xF
        if pusi:
            payload = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05\x21\x00\x01\x00\x01" + payload
        out += build_packet(pid, payload[:184], ccs[pid], pusi=pusi)
    return bytes(out)


_UNITS = st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.binary(max_size=184)), max_size=40)


@FUZZ
@given(_UNITS)
def test_demuxer_structured(units: list[tuple[int, bool, bytes]]) -> None:
    demuxer = TsDemuxer()
    demuxer.feed(_structured_stream(units))
    demuxer.end()


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_UNITS, st.binary(max_size=3000))
def test_demuxer_long_fuzz(units: list[tuple[int, bool, bytes]], junk: bytes) -> None:
    demuxer = TsDemuxer()
    data = _structured_stream(units)
    demuxer.feed(data[: len(data) // 2] + junk)
    demuxer.feed(data[len(data) // 2 :])
    demuxer.end()
