"""MistAnalyserHLS on ffmpeg-made HLS, as files and over HTTP, with injected problems."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mistcodecs.hls import MediaPlaylist, Segment, parse_media_playlist

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")

SOURCE = [
    "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", "4", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-g", "25", "-keyint_min", "25",
    "-sc_threshold", "0", "-c:a", "aac",
]  # fmt: skip


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, timeout=60)


def ffprobe(path: Path, entries: str, stream: str = "v:0") -> dict[str, str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", stream, "-show_entries",
         entries, "-of", "json", str(path)],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    data = json.loads(out)
    return {**data.get("format", {}), **(data["streams"][0] if data.get("streams") else {})}


def analyse(*args: str | Path, timeout: float = 60) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "analysers.hls", *map(str, args)],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines, proc.stderr
    return proc.returncode, lines


def problems(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("PROBLEM")]


@pytest.fixture(scope="module")
def hls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hls")
    (root / "ts").mkdir()
    ffmpeg(*SOURCE, "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod",
           "-master_pl_name", "master.m3u8", root / "ts" / "index.m3u8")  # fmt: skip
    (root / "fmp4").mkdir()
    ffmpeg(*SOURCE, "-f", "hls", "-hls_time", "1", "-hls_segment_type", "fmp4",
           "-hls_playlist_type", "vod", root / "fmp4" / "index.m3u8")  # fmt: skip
    return root


def copy_set(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server over ``tmp_path/www`` on a free port."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, name="hls-test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_ts_files_agree_with_ffprobe(hls: Path, tmp_path: Path) -> None:
    rebuilt = tmp_path / "all.ts"
    code, lines = analyse(hls / "ts" / "master.m3u8", "-R", rebuilt)
    assert code == 0, lines
    assert lines[-1].startswith("HLS: valid segments=4 missing=0")
    assert "tracks=AAC+H264" in lines[-1]
    probe = ffprobe(hls / "ts" / "index.m3u8", "format=duration:stream=nb_read_frames")
    listed = float(lines[-1].split("listed_s=")[1].split()[0])
    assert abs(listed - float(probe["duration"])) < 0.1
    # the reconstructed TS holds every frame
    assert (
        int(ffprobe(rebuilt, "stream=nb_read_frames")["nb_read_frames"])
        == int(probe["nb_read_frames"])
        == 100
    )


def test_fmp4_files(hls: Path) -> None:
    code, lines = analyse(hls / "fmp4" / "index.m3u8", "-D", "3")
    assert code == 0, lines
    assert any("init section" in line for line in lines)
    assert "media_s=4.0" in lines[-1]


def test_json_output(hls: Path) -> None:
    code, lines = analyse(hls / "ts" / "index.m3u8", "--json")
    assert code == 0
    records = [json.loads(line) for line in lines[:-1]]
    segs = [r for r in records if "msn" in r]
    assert [r["msn"] for r in segs] == [0, 1, 2, 3]
    assert all(abs((r["end_ms"] - r["start_ms"]) / 1000 - r["extinf"]) < 0.05 for r in segs)
    assert records[-1]["timeline"]["segments"] == 4


def test_over_http_with_missing_segment(hls: Path, server: tuple[str, Path]) -> None:
    base, root = server
    copy_set(hls / "ts", root / "ts")
    code, lines = analyse(f"{base}/ts/master.m3u8")
    assert code == 0, lines
    (root / "ts" / "index2.ts").unlink()
    code, lines = analyse(f"{base}/ts/master.m3u8")
    assert code == 1
    found = problems(lines)
    assert (
        len(found) == 1 and "segment 2 (index2.ts): cannot fetch" in found[0] and "404" in found[0]
    )
    assert "missing=1" in lines[-1]


def test_extinf_longer_than_target(hls: Path, tmp_path: Path) -> None:
    work = copy_set(hls / "ts", tmp_path / "ts")
    text = (work / "index.m3u8").read_text()
    (work / "index.m3u8").write_text(
        text.replace("#EXTINF:1.000000,\nindex1.ts", "#EXTINF:2.600000,\nindex1.ts")
    )
    code, lines = analyse(work / "index.m3u8")
    assert code == 1
    found = problems(lines)
    assert any(
        "segment 1 (index1.ts): EXTINF 2.600 s exceeds target duration 1 s" in p for p in found
    )
    assert any(
        "segment 1 (index1.ts): EXTINF 2.600 s but the next segment starts 1.000 s later" in p
        for p in found
    )


def test_damaged_inputs(hls: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.m3u8"
    bad.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:zz,\na.ts\n")
    code, lines = analyse(bad)
    assert code == 1 and "line 3: EXTINF duration 'zz'" in lines[-2]
    bad.write_text("not a playlist")
    code, lines = analyse(bad)
    assert code == 1 and "does not start with #EXTM3U" in "\n".join(lines)
    code, lines = analyse(tmp_path / "nothing.m3u8")
    assert code == 2 and "cannot read source" in lines[-2]
    work = copy_set(hls / "ts", tmp_path / "ts")
    data = (work / "index1.ts").read_bytes()
    (work / "index1.ts").write_bytes(data[: len(data) // 2 + 7])
    code, lines = analyse(work / "index.m3u8")
    assert code == 1
    assert any("segment 1 (index1.ts)" in p for p in problems(lines))


class LivePlaylist:
    """A live window over the VoD segments that grows by one segment every two requests
    (the state is the request count, not a clock)."""

    def __init__(
        self, segments: list[Segment], window: int = 3, go_back_at: int | None = None
    ) -> None:
        self.segments = segments
        self.window = window
        self.requests = 0
        self.go_back_at = go_back_at
        self.lock = threading.Lock()

    def render(self) -> str:
        with self.lock:
            self.requests += 1
            count = min(len(self.segments), 1 + self.requests // 2)
            first = max(0, count - self.window)
            if self.go_back_at is not None and self.requests >= self.go_back_at:
                first, count = 0, 1  # a restarted packager: the window shrinks back
            pl = MediaPlaylist(
                segments=self.segments[first:count],
                media_sequence=first,
                target_duration=1,
                endlist=count == len(self.segments) and self.go_back_at is None,
            )
            return pl.render()


@pytest.fixture
def live_server(hls: Path) -> Iterator[tuple[str, dict[str, LivePlaylist]]]:
    vod = parse_media_playlist((hls / "ts" / "index.m3u8").read_text())
    playlists: dict[str, LivePlaylist] = {}
    directory = str(hls / "ts")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=directory, **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/").split("?")[0]
            if name in playlists:
                body = playlists[name].render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.apple.mpegurl")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="hls-live-http", daemon=True)
    thread.start()
    playlists["live.m3u8"] = LivePlaylist(vod.segments)
    playlists["back.m3u8"] = LivePlaylist(vod.segments, go_back_at=3)
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", playlists
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_follows_a_live_playlist(live_server: tuple[str, dict[str, LivePlaylist]]) -> None:
    base, playlists = live_server
    code, lines = analyse(f"{base}/live.m3u8", "-D", "2", "-T", "20")
    assert code == 0, lines
    assert "segments=4" in lines[-1] and "missing=0" in lines[-1]
    assert playlists["live.m3u8"].requests >= 6  # it reloaded until the ENDLIST appeared
    assert [line.split(":")[0] for line in lines if line.startswith("segment ")] == [
        f"segment {i}" for i in range(4)
    ]


def test_live_playlist_going_back_is_reported(
    live_server: tuple[str, dict[str, LivePlaylist]],
) -> None:
    base, _ = live_server
    code, lines = analyse(f"{base}/back.m3u8", "-T", "3")
    assert code == 1
    assert any("playlist lost segments: it ended at 1, now at 0" in p for p in problems(lines))


def test_webvtt_subtitle_playlist(tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"sub{i}.vtt").write_text(
            f"WEBVTT\n\n00:00:0{i * 2}.000 --> 00:00:0{i * 2 + 1}.500\nline {i}\n"
        )
    pl = MediaPlaylist(
        segments=[Segment(2.0, f"sub{i}.vtt") for i in range(2)], endlist=True, playlist_type="VOD"
    )
    (tmp_path / "subs.m3u8").write_text(pl.render())
    code, lines = analyse(tmp_path / "subs.m3u8")
    assert code == 0, lines
    assert "segments=2" in lines[-1] and "tracks=WebVTT" in lines[-1]


@pytest.mark.slow
def test_validate_paces_to_media_time(hls: Path) -> None:
    import time

    started = time.monotonic()
    code, lines = analyse(hls / "ts" / "index.m3u8", "-V")
    assert code == 0, lines
    assert time.monotonic() - started >= 2.5  # 4 s of media, paced from the first segment on


def test_master_with_renditions(hls: Path, tmp_path: Path) -> None:
    from mistcodecs.hls import MasterPlaylist, Rendition, Variant

    work = copy_set(hls / "ts", tmp_path / "ts")
    (work / "sub0.vtt").write_text("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhello\n")
    subs = MediaPlaylist(segments=[Segment(4.0, "sub0.vtt")], endlist=True)
    (work / "subs.m3u8").write_text(subs.render())
    master = MasterPlaylist(
        variants=[
            Variant(
                "index.m3u8", 200_000, codecs="avc1.42c00d,mp4a.40.2", audio="aud", subtitles="sub"
            )
        ],
        renditions=[
            Rendition(
                "AUDIO", "aud", "English", "audio_en.m3u8", "en", default=True, autoselect=True
            ),
            Rendition("SUBTITLES", "sub", "Nederlands", "subs.m3u8", "nl", autoselect=True),
        ],
    )
    (work / "all.m3u8").write_text(master.render())
    code, lines = analyse(work / "all.m3u8", "-D", "1")
    assert code == 1  # the audio rendition's playlist does not exist
    assert any("SUBTITLES rendition 'Nederlands': 1 segments" in line for line in lines)
    found = problems(lines)
    assert len(found) == 1 and "AUDIO rendition 'English': cannot fetch" in found[0]
    assert "segments=4" in lines[-1]
