"""Muxer round trips: demux -> fragment / progressive mux -> independent decoders."""

from __future__ import annotations

import random
import subprocess
from array import array
from pathlib import Path

import av
import pytest

from mistcodecs.mp4 import Mp4Demuxer, buffer_reader
from mistcodecs.mp4.boxes import find_path, payload
from mistcodecs.mp4.demux import SampleTable
from mistcodecs.mp4.fragment import FragmentStream, Mp4FragmentMuxer
from mistcodecs.mp4.progressive import Mp4ProgressiveMuxer
from mistcodecs.mp4.records import Elst
from shm.model import Packet, TrackMeta
from tests.codecs_mp4.conftest import ffprobe_packets

ROUND_TRIP = ["h264_aac.mp4", "hevc_aac.mp4", "vp9_opus.mp4", "av1.mp4", "h264_aac.mov"]


def _demux(path: Path) -> Mp4Demuxer:
    data = path.read_bytes()
    return Mp4Demuxer(buffer_reader(data), len(data))


def _decode_counts(path: Path) -> dict[int, int]:
    """Frames decoded per stream by PyAV; decode errors raise."""
    counts: dict[int, int] = {}
    with av.open(str(path)) as container:
        for packet in container.demux():
            for _frame in packet.decode():
                counts[packet.stream.index] = counts.get(packet.stream.index, 0) + 1
    return counts


def _ffmpeg_clean(path: Path) -> None:
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def _md5(path: Path) -> str:
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "md5", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def _compare(source: Path, output: Path, shift: int = 0) -> None:
    src = ffprobe_packets(source)
    out = ffprobe_packets(output)
    assert len(src) == len(out)
    for index in src:
        assert len(out[index]) == len(src[index])
        src_pts = sorted(float(p["pts_time"]) * 1000 for p in src[index])
        out_pts = sorted(float(p["pts_time"]) * 1000 - shift for p in out[index])
        assert all(abs(a - b) <= 1.5 for a, b in zip(src_pts, out_pts, strict=True))
        assert [p["flags"][0] for p in out[index]] == [p["flags"][0] for p in src[index]]
    decoded, expected = _decode_counts(output), _decode_counts(source)
    assert decoded.keys() == expected.keys()
    # AAC priming: without the source's edit list one more (silent) frame may decode
    assert all(abs(decoded[k] - expected[k]) <= 1 for k in expected), (decoded, expected)
    _ffmpeg_clean(output)


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_fragment_muxer_round_trip(media: dict[str, Path], name: str, tmp_path: Path) -> None:
    if name not in media:
        pytest.skip(f"encoder for {name} not available")
    demux = _demux(media[name])
    tracks = demux.tracks()
    packets = list(demux.packets())
    shift = -min(0, min(p.dts for p in packets))  # what the muxer adds itself
    muxer = Mp4FragmentMuxer(tracks)
    out = bytearray(muxer.init_segment())
    by_track: dict[int, list[Packet]] = {}
    seq = 1
    video = next((t.id for t in tracks if t.type == "video"), None)
    for p in packets:
        if p.track == video and p.keyframe and by_track.get(video):
            out += muxer.fragment(by_track, seq, end=p.dts)
            seq += 1
            by_track = {}
        by_track.setdefault(p.track, []).append(p)
    ends = {
        t.id: demux.sample_table(t.id).dts[0] + demux.sample_table(t.id).duration_ms for t in tracks
    }
    out += muxer.fragment(by_track, seq, end=ends)
    assert muxer.shift_ms == shift
    path = tmp_path / "out.mp4"
    path.write_bytes(bytes(out))
    _compare(media[name], path, shift)


def test_fragment_stream_and_segments(media: dict[str, Path], tmp_path: Path) -> None:
    demux = _demux(media["h264_aac.mp4"])
    tracks = demux.tracks()
    packets = [Packet(p.track, p.dts + 100, p.offset, p.keyframe, p.data) for p in demux.packets()]
    stream = FragmentStream(tracks)
    pieces = [stream.header()]
    pieces += [stream.packet(p) for p in packets]
    pieces.append(stream.end())
    fragments = [p for p in pieces[1:] if p]
    assert len(fragments) == 3  # one per video keyframe (1 s GOP, 3 s)
    path = tmp_path / "live.mp4"
    path.write_bytes(b"".join(pieces))
    _compare(media["h264_aac.mp4"], path, 100)
    # a CMAF segment made of LL-HLS parts, then the init: same media again
    muxer = Mp4FragmentMuxer(tracks)
    by_track: dict[int, list[Packet]] = {}
    for p in packets:
        by_track.setdefault(p.track, []).append(p)
    parts = muxer.parts(by_track, 1, 300)
    assert len(parts) >= 9
    segment = muxer.segment(by_track, 1, part_ms=300)
    assert segment[4:8] == b"styp" and segment.endswith(parts[-1])
    path2 = tmp_path / "cmaf.mp4"
    path2.write_bytes(muxer.init_segment() + segment[segment.index(b"moof") - 4 :])
    _compare(media["h264_aac.mp4"], path2, 100)


@pytest.mark.parametrize("name", ["h264_aac.mp4", "frag.mp4", "vp9_opus.mp4", "delayed_audio.mp4"])
def test_progressive_muxer_round_trip_and_ranges(
    media: dict[str, Path], name: str, tmp_path: Path
) -> None:
    if name not in media:
        pytest.skip(f"encoder for {name} not available")
    demux = _demux(media[name])
    tracks = demux.tracks()
    index = {t.id: demux.sample_table(t.id) for t in tracks}
    ends = {  # presentation end: last pts plus one frame, as outputs/http/vod.py passes it
        t.id: max(d + o for d, o in zip(index[t.id].dts, index[t.id].offset, strict=True))
        + (index[t.id].dts[-1] - index[t.id].dts[-2])
        for t in tracks
    }
    muxer = Mp4ProgressiveMuxer(tracks, index, end_ms=ends)
    header = muxer.header()
    assert header[4:8] == b"ftyp"
    full = b"".join(muxer.read_range(0, muxer.size, demux.read_sample))
    assert len(full) == muxer.size
    path = tmp_path / "vod.mp4"
    path.write_bytes(full)
    _compare(media[name], path)
    # the file re-demuxes to the same samples
    again = _demux(path)
    for t in tracks:
        assert list(again.sample_table(t.id).size) == list(index[t.id].size)
        assert list(again.sample_table(t.id).keyframe) == list(index[t.id].keyframe)
    # arbitrary Range requests equal the same slice of the whole file
    rng = random.Random(7)
    for _ in range(200):
        a = rng.randrange(muxer.size)
        b = min(muxer.size, a + rng.choice([1, 2, 100, 5000, 100000]))
        assert b"".join(muxer.read_range(a, b, demux.read_sample)) == full[a:b]
    piece, inner = muxer.locate(len(header))
    assert inner == 0 and muxer.piece(piece).start == len(header)
    with pytest.raises(IndexError):
        muxer.locate(muxer.size)


def test_fragment_muxer_native_timescales(media: dict[str, Path], tmp_path: Path) -> None:
    """Audio at its sample rate, video at 90 kHz: times still land within 1 ms."""
    demux = _demux(media["h264_aac.mp4"])
    tracks = demux.tracks()
    scales = {t.id: (t.rate if t.type == "audio" else 90000) for t in tracks}
    muxer = Mp4FragmentMuxer(tracks, timescale=scales)
    by_track: dict[int, list[Packet]] = {}
    for p in demux.packets():
        by_track.setdefault(p.track, []).append(p)
    ends = {
        t.id: demux.sample_table(t.id).dts[0] + demux.sample_table(t.id).duration_ms for t in tracks
    }
    path = tmp_path / "scaled.mp4"
    path.write_bytes(muxer.init_segment() + muxer.segment(by_track, 1, end=ends))
    _compare(media["h264_aac.mp4"], path, muxer.shift_ms or 0)
    with av.open(str(path)) as container:
        assert [s.time_base.denominator for s in container.streams] == [
            scales[t.id] for t in tracks
        ]


@pytest.mark.parametrize(
    "name", ["mp3.mp4", "flac.mp4", "ac3.mp4", "vp9_opus.mp4", "pcm_le.mov", "pcm_be.mov"]
)
def test_audio_sample_entries_survive_both_muxers(
    media: dict[str, Path], name: str, tmp_path: Path
) -> None:
    """MP3 (esds 0x6B), FLAC (dfLa), AC-3 (dac3) and Opus (dOps) written by us, read
    back by FFmpeg."""
    if name not in media:
        pytest.skip("encoder missing")
    demux = _demux(media[name])
    tracks = demux.tracks()
    stream = FragmentStream(tracks, fragment_ms=300)
    pieces = [stream.header(), *(stream.packet(p) for p in demux.packets()), stream.end()]
    assert sum(1 for p in pieces[1:] if p) >= (3 if len(tracks) == 1 else 1)  # audio: every 300 ms
    live = tmp_path / "live.mp4"
    live.write_bytes(b"".join(pieces))
    _compare(media[name], live, stream.muxer.shift_ms or 0)
    index = {t.id: demux.sample_table(t.id) for t in tracks}
    vod = Mp4ProgressiveMuxer(tracks, index)
    path = tmp_path / "vod.mp4"
    path.write_bytes(b"".join(vod.read_range(0, vod.size, demux.read_sample)))
    _compare(media[name], path)
    if name.startswith("pcm"):  # lossless: the decoded samples are identical
        assert _md5(path) == _md5(live) == _md5(media[name])


def test_muxable_codecs_have_sample_entries() -> None:
    from mistcodecs.errors import FormatError
    from mistcodecs.mp4 import MUXABLE_CODECS
    from mistcodecs.mp4.sampleentry import SampleEntry, write_sample_entry
    from shm.model import TrackMeta

    inits = {
        "opus": b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00",
        "FLAC": b"fLaC\x80\x00\x00\x22" + bytes(34),
        "AAC": b"\x11\x90",
        "H264": b"\x01\x64\x00\x1f\xff\xe0\x00",
    }
    for codec in sorted(MUXABLE_CODECS):
        kind = "video" if codec in ("H264", "HEVC", "AV1", "VP8", "VP9") else "audio"
        track = TrackMeta(
            1,
            kind,
            codec,
            init=inits.get(codec, b""),
            width=64,
            height=48,
            rate=48000,
            channels=2,
            size=16,
        )
        entry_box = write_sample_entry(track)
        entry = SampleEntry.parse(entry_box[4:8].decode(), entry_box[8:])
        assert entry.codec == codec
        if kind == "audio":
            assert entry.channels == 2 and entry.rate == 48000
        else:
            assert (entry.width, entry.height) == (64, 48)
    with pytest.raises(FormatError):
        write_sample_entry(TrackMeta(1, "audio", "vorbis"))


def _cut(table: SampleTable, count: int) -> SampleTable:
    """The first ``count`` samples in decode order (what a ``?stop=`` leaves)."""
    return SampleTable(
        table.track_id,
        table.dts[:count],
        table.offset[:count],
        table.size[:count],
        table.keyframe[:count],
        table.pos[:count],
    )


def _frames_shown(path: Path) -> int:
    """Video frames an edit-list-honouring player (ffprobe) shows."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
           "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)]  # fmt: skip
    return int(subprocess.run(cmd, check=True, capture_output=True, timeout=60).stdout)


@pytest.mark.parametrize("explicit_end", [False, True])
def test_progressive_edit_list_covers_reordered_frames_at_a_stop(
    media: dict[str, Path], tmp_path: Path, explicit_end: bool
) -> None:
    """Cut after a frame that is shown before frames decoded earlier (B-frames): the
    presentation must end after the latest pts plus one frame, not after the last dts."""
    demux = _demux(media["h264_aac.mp4"])
    video = next(t for t in demux.tracks() if t.type == "video")
    table = demux.sample_table(video.id)
    pts = [d + o for d, o in zip(table.dts, table.offset, strict=True)]
    count = next(k for k in range(len(pts) // 2, len(pts)) if pts[k - 1] < max(pts[:k]))
    index = {video.id: _cut(table, count)}
    frame = table.dts[1] - table.dts[0]
    ends = {video.id: max(pts[:count]) + frame} if explicit_end else None
    muxer = Mp4ProgressiveMuxer([video], index, end_ms=ends)
    path = tmp_path / "stop.mp4"
    path.write_bytes(b"".join(muxer.read_range(0, muxer.size, demux.read_sample)))
    assert _frames_shown(path) == count
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        shown = float(stream.duration * stream.time_base) if stream.duration else 0.0
    assert abs(shown * 1000 - (max(pts[:count]) + frame - min(pts[:count]))) <= frame


def test_progressive_presentation_end_from_the_latest_pts() -> None:
    """Reordering only at the end (an encoder that starts without B-frames): the edit
    list still runs to the latest pts plus one sample duration when no end_ms is given."""
    n = 20
    # one frame of reordering throughout, three at the end: the frame decoded third
    # from last is shown last, later than the last dts plus one frame
    offsets = [40] * (n - 3) + [160, 40, 40]
    dts = [40 * i for i in range(n)]
    index = {
        1: SampleTable(
            1,
            array("q", dts),
            array("q", offsets),
            array("q", [10] * n),
            bytearray([1] + [0] * (n - 1)),
            array("q", [0] * n),
        )
    }
    meta = TrackMeta(1, "video", "H264", b"\x01\x64\x00\x0a\xff\xe0\x00", width=16, height=16)
    muxer = Mp4ProgressiveMuxer([meta], index)
    header = muxer.header()
    read = buffer_reader(header)
    elst = find_path(read, 0, len(header), "moov/trak/edts/elst")
    assert elst is not None
    empty, edit = Elst.parse(payload(read, elst)).entries
    latest = max(d + o for d, o in zip(dts, offsets, strict=True))
    assert (empty.media_time, empty.segment_duration) == (-1, 40)  # first pts is 40
    assert edit.media_time == 40 and 40 + edit.segment_duration == latest + 40
