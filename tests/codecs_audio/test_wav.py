"""WAV demuxer/muxer against ffprobe and PyAV decoding."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import UsageError
from mistcodecs.ebml import EbmlDemuxer
from mistcodecs.errors import FormatError, Truncated
from mistcodecs.wav import LIVE_SIZE, WavDemuxer, WavMuxer
from shm.model import Packet, TrackMeta
from tests.codecs_ebml.media import make, probe_streams, split


def demux(data: bytes, chunk: int = 0) -> list[TrackMeta | Packet]:
    d = WavDemuxer()
    events: list[TrackMeta | Packet] = []
    step = chunk or len(data)
    for i in range(0, len(data), step):
        events += d.feed(data[i : i + step])
    return events + d.end()


def samples(path: Path) -> np.ndarray:
    with av.open(path.as_posix()) as c:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])


def data_chunk(raw: bytes) -> bytes:
    pos = raw.index(b"data")
    (size,) = struct.unpack_from("<I", raw, pos + 4)
    return raw[pos + 8 : pos + 8 + size]


@pytest.mark.parametrize(("name", "bits"), [("wav16", 16), ("wav8", 8), ("wav24", 24)])
def test_demux_and_exact_round_trip(
    audio_media: dict[str, Path], tmp_path: Path, name: str, bits: int
) -> None:
    src = audio_media[name]
    raw = src.read_bytes()
    events = demux(raw)
    tracks, packets = split(events)
    stream = probe_streams(src)[0]
    t = tracks[0]
    assert (t.codec, t.rate, t.channels, t.size) == (
        "PCM",
        int(stream["sample_rate"]),
        stream["channels"],
        bits,
    )
    frame_bytes = t.channels * bits // 8
    total = sum(len(p.data) for p in packets[1])
    assert total == len(data_chunk(raw))
    assert int(stream["duration_ts"]) == total // frame_bytes
    # timestamps follow the sample count
    offsets = np.cumsum([0] + [len(p.data) // frame_bytes for p in packets[1][:-1]])
    assert [p.dts for p in packets[1]] == [int(o * 1000 // t.rate) for o in offsets]
    if bits == 16:  # the model is big-endian
        first = bytes(packets[1][0].data)
        assert first[:2] == data_chunk(raw)[1::-1]
    m = WavMuxer(tracks, total_bytes=total)
    out = tmp_path / "out.wav"
    out.write_bytes(m.header() + b"".join(m.packet(p) for p in packets[1]) + m.end())
    assert data_chunk(out.read_bytes()) == data_chunk(raw)
    assert np.array_equal(samples(out), samples(src))
    assert [bytes(p.data) for p in demux(out.read_bytes(), 333) if isinstance(p, Packet)] == [
        bytes(p.data) for p in packets[1]
    ]


def test_live_header_plays(audio_media: dict[str, Path], tmp_path: Path) -> None:
    src = audio_media["wav16"]
    tracks, packets = split(demux(src.read_bytes()))
    m = WavMuxer(tracks)
    head = m.header()
    assert struct.unpack_from("<I", head, 4)[0] == LIVE_SIZE and head[-4:] == b"\xff\xff\xff\xff"
    out = tmp_path / "live.wav"
    out.write_bytes(head + b"".join(m.packet(p) for p in packets[1]))
    assert np.array_equal(samples(out), samples(src))
    assert len(split(demux(out.read_bytes()))[1][1]) == len(packets[1])


def test_pcm_from_matroska_to_wav(tmp_path: Path) -> None:
    mkv = make(tmp_path / "pcm", "pcm", seconds=1.0)
    d = EbmlDemuxer()
    tracks, packets = split(d.feed(mkv.read_bytes()) + d.end())
    m = WavMuxer(tracks)
    out = tmp_path / "from_mkv.wav"
    out.write_bytes(m.header() + b"".join(m.packet(p) for p in packets[1]))
    assert np.array_equal(samples(out), samples(mkv))


def test_errors() -> None:
    with pytest.raises(FormatError, match="not a RIFF/WAVE"):
        demux(b"RIFX\0\0\0\0WAVEfmt ")
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)  # IEEE float: not PCM
    with pytest.raises(FormatError, match="not PCM"):
        demux(b"RIFF\0\0\0\0WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data\0\0\0\0")
    with pytest.raises(Truncated):
        demux(b"RIFF\0\0\0\0WAVEfm")
    with pytest.raises(UsageError):
        WavMuxer([TrackMeta(1, "audio", "AAC")])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz(data: bytes) -> None:
    try:
        demux(b"RIFF\0\0\0\0WAVE" + data)
    except FormatError:
        pass
