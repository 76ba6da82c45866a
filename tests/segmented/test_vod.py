"""VoD through /hls/ (TS) and /cmaf/ (HLS v7 and DASH): playlists conform, FFmpeg's HLS and
DASH demuxers decode all 20 s with continuous timestamps, caching headers are right."""

from __future__ import annotations

import itertools
import json

import pytest

from mistcodecs.dash import parse_mpd, segment_list
from mistcodecs.hls import check_media_playlist, parse_master_playlist, parse_media_playlist
from tests.outputs_http.conftest import Server, Source

from .conftest import FPS, VOD_SECONDS, fetch
from .decode import decode, decode_ffprobe


def _media(server: Server, path: str) -> tuple[str, object]:
    status, headers, body, _ = fetch(server, path)
    assert status == 200, body
    assert headers["content-type"] == "application/vnd.apple.mpegurl"
    text = body.decode()
    pl = parse_media_playlist(text)
    assert check_media_playlist(pl) == []
    return text, pl


def test_hls_ts_playlists(server: Server, vod: str, vod_clip: Source) -> None:
    status, _headers, body, _ = fetch(server, f"/hls/{vod}/index.m3u8")
    assert status == 200
    master = parse_master_playlist(body.decode())
    assert [v.uri for v in master.variants] == ["1_2/index.m3u8"]
    assert master.variants[0].codecs is not None and "mp4a.40.2" in master.variants[0].codecs
    assert master.variants[0].resolution == (320, 240)
    _text, pl = _media(server, f"/hls/{vod}/1_2/index.m3u8")
    assert pl.endlist and pl.playlist_type == "VOD"  # type: ignore[attr-defined]
    segs = pl.segments  # type: ignore[attr-defined]
    assert segs and all(s.duration <= pl.target_duration for s in segs)  # type: ignore[attr-defined]
    assert abs(sum(s.duration for s in segs) - VOD_SECONDS) < 0.2
    # names are MistServer's <from>_<until>.ts, back to back
    times = [tuple(int(x) for x in s.uri[:-3].split("_")) for s in segs]
    assert times[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(times))
    # each segment starts with PAT/PMT and a keyframe (the segmenter cuts on keys)
    first = fetch(server, f"/hls/{vod}/1_2/{segs[1].uri}")[2]
    assert first[0] == 0x47 and len(first) % 188 == 0


@pytest.mark.parametrize(
    "path", ["/hls/{s}/index.m3u8", "/cmaf/{s}/index.m3u8", "/cmaf/{s}/index.mpd"]
)
def test_ffmpeg_decodes_everything(server: Server, vod: str, vod_clip: Source, path: str) -> None:
    url = server.base + path.format(s=vod)
    got = decode_ffprobe(url) if url.endswith(".mpd") else decode(url)
    assert got.errors == []
    video = [f for f in vod_clip.frames if f.track == 1]
    audio = [f for f in vod_clip.frames if f.track == 2]
    assert len(got.video_pts) == len(video) == VOD_SECONDS * FPS
    assert abs(len(got.audio_pts) - len(audio)) <= 2
    assert got.video_gaps(1 / FPS) == []
    assert got.audio_gaps(48000) == []
    assert got.video_seconds >= VOD_SECONDS - 0.1


def test_cmaf_playlists_and_mpd(server: Server, vod: str) -> None:
    master = parse_master_playlist(fetch(server, f"/cmaf/{vod}/index.m3u8")[2].decode())
    assert [v.uri for v in master.variants] == ["1/index.m3u8"]
    assert master.variants[0].audio == "aud"
    assert [r.uri for r in master.renditions] == ["2/index.m3u8"]
    hls_segments = {}
    for tid in (1, 2):
        text, pl = _media(server, f"/cmaf/{vod}/{tid}/index.m3u8")
        assert '#EXT-X-MAP:URI="init.m4s"' in text and pl.endlist  # type: ignore[attr-defined]
        hls_segments[tid] = [s.uri for s in pl.segments]  # type: ignore[attr-defined]
    assert hls_segments[1] == hls_segments[2]
    status, headers, body, _ = fetch(server, f"/cmaf/{vod}/index.mpd")
    assert status == 200 and headers["content-type"] == "application/dash+xml"
    mpd = parse_mpd(body)
    assert not mpd.dynamic and abs((mpd.media_presentation_duration or 0) - VOD_SECONDS) < 0.2
    for aset in mpd.adaptation_sets:
        for rep in aset.representations:
            urls = [u.split("/", 1)[1] for _, _, u in segment_list(rep)]
            assert urls == hls_segments[int(rep.id)]  # DASH and HLS share the segments


def test_cache_headers_etag_and_cors(server: Server, vod: str) -> None:
    _text, pl = _media(server, f"/hls/{vod}/1_2/index.m3u8")
    uri = pl.segments[0].uri  # type: ignore[attr-defined]
    status, headers, body, _ = fetch(server, f"/hls/{vod}/1_2/{uri}")
    assert status == 200 and headers["content-type"] == "video/mp2t"
    assert "immutable" in headers["cache-control"] and "max-age=" in headers["cache-control"]
    assert headers["access-control-allow-origin"] == "*"
    tag = headers["etag"]
    again = fetch(server, f"/hls/{vod}/1_2/{uri}")
    assert again[2] == body and again[1]["etag"] == tag  # muxed once, same bytes
    status, _headers304, body304, _ = fetch(server, f"/hls/{vod}/1_2/{uri}", {"If-None-Match": tag})
    assert status == 304 and body304 == b""
    init = fetch(server, f"/cmaf/{vod}/1/init.m4s")
    assert init[0] == 200 and init[2][4:8] == b"ftyp" and "immutable" in init[1]["cache-control"]
    chunk = fetch(server, f"/cmaf/{vod}/1/chunk_0.m4s")
    assert chunk[0] == 200 and chunk[2][4:8] == b"styp"


@pytest.mark.parametrize(
    "path, status",
    [
        ("/hls/{s}/1_2/123_456.ts", 404),
        ("/hls/{s}/9_2/index.m3u8", 404),
        ("/hls/{s}/1_1/index.m3u8", 404),
        ("/cmaf/{s}/7/init.m4s", 404),
        ("/cmaf/{s}/1/chunk_1.m4s", 404),
        ("/cmaf/{s}/1/chunk_x.m4s", 404),
        ("/hls/nosuchstream/index.m3u8", 404),
    ],
)
def test_unknown_resources(server: Server, vod: str, path: str, status: int) -> None:
    assert fetch(server, path.format(s=vod))[0] == status


@pytest.mark.parametrize("keep", ["audio", "video"])
def test_single_track_streams(server: Server, vod_clip: Source, keep: str) -> None:
    from tests.outputs_http.conftest import publish_vod, unique

    tracks = [t for t in vod_clip.tracks if t.type == keep]
    frames = [f for f in vod_clip.frames if f.track == tracks[0].id]
    name = unique(f"seg{keep}")
    w = publish_vod(name, Source(vod_clip.path, tracks, frames))
    try:
        master = parse_master_playlist(fetch(server, f"/hls/{name}/index.m3u8")[2].decode())
        assert [v.uri for v in master.variants] == [f"{tracks[0].id}/index.m3u8"]
        _, pl = _media(server, f"/hls/{name}/{tracks[0].id}/index.m3u8")
        assert abs(sum(s.duration for s in pl.segments) - VOD_SECONDS) < 0.2  # type: ignore[attr-defined]
        for path in (f"/hls/{name}/index.m3u8", f"/cmaf/{name}/index.m3u8"):
            got = decode(server.base + path)
            assert got.errors == []
            if keep == "video":
                assert len(got.video_pts) == len(frames) and got.video_gaps(1 / FPS) == []
            else:
                assert abs(len(got.audio_pts) - len(frames)) <= 2 and got.audio_gaps(48000) == []
    finally:
        w.close()


def test_player_page_and_libraries(server: Server, vod: str) -> None:
    page = fetch(server, f"/{vod}.html")[2].decode()
    assert 'players["dash/video/mp4"]' in page and "/{name}" in page
    for name, marker in (("hlsjs.js", b"hls.js"), ("dashjs.js", b"dash.js")):
        for path in (f"/{name}", f"/hls/{name}"):
            status, headers, body, _ = fetch(server, path)
            assert status == 200 and headers["content-type"] == "application/javascript"
            assert body.startswith(b"/*! " + marker) and len(body) > 100_000
            assert "max-age" in headers["cache-control"] and headers["etag"]
    info = json.loads(fetch(server, f"/json_{vod}.js")[2])
    types = {s["type"]: s["relurl"] for s in info["source"]}
    assert types["html5/application/vnd.apple.mpegurl"] == f"/hls/{vod}/index.m3u8"
    assert types["dash/video/mp4"] == f"/cmaf/{vod}/index.mpd"
    assert types["html5/application/vnd.apple.mpegurl;version=7"] == f"/cmaf/{vod}/index.m3u8"
