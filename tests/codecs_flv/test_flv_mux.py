"""FlvMuxer round trip: our demuxer -> our muxer -> FFmpeg (PyAV) decodes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mistcodecs.errors import FormatError
from mistcodecs.flv import FlvDemuxer, FlvMuxer, iter_tags
from shm.model import Packet, TrackMeta
from tests.codecs_flv.media import pyav_decode, pyav_packets

CODEC_NAMES = {
    "h264_aac": ("h264", "aac"),
    "h264_mp3": ("h264", "mp3float"),
    "hevc_aac": ("hevc", "aac"),
    "vp9_opus": ("vp9", "opus"),
    "av1_opus": ("libdav1d", "opus"),
}


def remux(src: Path, dst: Path) -> tuple[list[TrackMeta], list[Packet]]:
    d = FlvDemuxer()
    items = d.feed(src.read_bytes()) + d.end()
    tracks = [i for i in items if isinstance(i, TrackMeta)]
    packets = [i for i in items if isinstance(i, Packet)]
    mux = FlvMuxer(tracks)
    dst.write_bytes(
        b"".join([mux.header(), *(mux.packet(p) for p in packets), mux.end(packets[-1].dts)])
    )
    return tracks, packets


@pytest.mark.parametrize("name", sorted(CODEC_NAMES))
def test_round_trip_decodes(flv_files: dict[str, Path], tmp_path: Path, name: str) -> None:
    src = flv_files[name]
    out = tmp_path / "out.flv"
    _tracks, packets = remux(src, out)
    before = pyav_decode(src)
    after = pyav_decode(out)
    for kind in ("video", "audio"):
        codec, count, pts = after[kind]
        assert codec == CODEC_NAMES[name][0 if kind == "video" else 1]
        assert count == before[kind][1] > 0
        assert pts == before[kind][2]
    ref = pyav_packets(out)
    assert [(dts, pts) for dts, pts, _ in ref["video"]] == [
        (p.dts, p.pts) for p in packets if p.track == 1
    ]
    # and our own demuxer reads our output back identically
    d = FlvDemuxer()
    again = [i for i in d.feed(out.read_bytes()) + d.end() if isinstance(i, Packet)]
    assert [(p.track, p.dts, p.offset, p.keyframe, bytes(p.data)) for p in again] == [
        (p.track, p.dts, p.offset, p.keyframe, bytes(p.data)) for p in packets
    ]
    assert all(t.prev_size_ok for t in iter_tags(out.read_bytes()))


def test_pcm_and_refusals(tmp_path: Path) -> None:
    pcm = TrackMeta(2, "audio", "PCM", rate=44100, channels=2, size=16)
    mux = FlvMuxer([pcm])
    samples = bytes(range(200)) * 4  # big-endian s16 in the model
    data = mux.header() + b"".join(
        mux.packet(Packet(2, i * 10, 0, True, samples)) for i in range(20)
    )
    d = FlvDemuxer()
    items = d.feed(data) + d.end()
    assert [i.data for i in items if isinstance(i, Packet)] == [samples] * 20
    assert mux.packet(Packet(7, 0, 0, True, b"x")) == b""
    with pytest.raises(FormatError):
        FlvMuxer([TrackMeta(1, "audio", "vorbis")])
    with pytest.raises(FormatError):
        FlvMuxer([TrackMeta(1, "video", "MPEG2")])
