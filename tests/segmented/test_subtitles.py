"""WebVTT subtitle renditions: listed in both masters, segments hold the cues that overlap
them (with the X-TIMESTAMP-MAP of their media kind), FFmpeg reads the cues back."""

from __future__ import annotations

import io
import json
import subprocess
import threading
from collections.abc import Iterator

import av
import pytest

from mistcodecs.dash import parse_mpd, segment_list
from mistcodecs.hls import check_media_playlist, parse_master_playlist, parse_media_playlist
from shm.model import TrackMeta
from tests.outputs_http.conftest import Frame, Server, Source, publish_vod, unique

from .conftest import SteadyPublisher, fetch

CUES = [(500 + 2500 * i, 1500, f"cue {i}") for i in range(7)]  # start, duration, text


@pytest.fixture(scope="module")
def subbed(vod_clip: Source) -> Iterator[str]:
    sub = TrackMeta(3, "meta", "subtitle", lang="eng")
    frames = [*vod_clip.frames]
    for start, duration, text in CUES:
        frames.append(Frame(3, start, 0, True, duration.to_bytes(4, "big") + text.encode()))
    frames.sort(key=lambda f: (f.dts, f.track))
    name = unique("segsub")
    w = publish_vod(name, Source(vod_clip.path, [*vod_clip.tracks, sub], frames))
    try:
        yield name
    finally:
        w.close()


@pytest.mark.parametrize("prefix, video", [("hls", "1_2"), ("cmaf", "1")])
def test_masters_list_the_subtitles(server: Server, subbed: str, prefix: str, video: str) -> None:
    master = parse_master_playlist(fetch(server, f"/{prefix}/{subbed}/index.m3u8")[2].decode())
    subs = [r for r in master.renditions if r.type == "SUBTITLES"]
    assert [(r.uri, r.language, r.group_id) for r in subs] == [("3/index.m3u8", "eng", "sub")]
    assert all(v.subtitles == "sub" for v in master.variants)
    pl = parse_media_playlist(fetch(server, f"/{prefix}/{subbed}/3/index.m3u8")[2].decode())
    assert check_media_playlist(pl) == [] and pl.endlist
    media = parse_media_playlist(
        fetch(server, f"/{prefix}/{subbed}/{video}/index.m3u8")[2].decode()
    )
    assert [s.duration for s in pl.segments] == [s.duration for s in media.segments]


def test_segments_hold_overlapping_cues(server: Server, subbed: str) -> None:
    pl = parse_media_playlist(fetch(server, f"/hls/{subbed}/3/index.m3u8")[2].decode())
    found: dict[str, int] = {}
    for seg in pl.segments:
        status, headers, body, _ = fetch(server, f"/hls/{subbed}/3/{seg.uri}")
        assert status == 200 and headers["content-type"].startswith("text/vtt")
        text = body.decode()
        assert text.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n")
        lo, hi = (int(x) for x in seg.uri[:-4].split("_"))
        for start, duration, cue in CUES:
            overlaps = start < hi and start + duration > lo
            assert (cue in text) == overlaps, (seg.uri, cue)
            found[cue] = found.get(cue, 0) + overlaps
    assert set(found) == {c[2] for c in CUES} and all(found.values())
    cmaf = fetch(server, f"/cmaf/{subbed}/3/{pl.segments[0].uri}")[2].decode()
    assert "X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000" in cmaf


def test_ffmpeg_reads_the_cues(server: Server, subbed: str) -> None:
    """FFmpeg's HLS demuxer finds the rendition; its WebVTT demuxer reads every segment
    back to the source cues (times in ms, text). (FFmpeg's HLS demuxer does not deliver
    WebVTT packets itself, so each segment is opened on its own.)"""
    with av.open(f"{server.base}/hls/{subbed}/index.m3u8", timeout=20) as c:
        assert [s.codec_context.name for s in c.streams if s.type == "subtitle"] == ["webvtt"]
    pl = parse_media_playlist(fetch(server, f"/hls/{subbed}/3/index.m3u8")[2].decode())
    got: set[tuple[int, int, str]] = set()
    for seg in pl.segments:
        with av.open(f"{server.base}/hls/{subbed}/3/{seg.uri}", format="webvtt", timeout=20) as c:
            for packet in c.demux():
                if packet.size and packet.pts is not None and packet.time_base is not None:
                    start = round(packet.pts * packet.time_base * 1000)
                    end = start + round((packet.duration or 0) * packet.time_base * 1000)
                    got.add((start, end, bytes(packet).decode().strip()))
    assert got == {(start, start + duration, text) for start, duration, text in CUES}


def test_mpd_lists_segmented_webvtt(server: Server, subbed: str) -> None:
    """The MPD has a text AdaptationSet (text/vtt, role subtitle, the track's language)
    whose template names served WebVTT segments; FFmpeg's WebVTT demuxer reads every
    segment back to the source cues, and its dash demuxer finds the subtitle stream."""
    doc = parse_mpd(fetch(server, f"/cmaf/{subbed}/index.mpd")[2])
    text = [a for a in doc.adaptation_sets if a.content_type == "text"]
    assert [(a.mime_type, a.lang, a.role) for a in text] == [("text/vtt", "eng", "subtitle")]
    (rep,) = text[0].representations
    video = next(a for a in doc.adaptation_sets if a.content_type == "video").representations[0]
    assert rep.id == "3" and rep.initialization == "" and rep.timeline == video.timeline
    got: set[tuple[int, int, str]] = set()
    for _, _, uri in segment_list(rep):
        assert uri.startswith("3/chunk_") and uri.endswith(".vtt")
        status, headers, body, _ = fetch(server, f"/cmaf/{subbed}/{uri}")
        assert status == 200 and headers["content-type"].startswith("text/vtt")
        assert body.startswith(b"WEBVTT\n")
        got |= _vtt_cues(body)
    assert got == {(start, start + duration, text) for start, duration, text in CUES}
    assert fetch(server, f"/cmaf/{subbed}/3/chunk_1.vtt")[0] == 404
    # PyAV's FFmpeg has no DASH demuxer (libxml2): the Debian ffprobe reads the MPD
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "s", "-show_entries",
         "stream=codec_name:stream_tags=language:packet=pts_time,duration_time",
         "-of", "json", f"{server.base}/cmaf/{subbed}/index.mpd"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert [(s["codec_name"], s["tags"]["language"]) for s in found["streams"]] == [
        ("webvtt", "eng")
    ]
    times = {(round(float(p["pts_time"]) * 1000), round(float(p["duration_time"]) * 1000))
             for p in found["packets"]}  # fmt: skip
    # FFmpeg's WebVTT demuxer reads its input whole at open: through dashdec that is
    # the segments fetched while probing, so only the first cues come back this way
    assert times and times <= {(start, duration) for start, duration, _ in CUES}


def test_info_lists_the_subtitle_documents(server: Server, subbed: str, vod: str) -> None:
    """``/json_<s>.js`` and ``/info_<s>.js`` offer the SRT and WebVTT documents (one
    track at a time) when a subtitle track exists, not otherwise; the listed URLs serve
    documents FFmpeg's srt/webvtt demuxers read back to the source cues."""
    info = json.loads(fetch(server, f"/json_{subbed}.js")[2])
    text = fetch(server, f"/info_{subbed}.js")[2].decode()
    prefix = f'mistvideo["{subbed}"] = '
    assert json.loads(text.split(prefix, 1)[1].rstrip().rstrip(";")) == info
    subs = {s["type"]: s for s in info["source"] if s["type"].startswith("html5/text/")}
    assert {k: (s["relurl"], s["simul_tracks"], s["total_matches"]) for k, s in subs.items()} == {
        "html5/text/plain": (f"/{subbed}.srt", 1, 1),
        "html5/text/vtt": (f"/{subbed}.vtt", 1, 1),
    }
    assert info["source"][0]["simul_tracks"] == 2  # audio + video sources still lead
    for fmt, entry in (("srt", subs["html5/text/plain"]), ("webvtt", subs["html5/text/vtt"])):
        status, _, body, _ = fetch(server, entry["relurl"])
        assert status == 200
        got: set[tuple[int, int, str]] = set()
        with av.open(io.BytesIO(body), format=fmt) as c:
            for packet in c.demux():
                if packet.size and packet.pts is not None and packet.time_base is not None:
                    start = round(packet.pts * packet.time_base * 1000)
                    end = start + round((packet.duration or 0) * packet.time_base * 1000)
                    got.add((start, end, bytes(packet).decode().strip()))
        assert got == {(start, start + duration, text) for start, duration, text in CUES}, fmt
    plain = json.loads(fetch(server, f"/json_{vod}.js")[2])
    assert not [s for s in plain["source"] if s["type"].startswith("html5/text/")]


def _vtt_cues(body: bytes) -> set[tuple[int, int, str]]:
    got: set[tuple[int, int, str]] = set()
    with av.open(io.BytesIO(body), format="webvtt") as c:
        for packet in c.demux():
            if packet.size and packet.pts is not None and packet.time_base is not None:
                start = round(packet.pts * packet.time_base * 1000)
                end = start + round((packet.duration or 0) * packet.time_base * 1000)
                got.add((start, end, bytes(packet).decode().strip()))
    return got


def test_live_mpd_lists_the_subtitles_up_to_the_segment_in_progress(
    server: Server, live_clip: Source
) -> None:
    """Live (LL-DASH) the text Representation lists the segment in progress like the
    media ones; asking for it waits until it completes, then serves its cues."""
    pub = SteadyPublisher(unique("livesub"), live_clip)
    pub.writer.add_track(TrackMeta(3, "meta", "subtitle", lang="eng"))
    try:
        for start, duration, text in CUES:
            if start < 9000:
                pub.publish_until(start)
                pub.writer.append(3, start, 0, True, duration.to_bytes(4, "big") + text.encode())
        pub.publish_until(9000)  # four 2 s segments complete, the fifth in progress
        doc = parse_mpd(fetch(server, f"/cmaf/{pub.stream}/index.mpd")[2])
        assert doc.dynamic
        (text_set,) = [a for a in doc.adaptation_sets if a.content_type == "text"]
        (rep,) = text_set.representations
        video = next(a for a in doc.adaptation_sets if a.content_type == "video")
        assert rep.timeline == video.representations[0].timeline
        *done, (open_start, _, open_uri) = segment_list(rep)
        got: set[tuple[int, int, str]] = set()
        for _, _, uri in done:
            status, _, body, _ = fetch(server, f"/cmaf/{pub.stream}/{uri}")
            assert status == 200
            got |= _vtt_cues(body)
        before = {(s, s + d, t) for s, d, t in CUES if s < open_start}
        assert got == before
        result: list[tuple[int, bytes]] = []
        asking = threading.Thread(
            target=lambda: result.append(fetch(server, f"/cmaf/{pub.stream}/{open_uri}")[::2])
        )
        asking.start()
        pub.publish_until(open_start + 2100)  # the keyframe that completes it, and more
        asking.join(30)
    finally:
        pub.close()
    ((status, body),) = result
    assert status == 200, body
    in_open = {(s, s + d, t) for s, d, t in CUES if s < 9000 and s + d > open_start}
    assert _vtt_cues(body) == in_open and in_open
