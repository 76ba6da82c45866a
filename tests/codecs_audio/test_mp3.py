"""MPEG audio header parsing and the raw .mp3 splitter against ffprobe."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mistcodecs.errors import FormatError, Truncated
from mistcodecs.mp3 import FrameHeader, Mp3Demuxer, Mp3Muxer
from shm.model import Packet, TrackMeta
from tests.codecs_ebml.media import count_frames, probe_packets, probe_streams, split


def demux(data: bytes, chunk: int = 0) -> list[TrackMeta | Packet]:
    d = Mp3Demuxer()
    events: list[TrackMeta | Packet] = []
    step = chunk or len(data)
    for i in range(0, len(data), step):
        events += d.feed(data[i : i + step])
    return events + d.end()


def test_header_fields() -> None:
    hdr = FrameHeader.parse(bytes.fromhex("fffb9064"))  # MPEG-1 L3 128k 44.1k joint stereo
    assert (hdr.version, hdr.layer, hdr.bitrate, hdr.rate, hdr.channels, hdr.padding) == (
        1.0,
        3,
        128,
        44100,
        2,
        False,
    )
    assert (hdr.frame_len, hdr.samples) == (417, 1152)
    assert bytes(hdr) == bytes.fromhex("fffb9064")
    v2 = FrameHeader.parse(bytes.fromhex("fff340c4"))  # MPEG-2 L3 32k 22.05k mono
    assert (v2.version, v2.bitrate, v2.rate, v2.channels, v2.samples, v2.frame_len) == (
        2.0,
        32,
        22050,
        1,
        576,
        104,
    )
    with pytest.raises(FormatError, match="no MPEG audio sync word at byte 10"):
        FrameHeader.parse(b"\x00" * 4, 0, 10)
    with pytest.raises(Truncated):
        FrameHeader.parse(b"\xff\xfb")


@pytest.mark.parametrize("name", ["mp3", "mp3_22k"])
def test_split_matches_ffprobe(audio_media: dict[str, Path], tmp_path: Path, name: str) -> None:
    src = audio_media[name]
    data = src.read_bytes()
    events = demux(data)
    tracks, packets = split(events)
    stream = probe_streams(src)[0]
    assert (tracks[0].rate, tracks[0].channels) == (int(stream["sample_rate"]), stream["channels"])
    probed = probe_packets(src)
    mine = packets[1]
    assert len(mine) == len(probed)
    base = probed[0].pts_ms or 0.0
    for a, b in zip(mine, probed, strict=True):
        assert len(a.data) == b.size
        assert b.pts_ms is not None and abs(a.dts - (b.pts_ms - base)) <= 1
    small = demux(data, 97)
    assert [bytes(p.data) for p in small if isinstance(p, Packet)] == [bytes(p.data) for p in mine]
    m = Mp3Muxer(tracks)
    out = tmp_path / "out.mp3"
    out.write_bytes(m.header() + b"".join(m.packet(p) for p in mine) + m.end())
    assert count_frames(out)[0] == len(mine)


def test_junk_and_id3v1(audio_media: dict[str, Path]) -> None:
    data = audio_media["mp3_22k"].read_bytes()
    plain = split(demux(data))[1][1]
    d = Mp3Demuxer()
    got = d.feed(data + b"TAG" + b"\0" * 125) + d.end()
    assert len([p for p in got if isinstance(p, Packet)]) == len(plain)
    d = Mp3Demuxer()
    got = d.feed(b"\x01\x02junk" + data) + d.end()
    assert d.skipped == 6 and len([p for p in got if isinstance(p, Packet)]) == len(plain)
    with pytest.raises(FormatError, match="no MPEG audio frames"):
        demux(b"\x00" * 1000)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_fuzz(data: bytes) -> None:
    try:
        FrameHeader.parse(b"\xff" + data)
    except FormatError:
        pass
    try:
        demux(b"\xff\xfb" + data)
    except FormatError:
        pass
