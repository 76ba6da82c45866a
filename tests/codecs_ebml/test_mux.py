"""EbmlMuxer output decoded by ffprobe/PyAV, and demuxed again by us."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import UsageError
from mistcodecs.ebml import EbmlDemuxer, EbmlMuxer, ElementHeader, supports
from mistcodecs.ebml import schema as s
from mistcodecs.errors import FormatError
from shm.model import Packet, TrackMeta
from tests.codecs_ebml.media import FFMPEG, count_frames, make_subtitled, probe_packets, split


def demux(data: bytes) -> list[TrackMeta | Packet]:
    d = EbmlDemuxer()
    return d.feed(data) + d.end()


def mux(events: list[TrackMeta | Packet], webm: bool) -> bytes:
    tracks, _ = split(events)
    m = EbmlMuxer(tracks, webm=webm)
    return m.header() + b"".join(m.packet(e) for e in events if isinstance(e, Packet)) + m.end()


@pytest.mark.parametrize(
    ("name", "webm"),
    [
        ("vp9_opus", True),
        ("vp8_vorbis", True),
        ("h264_aac", False),
        ("hevc_ac3", False),
        ("pcm", False),
        ("mp3_in_mkv", False),
    ],
)
def test_round_trip(ebml_media: dict[str, Path], tmp_path: Path, name: str, webm: bool) -> None:
    src = ebml_media[name]
    events = demux(src.read_bytes())
    out = tmp_path / ("out.webm" if webm else "out.mkv")
    out.write_bytes(mux(events, webm))
    # an independent decoder sees the same frames, without errors
    assert count_frames(out) == count_frames(src)
    tracks, packets = split(events)
    probed = probe_packets(out)
    for index, t in enumerate(tracks):
        theirs = [p for p in probed if p.stream == index]
        mine = packets[t.id]
        assert len(theirs) == len(mine)
        for a, b in zip(mine, theirs, strict=True):
            assert b.pts_ms is not None and abs(a.pts - b.pts_ms) <= 1
            if t.type == "video":
                assert a.keyframe == b.keyframe
    # and our demuxer reads back exactly what went in
    again = demux(out.read_bytes())
    t2, packets2 = split(again)
    for tid, sent in packets.items():  # per track: interleaving may differ (held-back video)
        assert [(p.pts, p.dts, p.keyframe, bytes(p.data)) for p in packets2[tid]] == [
            (p.pts, p.dts, p.keyframe, bytes(p.data)) for p in sent
        ]
    assert [(t.codec, t.init, t.width, t.height, t.rate, t.channels) for t in t2] == [
        (t.codec, t.init, t.width, t.height, t.rate, t.channels) for t in tracks
    ]


@pytest.mark.parametrize(("name", "webm"), [("h264_aac", False), ("vp9_opus", True)])
def test_pyav_decodes_cross_container(
    ebml_media: dict[str, Path], tmp_path: Path, name: str, webm: bool
) -> None:
    """Packets from the demuxer, muxed by us, decode with PyAV with monotonic frame times."""
    events = demux(ebml_media[name].read_bytes())
    out = tmp_path / ("x.webm" if webm else "x.mkv")
    out.write_bytes(mux(events, webm))
    _tracks, packets = split(events)
    counts: dict[int, int] = {}
    for index in (0, 1):
        counts[index] = 0
        last = -1.0
        with av.open(out.as_posix()) as container:
            for frame in container.decode(container.streams[index]):
                counts[index] += 1
                if isinstance(frame, av.VideoFrame) and frame.time is not None:
                    assert frame.time >= last
                    last = frame.time
    assert counts[0] == len(packets[1])  # every video frame decodes
    assert counts[1] >= len(packets[2]) - 1


def test_clusters_split_on_keyframes_and_time() -> None:
    video = TrackMeta(1, "video", "VP8", width=16, height=16, fpks=25000)
    audio = TrackMeta(
        2,
        "audio",
        "opus",
        init=b"OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00",
        rate=48000,
        channels=1,
    )
    m = EbmlMuxer([video, audio], webm=True)
    data = bytearray(m.header())
    sent: list[Packet] = []
    for i in range(500):  # 20 s of video, a keyframe every 8 s; audio alongside
        sent.append(Packet(1, i * 40, 0, i % 200 == 0, bytes([i % 256]) * 5))
        sent.append(Packet(2, i * 40 + 7, 0, True, b"\xfc" + bytes([i % 256])))
    for p in sent:
        data += m.packet(p)
    clusters: list[int] = []

    def seen(hdr: ElementHeader, depth: int, body: bytes | None) -> None:
        if hdr.id == s.CLUSTER:
            clusters.append(hdr.offset)
            assert hdr.size is None  # live: unknown size

    d = EbmlDemuxer(on_element=seen)
    events = d.feed(bytes(data)) + d.end()
    got = [e for e in events if isinstance(e, Packet)]
    assert len(got) == len(sent)
    assert [(p.track, p.pts) for p in got] == [(p.track, p.pts) for p in sent]
    assert 4 <= len(clusters) <= 7  # keyframes at 0, 8, 16 s plus 5 s cuts


def test_relative_timestamp_overflow_starts_cluster() -> None:
    audio = TrackMeta(1, "audio", "MP3", rate=44100, channels=1)
    m = EbmlMuxer([audio], webm=False)
    data = (
        m.header()
        + m.packet(Packet(1, 0, 0, True, b"a"))
        + m.packet(Packet(1, 40000, 0, True, b"b"))
    )
    events = demux(data)
    assert [p.pts for p in events if isinstance(p, Packet)] == [0, 40000]


def test_webm_codec_rules() -> None:
    assert (
        supports("VP9", webm=True)
        and not supports("H264", webm=True)
        and supports("H264", webm=False)
    )
    with pytest.raises(UsageError, match="WebM"):
        EbmlMuxer([TrackMeta(1, "video", "H264")], webm=True)
    m = EbmlMuxer([TrackMeta(1, "video", "VP8")], webm=True)
    m.header()
    with pytest.raises(UsageError):
        m.packet(Packet(9, 0, 0, True, b"x"))


def test_av1_round_trip(av1_file: Path, tmp_path: Path) -> None:
    events = demux(av1_file.read_bytes())
    out = tmp_path / "av1.webm"
    out.write_bytes(mux(events, webm=True))
    assert count_frames(out) == count_frames(av1_file)
    assert [bytes(p.data) for p in demux(out.read_bytes()) if isinstance(p, Packet)] == [
        bytes(p.data) for p in events if isinstance(p, Packet)
    ]


@pytest.mark.parametrize(("name", "webm"), [("h264_aac", False), ("vp9_opus", True)])
def test_live_output_through_a_pipe(ebml_media: dict[str, Path], name: str, webm: bool) -> None:
    """Progressive (non-seekable) reading, as a live HTTP viewer does: ffmpeg reads stdin."""
    events = demux(ebml_media[name].read_bytes())
    data = mux(events, webm)
    cmd = [FFMPEG, "-v", "error", "-i", "pipe:0", "-map", "0", "-f", "framemd5", "-"]
    res = subprocess.run(cmd, input=data, capture_output=True, check=True, timeout=60)
    assert res.stderr == b""
    lines = [ln for ln in res.stdout.decode().splitlines() if ln and not ln.startswith("#")]
    _tracks, packets = split(events)
    per_stream = [sum(1 for ln in lines if ln.startswith(f"{i},")) for i in (0, 1)]
    assert per_stream[0] == len(packets[1])
    assert per_stream[1] >= len(packets[2]) - 1


def test_duration_for_vod(tmp_path: Path) -> None:
    track = TrackMeta(1, "audio", "MP3", rate=44100, channels=1)
    m = EbmlMuxer([track], webm=False, duration_ms=12345)
    out = tmp_path / "d.mkv"
    out.write_bytes(m.header())
    d = EbmlDemuxer()
    d.feed(out.read_bytes())
    assert d.duration_ms == 12345


def test_subtitle_track_round_trip(tmp_path: Path) -> None:
    src = make_subtitled(tmp_path / "subs", "srt")
    events = demux(src.read_bytes())
    out = tmp_path / "subs_out.mkv"
    out.write_bytes(mux(events, webm=False))
    probed = [p for p in probe_packets(out) if p.stream == 1]
    assert [round(p.pts_ms or 0) for p in probed] == [200, 1000]
    with av.open(str(out)) as container:  # an independent reader sees the cue durations
        stream = container.streams.subtitles[0]
        cues = [(p.pts, p.duration, bytes(p)) for p in container.demux(stream) if p.size]
    scale = float(stream.time_base or 1) * 1000
    assert [(round(pts * scale), round(dur * scale)) for pts, dur, _ in cues] == [
        (200, 700),
        (1000, 500),
    ]
    assert [text.decode().strip() for _, _, text in cues] == ["Hello", "World"]
    tracks, packets = split(demux(out.read_bytes()))
    assert tracks[1].codec == "subtitle"
    assert [bytes(p.data) for p in packets[tracks[1].id]] == [
        bytes(p.data) for p in split(events)[1][tracks[1].id]
    ]


def test_subtitle_packet_without_duration_prefix_is_refused() -> None:
    m = EbmlMuxer([TrackMeta(1, "meta", "subtitle")], webm=False)
    m.header()
    with pytest.raises(FormatError, match="needs 4"):
        m.packet(Packet(1, 0, 0, True, b"hi"))


@pytest.mark.slow
@settings(
    max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_fuzz_demuxer_mutated_long(ebml_media: dict[str, Path], data: st.DataObject) -> None:
    original = ebml_media[
        data.draw(st.sampled_from(["h264_aac", "vp8_vorbis", "pcm"]))
    ].read_bytes()[:12000]
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 12))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    d = EbmlDemuxer()
    try:
        d.feed(bytes(raw))
        d.end()
    except FormatError:
        pass
