"""RTMP publish -> MistInBuffer -> bus -> RTMP and HTTP viewers, with real clients."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.outputs_http.conftest import Server as HttpServer
from tests.outputs_http.conftest import Source, publish_vod
from tests.outputs_http.conftest import source as source
from tests.outputs_http.media import Decoded, decode, ffprobe

from .conftest import PY, Rtmp, stop_proc, unique, wait_ready

FRAME_MS = 40  # testsrc at 25 fps


def check_decoded(d: Decoded, min_video: int, audio: bool = True) -> None:
    """No decode errors, enough frames, and every frame 40 ms after the previous one:
    the viewer got a gap-free run of what the publisher sent."""
    assert d.errors == 0
    assert d.video_frames >= min_video, d
    pts = sorted(d.video_pts)
    steps = {b - a for a, b in itertools.pairwise(pts)}
    assert steps <= {FRAME_MS - 1, FRAME_MS, FRAME_MS + 1}, sorted(steps)[:10]
    if audio:
        assert d.audio_frames > 0


def http_capture(server: HttpServer, path: str, seconds: float, out: Path) -> threading.Thread:
    """Read ``path`` for ``seconds`` counted from the first byte of the answer (a loaded
    server may take a while to answer; that must not shorten the capture)."""

    def run() -> None:
        with socket.create_connection((server.host, server.port), timeout=30) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            buf = bytearray()
            start: float | None = None
            while start is None or time.monotonic() - start < seconds:
                chunk = s.recv(65536)
                if not chunk:
                    break
                start = time.monotonic() if start is None else start
                buf += chunk
        head, _, body = bytes(buf).partition(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0], head
        out.write_bytes(body)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def pyav_read(url: str, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PY, "-m", "tests.live.clients", "read", url, str(out), str(seconds)],
        stderr=subprocess.PIPE,
    )


def test_publish_play_every_client(
    rtmp: Rtmp, http: HttpServer, publisher: object, tmp_path: Path
) -> None:
    # long enough to outlast the test on a loaded machine: it must still be running at the end
    stream, pub = publisher(120)  # type: ignore[operator]
    url = rtmp.url(stream)
    seconds = 3.0
    ff = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", url, "-t", str(seconds), "-c", "copy",
         "-y", str(tmp_path / "ffmpeg.flv")],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    av_proc = pyav_read(url, tmp_path / "pyav.mkv", seconds)
    dump = subprocess.Popen(
        ["rtmpdump", "-q", "--live", "-r", url, "-B", str(seconds), "-o", str(tmp_path / "rd.flv")],
        stderr=subprocess.DEVNULL,
    )
    caps = [
        http_capture(http, f"/{stream}.{ext}", seconds, tmp_path / f"http.{ext}")
        for ext in ("flv", "ts", "mp4")
    ]
    for t in caps:
        t.join(60)
    for p in (ff, av_proc):
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err.decode()
    try:
        dump.wait(timeout=3)
    except subprocess.TimeoutExpired:
        stop_proc(dump)  # rtmpdump's -B counts media time; killing it is fine too
    min_frames = int(seconds * 25 * 0.6)
    for name in ("ffmpeg.flv", "pyav.mkv", "rd.flv", "http.flv", "http.ts", "http.mp4"):
        path = tmp_path / name
        assert path.exists() and path.stat().st_size > 10_000, name
        check_decoded(decode(path), min_frames)
    codecs = {s["codec_name"] for s in ffprobe(tmp_path / "ffmpeg.flv")["streams"]}
    assert codecs == {"h264", "aac"}
    assert pub.poll() is None  # the publisher was never disturbed


def test_hevc_enhanced_rtmp_in_and_out(rtmp: Rtmp, tmp_path: Path) -> None:
    src = tmp_path / "hevc.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", "8", "-c:v", "libx265",
         "-preset", "ultrafast", "-x265-params", "keyint=25:bframes=0:log-level=error",
         "-c:a", "aac", str(src)],
        check=True,
    )  # fmt: skip
    stream = unique("hevc")
    push = subprocess.Popen(
        [PY, "-m", "tests.live.clients", "push", str(src), rtmp.url(stream)],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(stream)
        reader = pyav_read(rtmp.url(stream), tmp_path / "out.mkv", 3.0)
        _, err = reader.communicate(timeout=30)
        assert reader.returncode == 0, err.decode()
    finally:
        stop_proc(push)
    info = ffprobe(tmp_path / "out.mkv")
    assert {s["codec_name"] for s in info["streams"]} == {"hevc", "aac"}
    check_decoded(decode(tmp_path / "out.mkv"), 40)


@pytest.mark.parametrize("ext", ["mkv", pytest.param("flv", marks=pytest.mark.slow)])
def test_http_live_formats_decode(
    rtmp: Rtmp, http: HttpServer, publisher: object, tmp_path: Path, ext: str
) -> None:
    stream, _ = publisher(20)  # type: ignore[operator]
    out = tmp_path / f"v.{ext}"
    http_capture(http, f"/{stream}.{ext}", 2.5, out).join(20)
    check_decoded(decode(out), 30)


def test_reconnecting_publisher_resumes(rtmp: Rtmp, tmp_path: Path) -> None:
    """The publisher leaves: the buffer waits (--resume, 10 s) and the stream stays; a
    reconnecting publisher continues it with timestamps that follow on."""
    import shm

    from .conftest import ffmpeg_publish

    stream = unique("res")
    first = ffmpeg_publish(rtmp.url(stream), 2.5)
    wait_ready(stream)
    assert first.wait(20) == 0
    with shm.StreamReader(stream) as r:
        end_first = r.last_ms
        assert end_first >= 1500
    second = ffmpeg_publish(rtmp.url(stream), 2.5)
    assert second.wait(20) == 0
    with shm.StreamReader(stream) as r:
        meta = r.meta
        video = next(t for t in meta.tracks.values() if t.type == "video")
        marks = video.extra.get("discontinuities", [])
        assert len(marks) == 1 and marks[0] >= end_first
        assert r.last_ms >= end_first + 1500  # the second session continued the timeline
        r.select([video.id])
        r.seek(0)
        dts = []
        while (p := r.read()) is not None:
            dts.append(p.dts)
        assert dts == sorted(dts) and len(dts) >= 80
    assert "publisher resumed" in rtmp.text()


def test_second_publisher_refused(rtmp: Rtmp, publisher: object) -> None:
    from .conftest import ffmpeg_publish

    stream, first = publisher(30)  # type: ignore[operator]
    second = ffmpeg_publish(rtmp.url(stream), 5)
    assert second.wait(20) != 0
    assert first.poll() is None
    assert "is busy: already published" in rtmp.text()
    assert "refusing publish" in rtmp.text()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))


def test_vod_stream_over_rtmp(rtmp: Rtmp, tmp_path: Path, source: Source) -> None:
    """A VoD stream on the bus is played per viewer, paced, from its start."""
    name = unique("vod")
    writer = publish_vod(name, source)
    try:
        out = tmp_path / "vod.flv"
        run = subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-i", rtmp.url(name), "-c", "copy", "-y",
             str(out)], timeout=60, capture_output=True,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr.decode()
    finally:
        writer.close()
    d = decode(out)
    check_decoded(d, len(source.of(1)))  # every frame of the clip, in order
    assert min(d.video_pts) <= 100


@pytest.mark.slow
def test_vp9_opus_enhanced_rtmp_to_webm(rtmp: Rtmp, http: HttpServer, tmp_path: Path) -> None:
    """VP9 + Opus (enhanced RTMP FourCC) published by PyAV, out as RTMP and as WebM."""
    src = tmp_path / "vp9.webm"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "10", "-c:v", "libvpx-vp9",
         "-deadline", "realtime", "-cpu-used", "8", "-g", "25", "-c:a", "libopus", str(src)],
        check=True,
    )  # fmt: skip
    stream = unique("vp9")
    push = subprocess.Popen(
        [PY, "-m", "tests.live.clients", "push", str(src), rtmp.url(stream)],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(stream)
        reader = pyav_read(rtmp.url(stream), tmp_path / "out.mkv", 3.0)
        webm = http_capture(http, f"/{stream}.webm", 3.0, tmp_path / "out.webm")
        _, err = reader.communicate(timeout=30)
        webm.join(20)
        assert reader.returncode == 0, err.decode()
    finally:
        stop_proc(push)
    for name in ("out.mkv", "out.webm"):
        info = ffprobe(tmp_path / name)
        assert {s["codec_name"] for s in info["streams"]} == {"vp9", "opus"}
        check_decoded(decode(tmp_path / name), 40)


def test_acceptable_setting(publisher: object) -> None:
    """``--acceptable 1`` refuses publishing; ``--acceptable 2`` refuses playing."""
    from .conftest import ffmpeg_publish, start_rtmp, stop_rtmp

    stream, _ = publisher(30)  # type: ignore[operator]
    play_only = start_rtmp("--acceptable", "1")
    publish_only = start_rtmp("--acceptable", "2")
    try:
        pub = ffmpeg_publish(play_only.url(unique()), 3)
        assert pub.wait(20) != 0
        assert "publishing is disabled" in play_only.text()
        ok = subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-i", play_only.url(stream), "-t", "1",
             "-c", "copy", "-f", "null", "-"], timeout=30,
        )  # fmt: skip
        assert ok.returncode == 0
        refused = subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-rw_timeout", "5000000", "-i",
             publish_only.url(stream), "-t", "1", "-c", "copy", "-f", "null", "-"],
            timeout=30, capture_output=True,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "playback is disabled" in publish_only.text()
    finally:
        for srv in (play_only, publish_only):
            stop_rtmp(srv)
            srv.log.unlink(missing_ok=True)
