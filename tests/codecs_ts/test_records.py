"""TS packets, adaptation fields, PSI sections and PES headers: build, parse, reject."""

from __future__ import annotations

import pytest

from mistcodecs.errors import FormatError, Truncated
from mistcodecs.ts.packets import AdaptationField, PacketSplitter, TsPacket, build_packet
from mistcodecs.ts.pes import TS_MASK, PesHeader, Unwrapper, build_pes_header
from mistcodecs.ts.psi import Pat, Pmt, PmtStream, SectionAssembler, crc32_mpeg2


def test_crc_check_value() -> None:
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7


def test_packet_round_trip_with_pcr() -> None:
    af = AdaptationField(random_access=True, pcr=27_000_000 * 95000 + 299)
    raw = build_packet(0x101, b"abc", 9, pusi=True, adaptation=af)
    assert len(raw) == 188
    pkt = TsPacket.parse(raw)
    assert (pkt.pid, pkt.pusi, pkt.cc, bytes(pkt.payload)) == (0x101, True, 9, b"abc")
    assert pkt.adaptation is not None and pkt.adaptation.random_access
    assert pkt.adaptation.pcr == af.pcr
    assert bytes(pkt) == raw
    for size in (183, 184, 0):
        short = TsPacket.parse(build_packet(0x20, b"x" * size, 0))
        assert bytes(short.payload) == b"x" * size
    with pytest.raises(FormatError):
        build_packet(0x20, b"x" * 185, 0)
    with pytest.raises(Truncated):
        TsPacket.parse(raw[:100])
    with pytest.raises(FormatError):
        TsPacket.parse(b"\x46" + raw[1:])


def test_psi_round_trip_across_packets() -> None:
    streams = [PmtStream(0x1B, 0x100), PmtStream(0x0F, 0x101, b"\x0a\x04eng\x00")] + [
        PmtStream(0x06, 0x200 + n, b"\x05\x04Opus") for n in range(30)
    ]
    pmt = Pmt(1, 0x100, streams)
    section = bytes(pmt)
    assert len(section) > 184
    assert Pmt.parse(section) == pmt
    assert Pmt.parse(section).streams[1].lang == "eng"
    assert Pmt.parse(section).streams[2].codec == "opus"
    payload = b"\x00" + section + b"\xff" * 200
    asm = SectionAssembler()
    got = asm.feed(payload[:184], True) + asm.feed(payload[184:368], False)
    assert got == [section]
    pat = Pat(7, {1: 0x1000, 2: 0x1001})
    assert Pat.parse(bytes(pat)) == pat
    bad = bytearray(bytes(pat))
    bad[9] ^= 1
    with pytest.raises(FormatError, match="CRC"):
        Pat.parse(bytes(bad))


def test_pes_header_and_unwrap() -> None:
    raw = build_pes_header(0xE0, 100, TS_MASK - 5, TS_MASK - 3005, bounded=False)
    hdr = PesHeader.parse(raw)
    assert (hdr.stream_id, hdr.length, hdr.pts, hdr.dts, hdr.header_size) == (
        0xE0,
        0,
        TS_MASK - 5,
        TS_MASK - 3005,
        19,
    )
    unwrap = Unwrapper()
    values = [
        unwrap(v & TS_MASK) for v in (TS_MASK - 100, TS_MASK + 500, TS_MASK - 200, TS_MASK + 9000)
    ]
    assert values == [TS_MASK - 100, TS_MASK + 500, TS_MASK - 200, TS_MASK + 9000]
    with pytest.raises(FormatError):
        PesHeader.parse(b"\x00\x00\x02\xe0\x00\x00\x80\x80\x05")


def test_splitter_resync_counts_losses() -> None:
    pkts = [build_packet(0x100, bytes([n]) * 184, n) for n in range(6)]
    stream = pkts[0] + b"\x47\x00" + pkts[1] + pkts[2] + pkts[3][:50] + pkts[4] + pkts[5]
    splitter = PacketSplitter()
    got = [raw for i in range(0, len(stream), 7) for _, raw in splitter.feed(stream[i : i + 7])]
    tail, left = splitter.end()
    got += [raw for _, raw in tail]
    assert got == pkts[:3] + pkts[4:]
    assert (splitter.sync_losses, splitter.skipped, left) == (2, 52, 0)


def test_section_assembler_drops_an_over_long_section() -> None:
    asm = SectionAssembler()
    good = bytes(Pat(transport_stream_id=1, version=0, programs={1: 0x1000}))
    bad = b"\x00\xbf\xff" + good[3:]
    assert asm.feed(b"\x00" + bad + b"\xff" * 20, True) == []
    assert asm.problems and "section_length 4095" in asm.problems[0]
    assert asm.feed(b"\x00" + good + b"\xff" * 20, True) == [good]
