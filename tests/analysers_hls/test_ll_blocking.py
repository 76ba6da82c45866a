"""LL-HLS blocking reload end to end: a test origin built from our own pieces
(segmenter -> media_playlist -> decide) serves the ffmpeg-made segments as a live
LL-HLS stream that grows while it is watched; MistAnalyserHLS follows it with
_HLS_msn/_HLS_part requests. A lying origin (answers at once) is caught."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from mistcodecs.hls import (
    BadDirective,
    MediaPlaylist,
    Outcome,
    PlaylistState,
    SegmentCutter,
    assign_parts,
    block_timeout,
    cut_parts,
    decide,
    media_playlist,
    parse_directives,
)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")

END_MS = 4000


class Origin:
    """Media time advances 100 ms every 50 ms (2x real time) in a producer thread,
    from the first playlist request on (so the analyser's start-up costs nothing)."""

    def __init__(self, lie: bool = False) -> None:
        self.now_ms = 1100
        self.lie = lie
        self.running = threading.Event()
        self.cond = threading.Condition()
        self.waited = 0
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="ll-origin-clock", daemon=True)

    def _produce(self) -> None:
        while not self.stop.wait(0.05):
            if not self.running.is_set():
                continue
            with self.cond:
                self.now_ms = min(END_MS, self.now_ms + 100)
                self.cond.notify_all()

    def playlist(self) -> MediaPlaylist:
        now = self.now_ms
        frames = list(range(0, min(now, END_MS - 1) + 1, 40))
        keys = [f for f in frames if f % 1000 == 0]
        cutter = SegmentCutter(1000)
        spans = [s for k in keys for s in cutter.keyframe(k)]
        ended = now >= END_MS
        spans += cutter.finish(END_MS) if ended else cutter.advance(now)
        parts = assign_parts(
            spans, cut_parts(frames, keys, 250, end_ms=END_MS if ended else None, known_ms=now)
        )
        return media_playlist(
            spans,
            uri=lambda s: f"vod{s.msn}.ts",
            target_ms=1000,
            target=1,
            ended=ended,
            parts=parts,
            part_uri=lambda p: f"part{p.msn}.{p.index}.ts",
            part_target_ms=250,
        )

    def answer(self, query: str) -> tuple[int, bytes]:
        self.running.set()
        try:
            directives = parse_directives(query)
        except BadDirective as exc:
            return 400, str(exc).encode()
        deadline = time.monotonic() + block_timeout(1)
        with self.cond:
            while True:
                pl = self.playlist()
                decision = decide(PlaylistState.of(pl), directives)
                if decision.outcome is Outcome.BAD_REQUEST:
                    return 400, decision.reason.encode()
                if decision.outcome is Outcome.ANSWER or self.lie:
                    return 200, pl.render().encode()
                left = deadline - time.monotonic()
                if left <= 0:
                    return 503, b"not yet"
                self.waited += 1
                self.cond.wait(left)


@pytest.fixture
def origin(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Origin]]:
    root = tmp_path_factory.mktemp("llts")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "4",
         "-pix_fmt", "yuv420p", "-c:v", "libx264", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
         "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod", str(root / "vod.m3u8")],
        check=True, timeout=60,
    )  # fmt: skip
    state = Origin(lie=getattr(request, "param", False))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/ll.m3u8":
                super().do_GET()
                return
            status, body = state.answer(parts.query)
            state.statuses.append(status)
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.apple.mpegurl")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server = threading.Thread(target=httpd.serve_forever, name="ll-origin-http", daemon=True)
    server.start()
    state.thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        state.stop.set()
        httpd.shutdown()
        httpd.server_close()
        server.join(5)
        state.thread.join(5)


def analyse(*args: str) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "analysers.hls", *args], capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout.splitlines()


def test_analyser_follows_with_blocking_reloads(origin: tuple[str, Origin]) -> None:
    base, state = origin
    code, lines = analyse(f"{base}/ll.m3u8", "-D", "1", "-T", "20")
    assert code == 0, lines
    summary = lines[-1]
    assert "segments=4" in summary and "missing=0" in summary
    blocking = int(summary.split("blocking_reloads=")[1].split()[0])
    assert blocking >= 8  # about one per 250 ms part over 2.9 s of media
    assert state.waited > 0  # requests really were held until the part appeared
    assert set(state.statuses) == {200}


def test_bad_directives_get_400(origin: tuple[str, Origin]) -> None:
    base, _ = origin
    for query in ("_HLS_msn=99", "_HLS_part=1", "_HLS_msn=x"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/ll.m3u8?{query}", timeout=5)
        assert info.value.code == 400
        info.value.close()


@pytest.mark.parametrize("origin", [True], indirect=True)
def test_lying_origin_is_reported(origin: tuple[str, Origin]) -> None:
    base, _ = origin
    code, lines = analyse(f"{base}/ll.m3u8", "-T", "3")
    assert code == 1
    assert any(
        "was answered with a playlist that lacks it" in line
        for line in lines
        if line.startswith("PROBLEM")
    )
