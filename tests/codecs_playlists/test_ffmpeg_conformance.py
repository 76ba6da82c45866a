"""Our playlists against FFmpeg: parse what ffmpeg writes, and let ffmpeg/PyAV play what we write.

Media is generated here with the ffmpeg CLI: 4 s of 25 fps H.264 (1 s GOP) + AAC.
PyAV's wheel has no DASH demuxer, so MPDs are decoded with Debian's ffprobe.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import av
import pytest

from mistcodecs.dash import mpd_for_tracks, parse_mpd, segment_list
from mistcodecs.hls import (
    InitSection,
    MasterPlaylist,
    MediaPlaylist,
    Segment,
    Variant,
    check_media_playlist,
    cut_segments,
    parse_master_playlist,
    parse_media_playlist,
)
from mistcodecs.mp4 import Mp4Demuxer, buffer_reader

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")

FRAMES = 100  # 4 s at 25 fps
SOURCE = [
    "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", "4", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-g", "25", "-keyint_min", "25",
    "-sc_threshold", "0", "-c:a", "aac",
]  # fmt: skip


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, timeout=60)


def video_frames_pyav(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def video_frames_ffprobe(path: Path) -> int:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "json", str(path)],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    return int(json.loads(out)["streams"][0]["nb_read_frames"])


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hlsmedia")
    (root / "ts").mkdir()
    ffmpeg(*SOURCE, "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod",
           "-master_pl_name", "master.m3u8", root / "ts" / "index.m3u8")  # fmt: skip
    (root / "fmp4").mkdir()
    ffmpeg(*SOURCE, "-f", "hls", "-hls_time", "1", "-hls_segment_type", "fmp4",
           "-hls_playlist_type", "vod", root / "fmp4" / "index.m3u8")  # fmt: skip
    (root / "seg").mkdir()
    ffmpeg(*SOURCE, "-f", "segment", "-segment_time", "1", "-segment_list", root / "seg" / "list.csv",
           "-segment_list_type", "csv", root / "seg" / "s%d.ts")  # fmt: skip
    (root / "dash").mkdir()
    ffmpeg(
        *SOURCE[:4],
        *SOURCE[8:],
        "-an",
        "-f",
        "dash",
        "-seg_duration",
        "1",
        root / "dash" / "ff.mpd",
    )
    return root


def test_parse_ffmpeg_ts_playlists(media: Path) -> None:
    pl = parse_media_playlist((media / "ts" / "index.m3u8").read_text())
    assert check_media_playlist(pl) == []
    assert pl.endlist and pl.playlist_type == "VOD"
    assert len(pl.segments) == 4 and abs(pl.duration - 4.0) < 0.05
    assert all((media / "ts" / s.uri).is_file() for s in pl.segments)
    master = parse_master_playlist((media / "ts" / "master.m3u8").read_text())
    assert master.variants[0].uri == "index.m3u8" and master.variants[0].resolution == (320, 240)
    assert master.variants[0].codecs is not None and "mp4a.40.2" in master.variants[0].codecs


def test_parse_ffmpeg_fmp4_playlist_and_replay_ours(media: Path) -> None:
    pl = parse_media_playlist((media / "fmp4" / "index.m3u8").read_text())
    assert check_media_playlist(pl) == []
    assert pl.segments[0].init is not None and pl.segments[0].init.uri == "init.mp4"
    # re-render with our renderer (our own version/target computation) and let PyAV play it
    ours = MediaPlaylist(
        segments=[Segment(s.duration, s.uri, init=s.init) for s in pl.segments],
        playlist_type="VOD",
        endlist=True,
        independent_segments=True,
    )
    path = media / "fmp4" / "ours.m3u8"
    path.write_text(ours.render())
    assert parse_media_playlist(path.read_text()).version == 6
    assert video_frames_pyav(path) == FRAMES


@pytest.fixture(scope="module")
def mist_segments(media: Path) -> list[Segment]:
    """ffmpeg's segments renamed as MistServer's (<from>_<until>.ts), durations from
    the segment muxer's own list."""
    segments = []
    with (media / "seg" / "list.csv").open() as fh:
        rows = list(csv.reader(fh))
    for name, start, end in rows:
        start_ms, end_ms = round(float(start) * 1000), round(float(end) * 1000)
        target = media / "seg" / f"{start_ms}_{end_ms}.ts"
        (media / "seg" / name).replace(target)
        segments.append(Segment((end_ms - start_ms) / 1000, target.name))
    return segments


def test_our_playlist_over_ffmpeg_segments(media: Path, mist_segments: list[Segment]) -> None:
    pl = MediaPlaylist(segments=mist_segments, endlist=True, playlist_type="VOD")
    path = media / "seg" / "index.m3u8"
    path.write_text(pl.render())
    assert (
        parse_media_playlist(path.read_text()).target_duration == 2
    )  # the first segment is 1.08 s
    master = MasterPlaylist(
        variants=[
            Variant("index.m3u8", 200_000, codecs="avc1.42c00d,mp4a.40.2", resolution=(320, 240))
        ]
    )
    (media / "seg" / "master.m3u8").write_text(master.render())
    assert video_frames_pyav(path) == FRAMES
    assert video_frames_pyav(media / "seg" / "master.m3u8") == FRAMES
    assert video_frames_ffprobe(path) == FRAMES


def test_window_playlist_plays_what_it_lists(media: Path, mist_segments: list[Segment]) -> None:
    """A window starting at MSN 1: players get exactly the listed segments (3 s)."""
    pl = MediaPlaylist(segments=mist_segments[1:], media_sequence=1, endlist=True)
    path = media / "seg" / "window.m3u8"
    path.write_text(pl.render())
    assert parse_media_playlist(path.read_text()).first_msn == 1
    first = video_frames_pyav(media / "seg" / mist_segments[0].uri)
    assert 0 < first < FRAMES
    assert video_frames_pyav(path) == FRAMES - first


def test_our_mpd_over_ffmpeg_cmaf_segments(media: Path) -> None:
    """Rename ffmpeg's DASH segments to MistServer's layout and describe them with our MPD."""
    theirs = parse_mpd((media / "dash" / "ff.mpd").read_text())
    rep = theirs.adaptation_sets[0].representations[0]
    ours_dir = media / "dash" / "1"
    ours_dir.mkdir()
    (media / "dash" / rep.initialization.replace("$RepresentationID$", rep.id)).replace(
        ours_dir / "init.m4s"
    )
    spans = []
    for t, d, url in segment_list(rep):
        start, end = t * 1000 // rep.timescale, (t + d) * 1000 // rep.timescale
        (media / "dash" / url).replace(ours_dir / f"chunk_{start}.m4s")
        spans.append((start, end))
    with (ours_dir / "init.m4s").open("rb") as fh:
        init = fh.read()
    (track,) = Mp4Demuxer(buffer_reader(init), len(init)).tracks()
    track.id = 1
    mpd = mpd_for_tracks([(track, spans)], live=False, duration_s=spans[-1][1] / 1000)
    made = mpd.adaptation_sets[0].representations[0]
    assert (made.codecs, made.width, made.height) == (rep.codecs, 320, 240)
    path = media / "dash" / "index.mpd"
    path.write_text(mpd.render())
    assert parse_mpd(path.read_text()) == mpd
    assert video_frames_ffprobe(path) == FRAMES


def test_segmenter_agrees_with_real_keyframes(media: Path) -> None:
    """Keyframe times read back with PyAV from the encoded TS: 1 s GOPs cut into 1 s segments."""
    keys: list[int] = []
    with av.open(str(media / "ts" / "index.m3u8")) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.is_keyframe and packet.pts is not None and packet.time_base is not None:
                keys.append(round(float(packet.pts * packet.time_base) * 1000))
    assert len(keys) == 4
    spans = cut_segments(keys, 1900, end_ms=keys[0] + 4000)
    assert [s.end_ms - s.start_ms for s in spans] == [1000] * 4
    ours = MediaPlaylist(
        segments=[Segment(s.duration, f"index{s.msn}.ts") for s in spans], endlist=True
    )
    theirs = parse_media_playlist((media / "ts" / "index.m3u8").read_text())
    assert [s.uri for s in ours.segments] == [s.uri for s in theirs.segments]
    assert [s.duration for s in ours.segments] == [round(s.duration, 3) for s in theirs.segments]
    assert isinstance(InitSection("x").uri, str)
