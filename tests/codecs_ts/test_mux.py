"""TsMuxer round trips: our demuxer's output muxed again, read back by FFmpeg."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import pytest

from mistcodecs.ts import TsMuxer
from mistcodecs.ts.mux import START_90K
from mistcodecs.ts.packets import PACKET_SIZE
from shm.model import Packet, TrackMeta
from tests.codecs_ts.media import CODEC_NAMES, demux_all, reference


def mux(tracks: list[TrackMeta], packets: dict[int, list[Packet]]) -> bytes:
    muxer = TsMuxer(tracks)
    order = sorted((p for ps in packets.values() for p in ps), key=lambda p: (p.dts, p.track))
    return muxer.header() + b"".join(muxer.packet(p) for p in order) + muxer.end()


def ffprobe_frames(path: Path) -> list[int]:
    cmd = [
        "ffprobe",
        "-v",
        "error",
        "-count_frames",
        "-show_entries",
        "stream=nb_read_frames",
        "-of",
        "json",
        str(path),
    ]
    info = json.loads(subprocess.run(cmd, check=True, capture_output=True, timeout=60).stdout)
    return [int(s["nb_read_frames"]) for s in info["streams"]]


def decoded_frames(path: Path) -> list[list[int]]:
    """Presentation times of every decoded frame, per stream."""
    out: list[list[int]] = []
    with av.open(str(path)) as container:
        out = [[] for _ in container.streams]
        for frame_stream in container.streams:
            frame_stream.thread_type = "AUTO"
        for packet in container.demux():
            for frame in packet.decode():
                out[packet.stream.index].append(frame.pts)
    return out


@pytest.mark.parametrize(
    "variant", ["h264_aac", "hevc_aac", "h264_mp3", "h264_ac3", "h264_eac3", "h264_opus"]
)
def test_round_trip(ts_files: dict[str, Path], variant: str, tmp_path: Path) -> None:
    source = ts_files[variant]
    _, tracks, packets = demux_all(source.read_bytes())
    data = mux(tracks, packets)
    assert len(data) % PACKET_SIZE == 0
    out = tmp_path / "remux.ts"
    out.write_bytes(data)
    refs = reference(out)
    assert [CODEC_NAMES[r.codec] for r in refs] == [t.codec for t in tracks]
    for meta, ref in zip(tracks, refs, strict=True):
        got = packets[meta.id]
        assert [(p - START_90K) / 90 for p in ref.pts] == [p.pts for p in got]
        assert [(d - START_90K) / 90 for d in ref.dts] == [p.dts for p in got]
        if meta.type == "video":
            assert (ref.width, ref.height) == (meta.width, meta.height)
            assert ref.keys == [p.keyframe for p in got]
        else:
            assert (ref.rate, ref.channels) == (meta.rate, meta.channels)
    assert ffprobe_frames(out) == ffprobe_frames(source)
    original, remuxed = decoded_frames(source), decoded_frames(out)
    assert [len(s) for s in remuxed] == [len(s) for s in original]
    # the same frames come out, shifted by one constant (give or take the 1 ms grid)
    for a, b in zip(original, remuxed, strict=True):
        shifts = [y - x for x, y in zip(a, b, strict=True)]
        assert max(shifts) - min(shifts) < 90


def test_hls_segments_keep_counting(ts_files: dict[str, Path], tmp_path: Path) -> None:
    _, tracks, packets = demux_all(ts_files["h264_aac"].read_bytes())
    muxer = TsMuxer(tracks)
    order = sorted((p for ps in packets.values() for p in ps), key=lambda p: (p.dts, p.track))
    segments: list[bytearray] = []
    counts: list[list[int]] = []
    for p in order:
        if p.track == 1 and p.keyframe:
            segments.append(bytearray(muxer.segment_start()))
            counts.append([0, 0])
        if segments:
            segments[-1] += muxer.packet(p)
            counts[-1][p.track - 1] += 1
    assert len(segments) >= 4
    for n, seg in enumerate(segments):
        path = tmp_path / f"seg{n}.ts"
        path.write_bytes(seg)
        assert ffprobe_frames(path) == counts[n], f"segment {n}"
    joined = b"".join(segments)
    demuxer, tracks2, packets2 = demux_all(joined)
    assert demuxer.cc_errors == 0 and demuxer.problems == []
    pat_packets = [
        joined[i : i + 188]
        for i in range(0, len(joined), 188)
        if joined[i + 1 : i + 3] == b"\x40\x00"
    ]
    assert [p[3] & 0xF for p in pat_packets] == [
        n & 0xF for n in range(len(segments))
    ]  # once per segment, counting on
    assert [t.init for t in tracks2] == [t.init for t in tracks]
    assert [len(packets2[t]) for t in (1, 2)] == [sum(c[t - 1] for c in counts) for t in (1, 2)]


def test_muxer_rejects_tracks_ts_cannot_carry() -> None:
    from mistcodecs.errors import FormatError

    with pytest.raises(FormatError):
        TsMuxer([TrackMeta(1, "video", "VP9")])


def test_header_is_stateless_for_joining_viewers(ts_files: dict[str, Path], tmp_path: Path) -> None:
    """A live muxer serves many viewers: header() for a late joiner must not disturb the
    continuity counters everyone else sees."""
    from mistcodecs.ts import TsDemuxer

    _, tracks, packets = demux_all(ts_files["h264_aac"].read_bytes())
    order = sorted((p for ps in packets.values() for p in ps), key=lambda p: (p.dts, p.track))
    muxer = TsMuxer(tracks)
    early = bytearray(muxer.header())
    late = bytearray()
    half = len(order) // 2
    while not (order[half].track == 1 and order[half].keyframe):
        half += 1
    for n, p in enumerate(order):
        if n == half:
            late += muxer.header()
        data = muxer.packet(p)
        early += data
        if n >= half:
            late += data
    for stream, frames in ((early, len(order)), (late, len(order) - half)):
        demuxer = TsDemuxer()
        events = demuxer.feed(bytes(stream)) + demuxer.end()
        assert demuxer.problems == []
        assert sum(1 for e in events if not isinstance(e, TrackMeta)) == frames
        path = tmp_path / "viewer.ts"
        path.write_bytes(stream)
        assert sum(ffprobe_frames(path)) == frames
