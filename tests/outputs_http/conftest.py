"""Fixtures: real media made with ffmpeg, published on the shm bus, and a real MistOutHTTP.

The source clip (H264 + AAC, 6 s, 25 fps, keyframe every 1 s, B-frames) is demuxed with
PyAV -- an independent demuxer -- into the media model (avcC init, AVCC payloads, raw
AAC with its AudioSpecificConfig) and written with ``shm.StreamWriter``: VoD through
``set_index``/``load_page``, live paced in real time from a thread.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest

from shm import StreamWriter
from shm.model import StreamState, TrackMeta

DURATION_S = 6
FPS = 25
GOP = 25


@dataclass
class Frame:
    track: int
    dts: int
    offset: int
    keyframe: bool
    data: bytes


@dataclass
class Source:
    path: Path
    tracks: list[TrackMeta]
    frames: list[Frame]  # in decode order across tracks

    def of(self, track: int) -> list[Frame]:
        return [f for f in self.frames if f.track == track]

    @property
    def video(self) -> TrackMeta:
        return next(t for t in self.tracks if t.type == "video")

    @property
    def audio(self) -> TrackMeta:
        return next(t for t in self.tracks if t.type == "audio")


def _ms(value: int, tb: Fraction) -> int:
    return round(value * tb * 1000)


H264_AAC = [
    "-c:v", "libx264", "-preset", "veryfast", "-g", str(GOP), "-keyint_min", str(GOP),
    "-bf", "2", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-ac", "2",
]  # fmt: skip
VP9_OPUS = [
    "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", str(GOP),
    "-keyint_min", str(GOP), "-b:v", "300k", "-pix_fmt", "yuv420p",
    "-c:a", "libopus", "-b:a", "48k", "-ac", "2",
]  # fmt: skip
CODEC_NAMES = {"h264": "H264", "vp9": "VP9", "aac": "AAC", "opus": "opus"}


def make_source(path: Path, codec_args: list[str], seconds: int = DURATION_S) -> Source:
    """Encode a test clip with ffmpeg and demux it with PyAV into the media model."""
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", str(seconds), *codec_args, str(path),
        ],
        check=True,
    )  # fmt: skip
    tracks: list[TrackMeta] = []
    frames: list[Frame] = []
    with av.open(str(path)) as c:
        vs, as_ = c.streams.video[0], c.streams.audio[0]
        vcc, acc = vs.codec_context, as_.codec_context
        tracks.append(
            TrackMeta(1, "video", CODEC_NAMES[vcc.name], init=bytes(vcc.extradata or b""),
                      width=vcc.width, height=vcc.height, fpks=FPS * 1000)
        )  # fmt: skip
        tracks.append(
            TrackMeta(2, "audio", CODEC_NAMES[acc.name], init=bytes(acc.extradata or b""),
                      rate=acc.sample_rate, channels=2, size=16)
        )  # fmt: skip
        for pkt in c.demux(vs, as_):
            if pkt.size == 0 or pkt.dts is None:
                continue
            tb = pkt.time_base
            tid = 1 if pkt.stream is vs else 2
            dts = _ms(pkt.dts, tb)
            pts = _ms(pkt.pts if pkt.pts is not None else pkt.dts, tb)
            frames.append(Frame(tid, dts, pts - dts, bool(pkt.is_keyframe) or tid == 2, bytes(pkt)))
    # Shift so the earliest dts is 0 (B-frames give the video a negative start).
    base = min(f.dts for f in frames)
    for f in frames:
        f.dts -= base
    frames.sort(key=lambda f: (f.dts, f.track))
    return Source(path, tracks, frames)


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """H264 (B-frames) + AAC, 6 s."""
    return make_source(tmp_path_factory.mktemp("media") / "src.mp4", H264_AAC)


@pytest.fixture(scope="session")
def webm_source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """VP9 + Opus, 6 s."""
    return make_source(tmp_path_factory.mktemp("media") / "src.webm", VP9_OPUS)


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def publish_vod(stream: str, src: Source, load: bool = True) -> StreamWriter:
    """A VoD stream: the full index, and every data page loaded unless ``load`` is False."""
    w = StreamWriter(stream, live=False)
    for t in src.tracks:
        w.add_track(t)
    for t in src.tracks:
        mine = src.of(t.id)
        w.set_index(t.id, [(f.dts, f.offset, len(f.data), f.keyframe) for f in mine])
        done, page = 0, 0
        while load and done < len(mine):
            parts = w.page_parts(t.id, page)
            w.load_page(t.id, page, [mine[n].data for n in parts])
            done = parts.stop
            page += 1
    w.set_state(StreamState.READY)
    return w


class PageLoader:
    """Plays a VoD input: loads the data pages readers ask for, from a thread."""

    def __init__(self, stream: str, src: Source) -> None:
        self.writer = publish_vod(stream, src, load=False)
        self.src = src
        self.loads = 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"loader {stream}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_flag.wait(0.01):
            for track, page in self.writer.wanted_pages():
                mine = self.src.of(track)
                parts = self.writer.page_parts(track, page)
                self.writer.load_page(track, page, [mine[n].data for n in parts])
                self.loads += 1

    def close(self) -> None:
        self.stop_flag.set()
        self.thread.join(5)
        self.writer.close()


class LivePublisher:
    """Writes the source in real time, looping with continuing timestamps, from a thread."""

    def __init__(self, stream: str, src: Source, loops: int = 100) -> None:
        self.writer = StreamWriter(stream, live=True)
        for t in src.tracks:
            self.writer.add_track(t)
        self.src = src
        self.loops = loops
        self.stop_flag = threading.Event()
        self.sent = 0
        self.last_dts = 0
        self.thread = threading.Thread(target=self._run, name=f"publish {stream}", daemon=True)

    def start(self) -> LivePublisher:
        self.writer.set_state(StreamState.READY)
        self.thread.start()
        return self

    def _run(self) -> None:
        span = max(f.dts for f in self.src.frames) + 1000 // FPS
        t0 = time.monotonic()
        for loop in range(self.loops):
            for f in self.src.frames:
                dts = f.dts + loop * span
                delay = t0 + dts / 1000 - time.monotonic()
                if delay > 0 and self.stop_flag.wait(delay):
                    return
                self.writer.append(f.track, dts, f.offset, f.keyframe, f.data)
                self.sent += 1
                self.last_dts = dts

    def close(self) -> None:
        self.stop_flag.set()
        self.thread.join(5)
        self.writer.close()


@pytest.fixture
def vod_stream(source: Source) -> Iterator[str]:
    name = unique("vod")
    w = publish_vod(name, source)
    try:
        yield name
    finally:
        w.close()


@pytest.fixture
def lazy_vod_stream(source: Source) -> Iterator[PageLoader]:
    """VoD whose pages are loaded only when a reader asks (as MistInMP4 does)."""
    loader = PageLoader(unique("lazy"), source)
    try:
        yield loader
    finally:
        loader.close()


@pytest.fixture
def webm_vod_stream(webm_source: Source) -> Iterator[str]:
    name = unique("webm")
    w = publish_vod(name, webm_source)
    try:
        yield name
    finally:
        w.close()


@pytest.fixture
def live_stream(source: Source) -> Iterator[LivePublisher]:
    pub = LivePublisher(unique("live"), source).start()
    # Let two keyframes arrive so viewers can start at once.
    deadline = time.monotonic() + 10
    while pub.last_dts < 1200 and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield pub
    finally:
        pub.close()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout: float = 20
    ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def start_server(*extra: str) -> Server:
    """Start MistOutHTTP on a free port (``-p 0``); its log goes to a temporary file."""
    env = dict(os.environ, MIST_CONTROL="none", PYTHONUNBUFFERED="1")
    env.pop("MIST_CHILD", None)
    with tempfile.NamedTemporaryFile(prefix="mistouthttp-", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "outputs.http.server", "-p", "0", "-i", "127.0.0.1", *extra],
            stderr=log,
            env=env,
        )
    server = Server(proc, "127.0.0.1", 0, Path(log.name))
    atexit.register(server.log.unlink, missing_ok=True)  # also when callers stop it themselves
    deadline = time.monotonic() + 90  # a loaded 2-core machine was seen taking 13 s
    while time.monotonic() < deadline and proc.poll() is None:
        for line in server.log.read_text(errors="replace").splitlines():
            if line.startswith("MistOutHTTP listening on"):
                server.port = int(line.rsplit(":", 1)[1])
                return server
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError("MistOutHTTP did not start:\n" + server.log.read_text(errors="replace"))


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        raise AssertionError("MistOutHTTP ignored SIGTERM") from None
    finally:
        server.log.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = start_server("--header_timeout", "2", "--max_buffer", "16")
    try:
        yield s
    finally:
        with contextlib.suppress(Exception):
            stop_server(s)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Attach MistOutHTTP's log to failing tests that used the server."""
    report = yield
    srv = item.funcargs.get("server") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(srv, Server) and srv.log.exists():  # type: ignore[attr-defined]
        report.sections.append(("MistOutHTTP log", srv.log.read_text(errors="replace")[-8000:]))  # type: ignore[attr-defined]
    return report
