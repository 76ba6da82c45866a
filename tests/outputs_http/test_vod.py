"""VoD over the real MistOutHTTP: every progressive format decoded by PyAV and ffprobe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import FPS, PageLoader, Server, Source
from .media import decode, ffprobe

FRAME_MS = 1000 // FPS
AV_FORMATS = ["flv", "ts", "mp4", "fmp4", "mkv"]


def _fetch(server: Server, path: str, tmp_path: Path, name: str) -> Path:
    status, headers, body = server.get(path)
    assert status == 200, body[:200]
    assert headers["access-control-allow-origin"] == "*"
    out = tmp_path / name
    out.write_bytes(body)
    return out


def _rel(values: list[int]) -> list[int]:
    first = min(values)
    return sorted(v - first for v in values)


@pytest.mark.parametrize("ext", AV_FORMATS)
def test_format_decodes_like_source(
    server: Server, vod_stream: str, source: Source, tmp_path: Path, ext: str
) -> None:
    path = _fetch(server, f"/{vod_stream}.{ext}", tmp_path, f"out.{ext}")
    got = decode(path)
    src_video = source.of(source.video.id)
    src_audio = source.of(source.audio.id)
    assert got.errors == 0
    assert got.video_frames == len(src_video)
    assert got.video_keys == sum(f.keyframe for f in src_video)
    # Presentation times match the source's (relative to the first), within one frame.
    want = _rel([f.dts + f.offset for f in src_video])
    have = _rel(got.video_pts)
    assert max(abs(a - b) for a, b in zip(want, have, strict=True)) <= FRAME_MS
    # Audio: every AAC frame arrives (PyAV's decoder may keep back one priming frame).
    assert abs(got.audio_frames - len(src_audio)) <= 1
    probe = ffprobe(path)
    streams = {s["codec_type"]: s for s in probe["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert streams["audio"]["codec_name"] == "aac"
    assert int(streams["video"]["nb_read_packets"]) == len(src_video)
    if "duration" in probe["format"]:  # live-style MKV has none
        # Between the video span and the end of the last track on the source timeline.
        span = (max(want) + FRAME_MS) / 1000
        end = (
            max(max(f.dts + f.offset for f in src_video) + FRAME_MS, src_audio[-1].dts + 24) / 1000
        )
        duration = float(probe["format"]["duration"])
        assert span - 2 * FRAME_MS / 1000 <= duration <= end + 2 * FRAME_MS / 1000


def test_aac_adts(server: Server, vod_stream: str, source: Source, tmp_path: Path) -> None:
    path = _fetch(server, f"/{vod_stream}.aac", tmp_path, "out.aac")
    got = decode(path)
    assert got.errors == 0 and got.video_frames == 0
    assert abs(got.audio_frames - len(source.of(source.audio.id))) <= 1


@pytest.mark.parametrize("ext", ["flv", "ts", "mkv", "mp4"])
def test_start_begins_at_keyframe_before(
    server: Server, vod_stream: str, source: Source, tmp_path: Path, ext: str
) -> None:
    start = 2500
    path = _fetch(server, f"/{vod_stream}.{ext}?start={start}&stop=4500", tmp_path, f"cut.{ext}")
    got = decode(path)
    video = source.of(source.video.id)
    key = max((f for f in video if f.keyframe and f.dts <= start), key=lambda f: f.dts)
    expect = [f for f in video if key.dts <= f.dts <= 4500]
    assert got.errors == 0
    assert got.video_frames == len(expect)
    assert got.video_keys == sum(f.keyframe for f in expect)
    assert _rel(got.video_pts)[-1] == _rel([f.dts + f.offset for f in expect])[-1]


def test_track_selection(server: Server, vod_stream: str, tmp_path: Path) -> None:
    got = decode(_fetch(server, f"/{vod_stream}.flv?audio=none", tmp_path, "v.flv"))
    assert got.audio_frames == 0 and got.video_frames > 0
    got = decode(_fetch(server, f"/{vod_stream}.ts?video=none", tmp_path, "a.ts"))
    assert got.video_frames == 0 and got.audio_frames > 0
    status, _, body = server.get(f"/{vod_stream}.flv?video=nonsense!")
    assert status == 400 and b"nonsense" in body


def test_progressive_mp4_ranges(server: Server, vod_stream: str) -> None:
    status, headers, full = server.get(f"/{vod_stream}.mp4")
    assert status == 200
    assert headers["accept-ranges"] == "bytes"
    assert int(headers["content-length"]) == len(full)
    assert full[4:8] == b"ftyp" and full.find(b"moov") < full.find(b"mdat")
    for rng, lo, hi in (
        ("bytes=0-99", 0, 100),
        ("bytes=1000-49999", 1000, 50000),
        (f"bytes={len(full) - 10}-", len(full) - 10, len(full)),
        ("bytes=-777", len(full) - 777, len(full)),
        (f"bytes=5000-{len(full) + 100}", 5000, len(full)),
    ):
        status, headers, part = server.get(f"/{vod_stream}.mp4", {"Range": rng})
        assert status == 206, rng
        assert part == full[lo:hi], rng
        assert headers["content-range"] == f"bytes {lo}-{hi - 1}/{len(full)}"
        assert int(headers["content-length"]) == hi - lo
    for bad in (f"bytes={len(full)}-", "bytes=-0", "bytes=9-3", "items=0-5"):
        status, headers, _ = server.get(f"/{vod_stream}.mp4", {"Range": bad})
        assert status == 416, bad
        assert headers["content-range"] == f"bytes */{len(full)}"


def test_json_info(server: Server, vod_stream: str, source: Source) -> None:
    status, headers, body = server.get(f"/json_{vod_stream}.js")
    assert status == 200 and headers["content-type"] == "application/json"
    info = json.loads(body)
    assert info["type"] == "vod"
    assert (info["width"], info["height"]) == (320, 240)
    tracks = info["meta"]["tracks"]
    assert set(tracks) == {"video_H264_1", "audio_AAC_2"}
    v, a = tracks["video_H264_1"], tracks["audio_AAC_2"]
    assert v["codecstring"].startswith("avc1.")
    assert a["codecstring"] == "mp4a.40.2"
    assert v["init"].encode("latin-1") == source.video.init
    assert (v["width"], v["height"], v["fps"]) == (320, 240, FPS)
    assert (a["rate"], a["channels"]) == (48000, 2)
    assert v["lastms"] >= 5800 and a["bps"] > 0
    types = [s["type"] for s in info["source"]]
    assert "html5/video/mp4" in types and "flash/7" in types and "html5/video/mpeg" in types
    assert "html5/video/webm" not in types  # H264/AAC cannot go into WebM
    assert types.index("html5/video/mp4") < types.index("html5/audio/aac")  # simul_tracks first
    mp4 = next(s for s in info["source"] if s["type"] == "html5/video/mp4")
    assert mp4["relurl"] == f"/{vod_stream}.mp4"
    assert mp4["url"] == f"{server.base}/{vod_stream}.mp4"
    assert mp4["simul_tracks"] == 2
    status, headers, body = server.get(f"/info_{vod_stream}.js")
    assert status == 200
    text = body.decode()
    assert f'mistvideo["{vod_stream}"] = ' in text
    assert (
        json.loads(text.split(f'mistvideo["{vod_stream}"] = ', 1)[1].rstrip().rstrip(";")) == info
    )


def test_errors_and_cors(server: Server, vod_stream: str) -> None:
    status, headers, body = server.get("/json_nosuchstream.js")
    assert status == 200 and json.loads(body)["error"] == "Stream is offline"
    status, headers, body = server.get("/nosuchstream.flv")
    assert status == 404 and b"not found" in body
    assert headers["access-control-allow-origin"] == "*"
    status, _, body = server.get(f"/{vod_stream}.doc")
    assert status == 415 and b"doc" in body
    status, _, body = server.get(f"/{vod_stream}.webm")
    assert status == 415 and b"H264" in body
    status, _, _ = server.get("/dynamic/x/manifest.f4m")  # HDS: reserved, not provided
    assert status == 415
    status, headers, body = server.get("/crossdomain.xml")
    assert status == 200 and b"allow-access-from" in body
    status, headers, body = server.get(f"/{vod_stream}.html")
    assert status == 200 and vod_stream.encode() in body and b"<video" in body


@pytest.mark.parametrize("ext", ["webm", "mkv"])
def test_vp9_opus_formats(
    server: Server, webm_vod_stream: str, webm_source: Source, tmp_path: Path, ext: str
) -> None:
    got = decode(_fetch(server, f"/{webm_vod_stream}.{ext}", tmp_path, f"out.{ext}"))
    video = webm_source.of(webm_source.video.id)
    assert got.errors == 0
    assert got.video_frames == len(video)
    assert got.video_keys == sum(f.keyframe for f in video)
    assert abs(got.audio_frames - len(webm_source.of(webm_source.audio.id))) <= 1
    have, want = _rel(got.video_pts), _rel([f.dts + f.offset for f in video])
    assert max(abs(a - b) for a, b in zip(want, have, strict=True)) <= FRAME_MS
    status, _, body = server.get(f"/{webm_vod_stream}.ts")
    assert status == 415 and b"VP9" in body  # TS carries neither VP9 nor Opus here


def test_vp9_opus_info_sources(server: Server, webm_vod_stream: str) -> None:
    _, _, body = server.get(f"/json_{webm_vod_stream}.js")
    info = json.loads(body)
    assert set(info["meta"]["tracks"]) == {"video_VP9_1", "audio_opus_2"}
    types = [s["type"] for s in info["source"]]
    assert types[0] in ("html5/video/webm", "html5/video/mp4")
    assert "html5/video/webm" in types and "html5/video/mpeg" not in types


def test_ogg_opus(
    server: Server, webm_vod_stream: str, webm_source: Source, tmp_path: Path
) -> None:
    path = _fetch(server, f"/{webm_vod_stream}.ogg", tmp_path, "out.ogg")
    got = decode(path)
    assert got.errors == 0 and got.video_frames == 0
    assert abs(got.audio_frames - len(webm_source.of(webm_source.audio.id))) <= 1
    assert ffprobe(path)["streams"][0]["codec_name"] == "opus"


def test_head_has_headers_only(server: Server, vod_stream: str) -> None:
    import http.client

    _, _, full = server.get(f"/{vod_stream}.mp4")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("HEAD", f"/{vod_stream}.mp4")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b""
        assert int(r.headers["Content-Length"]) == len(full)
        conn.request("GET", f"/json_{vod_stream}.js")  # same connection: kept alive
        r = conn.getresponse()
        assert r.status == 200 and r.read().startswith(b"{")
    finally:
        conn.close()


@pytest.mark.parametrize("ext", ["flv", "mp4"])
def test_pages_loaded_on_demand(
    server: Server, lazy_vod_stream: PageLoader, source: Source, tmp_path: Path, ext: str
) -> None:
    name = lazy_vod_stream.writer.stream
    got = decode(_fetch(server, f"/{name}.{ext}", tmp_path, f"lazy.{ext}"))
    assert lazy_vod_stream.loads >= 2  # both tracks' pages were asked for and loaded
    assert got.errors == 0
    assert got.video_frames == len(source.of(source.video.id))
    assert abs(got.audio_frames - len(source.of(source.audio.id))) <= 1


def test_head_of_streamed_format(server: Server, vod_stream: str) -> None:
    import http.client

    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("HEAD", f"/{vod_stream}.flv")
        r = conn.getresponse()
        assert r.status == 200 and r.headers["Content-Type"] == "video/x-flv"
        assert r.headers["Content-Length"] is None and r.read() == b""
    finally:
        conn.close()
