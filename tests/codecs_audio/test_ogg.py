"""Ogg pages, Opus/Vorbis demuxing against ffprobe, and OggMuxer output decoded by ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mistcodecs.ebml import EbmlDemuxer
from mistcodecs.errors import FormatError, Truncated
from mistcodecs.ogg import OggDemuxer, OggMuxer, OggPage, opus_samples, xiph_lace, xiph_unlace
from shm.model import Packet, TrackMeta
from tests.codecs_ebml.media import FFMPEG, count_frames, probe_packets, probe_streams, split


def demux(data: bytes, chunk: int = 0) -> tuple[OggDemuxer, list[TrackMeta | Packet]]:
    d = OggDemuxer()
    events: list[TrackMeta | Packet] = []
    step = chunk or len(data)
    for i in range(0, len(data), step):
        events += d.feed(data[i : i + step])
    return d, events + d.end()


def mux(events: list[TrackMeta | Packet]) -> bytes:
    tracks, _ = split(events)
    m = OggMuxer(tracks)
    return m.header() + b"".join(m.packet(p) for p in events if isinstance(p, Packet)) + m.end()


@pytest.mark.parametrize("name", ["opus", "vorbis"])
def test_demux_matches_ffprobe(audio_media: dict[str, Path], name: str) -> None:
    path = audio_media[name]
    _d, events = demux(path.read_bytes())
    tracks, packets = split(events)
    stream = probe_streams(path)[0]
    assert len(tracks) == 1 and tracks[0].codec == name
    assert (tracks[0].rate, tracks[0].channels) == (int(stream["sample_rate"]), stream["channels"])
    probed = probe_packets(path)
    mine = packets[1]
    assert len(mine) == len(probed)
    for a, b in zip(mine, probed, strict=True):
        assert len(a.data) == b.size
        assert b.pts_ms is not None and abs(a.dts - b.pts_ms) <= 1, (a.dts, b.pts_ms)


@pytest.mark.parametrize("name", ["opus", "vorbis"])
def test_byte_by_byte_and_junk(audio_media: dict[str, Path], name: str) -> None:
    data = audio_media[name].read_bytes()
    _d, whole = demux(data)
    _d, small = demux(data, 1)
    assert [(p.dts, bytes(p.data)) for p in small if isinstance(p, Packet)] == [
        (p.dts, bytes(p.data)) for p in whole if isinstance(p, Packet)
    ]
    d, junky = demux(b"junk!" * 7 + data)
    assert d.skipped == 35 and len(junky) == len(whole)
    d = OggDemuxer()
    d.feed(data[:-10])
    with pytest.raises(Truncated, match="inside a page"):
        d.end()


@pytest.mark.parametrize("name", ["opus", "vorbis"])
def test_mux_round_trip(audio_media: dict[str, Path], tmp_path: Path, name: str) -> None:
    src = audio_media[name]
    _d, events = demux(src.read_bytes())
    out = tmp_path / "out.ogg"
    out.write_bytes(mux(events))
    assert count_frames(out) == count_frames(src)
    _d, again = demux(out.read_bytes())
    assert [(p.dts, bytes(p.data)) for p in again if isinstance(p, Packet)] == [
        (p.dts, bytes(p.data)) for p in events if isinstance(p, Packet)
    ]
    res = subprocess.run(
        [FFMPEG, "-v", "error", "-i", out.as_posix(), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stderr == ""


def test_webm_audio_into_ogg(tmp_path: Path) -> None:
    """Opus and Vorbis packets from the Matroska demuxer make playable Ogg files."""
    for codec, enc in (("opus", "libopus"), ("vorbis", "libvorbis")):
        src = tmp_path / f"{codec}.webm"
        cmd = [
            FFMPEG,
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            "1",
            "-c:a",
            enc,
            src.as_posix(),
        ]
        subprocess.run(cmd, check=True)
        d = EbmlDemuxer()
        events = d.feed(src.read_bytes()) + d.end()
        out = tmp_path / f"{codec}.ogg"
        out.write_bytes(mux(events))
        assert count_frames(out) == count_frames(src)


def test_page_round_trip_and_crc() -> None:
    page = OggPage(0x02, 1234, 77, 3, [255, 10], b"x" * 265)
    raw = bytes(page)
    parsed, length = OggPage.parse(raw + b"trailing")
    assert length == len(raw) and parsed == page
    bad = bytearray(raw)
    bad[40] ^= 1
    with pytest.raises(FormatError, match="CRC mismatch at byte 0"):
        OggPage.parse(bad)
    with pytest.raises(Truncated):
        OggPage.parse(raw[:-1])


def test_opus_durations_and_xiph() -> None:
    assert opus_samples(bytes([0xFC])) == 960  # CELT 20 ms, one frame
    assert opus_samples(bytes([0x19])) == 2880 * 2  # SILK 60 ms, two frames (code 1)
    assert opus_samples(bytes([0x03, 0x03])) == 480 * 3
    headers = [b"a" * 300, b"bb", b"c" * 1000]
    assert xiph_unlace(xiph_lace(headers)) == headers


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_pages(data: bytes) -> None:
    try:
        OggPage.parse(b"OggS" + data)
    except FormatError:
        pass
    d = OggDemuxer()
    try:
        d.feed(b"OggS\x00\x02" + data)
        d.end()
    except FormatError:
        pass


@pytest.mark.parametrize("name", ["opus", "vorbis"])
def test_ogg_audio_into_webm(audio_media: dict[str, Path], tmp_path: Path, name: str) -> None:
    """Ogg packets and init data are what the Matroska muxer expects (WebM plays them)."""
    from mistcodecs.ebml import EbmlMuxer

    src = audio_media[name]
    _d, events = demux(src.read_bytes())
    tracks, packets = split(events)
    m = EbmlMuxer(tracks, webm=True)
    out = tmp_path / "a.webm"
    out.write_bytes(m.header() + b"".join(m.packet(p) for p in packets[1]) + m.end())
    assert count_frames(out) == count_frames(src)
    probed = probe_packets(out)
    assert len(probed) == len(packets[1])
    for a, b in zip(packets[1], probed, strict=True):
        # Matroska cannot store negative times: a Vorbis lead-in packet is clamped to 0
        want = a.dts if name == "opus" else max(a.dts, 0)  # Opus: CodecDelay keeps -pre-skip
        assert b.pts_ms is not None and abs(want - b.pts_ms) <= 1
