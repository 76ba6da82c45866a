"""Fixtures for the segmented outputs: clips made at test time, published on the bus,
and a real MistOutHTTP (with the HLS and CMAF plug-ins) on a free port.

Media is encoded with the ffmpeg CLI and demuxed by PyAV into the media model (the
same path as ``tests/outputs_http``, whose publishers and server helpers are reused).
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shm import StreamWriter
from shm.model import StreamState
from tests.outputs_http.conftest import (
    GOP,
    H264_AAC,
    Frame,
    Server,
    Source,
    make_source,
    publish_vod,
    start_server,
    stop_server,
    unique,
)

FPS = 25
VOD_SECONDS = 20
LIVE_SECONDS = 4


def make_clip(path: Path, seconds: int, gop: int = FPS) -> Source:
    """H264 (B-frames) + AAC: ``seconds`` long, a keyframe every ``gop`` frames."""
    args = [a if a != str(GOP) else str(gop) for a in H264_AAC]  # -g / -keyint_min
    return make_source(path, args, seconds)


class SteadyPublisher:
    """Publishes a clip live, in real time, looped with gap-free timestamps.

    Video repeats every ``frames x 40 ms``; audio frames are cycled on their own and
    stamped at ``n x 1024 / rate`` so both tracks stay continuous across loops (what a
    camera would send). :meth:`resume_after` imitates MistInBuffer taking back a
    publisher: a pause, timestamps that follow on 20 ms after the last packet, and a
    ``discontinuities`` mark on every track."""

    def __init__(self, stream: str, src: Source) -> None:
        self.stream = stream
        self.writer = StreamWriter(stream, live=True)
        for t in src.tracks:
            self.writer.add_track(t)
        self.video = [f for f in src.frames if f.track == 1]
        self.audio = [f for f in src.frames if f.track == 2]
        self.rate = src.audio.rate
        self.stop_flag = threading.Event()
        self.pause_at_ms: int | None = None
        self.pause_s = 0.0
        self.last_dts = 0
        self._next: Iterator[tuple[int, Frame]] | None = None  # publish_until's position
        self._held: tuple[int, Frame] = (0, self.video[0])
        self.thread = threading.Thread(target=self._run, name=f"publish {stream}", daemon=True)

    def start(self) -> SteadyPublisher:
        self.writer.set_state(StreamState.READY)
        self.thread.start()
        return self

    def resume_after(self, at_ms: int, pause_s: float) -> None:
        self.pause_s, self.pause_at_ms = pause_s, at_ms

    def _frames(self) -> Iterator[tuple[int, Frame]]:
        span = len(self.video) * 1000 // FPS
        vi = ai = 0
        while True:
            v = self.video[vi % len(self.video)]
            vdts = v.dts + (vi // len(self.video)) * span
            adts = ai * 1024 * 1000 // self.rate
            if vdts <= adts:
                yield vdts, v
                vi += 1
            else:
                yield adts, self.audio[ai % len(self.audio)]
                ai += 1

    def _run(self) -> None:
        t0 = time.monotonic()
        shift = 0
        for dts, f in self._frames():
            if (
                self.pause_at_ms is not None
                and dts >= self.pause_at_ms
                and f.track == 1
                and f.keyframe
            ):
                # the publisher drops and comes back: the buffer makes times follow on
                self.pause_at_ms = None
                if self.stop_flag.wait(self.pause_s):
                    return
                shift = self.last_dts + 20 - dts
                t0 = time.monotonic() - (dts + shift) / 1000
                for tid, t in self.writer.tracks.items():
                    marks = [*t.extra.get("discontinuities", []), dts + shift]
                    self.writer.update_track(tid, extra={**t.extra, "discontinuities": marks})
            out = dts + shift
            delay = t0 + out / 1000 - time.monotonic()
            if delay > 0 and self.stop_flag.wait(delay):
                return
            self.writer.append(f.track, out, f.offset, f.keyframe, f.data)
            self.last_dts = max(self.last_dts, out)

    def publish_until(self, ms: int) -> None:
        """Without :meth:`start`: append at once every frame before media time ``ms``
        (tests that decide when a segment completes)."""
        if self._next is None:
            self.writer.set_state(StreamState.READY)
            self._next = self._frames()
            self._held = next(self._next)
        while self._held[0] < ms:
            dts, f = self._held
            self.writer.append(f.track, dts, f.offset, f.keyframe, f.data)
            self.last_dts = max(self.last_dts, dts)
            self._held = next(self._next)

    def close(self) -> None:
        self.stop_flag.set()
        if self.thread.is_alive():
            self.thread.join(5)
        self.writer.close()


@pytest.fixture(scope="session")
def vod_clip(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_clip(tmp_path_factory.mktemp("seg") / "vod.mp4", VOD_SECONDS)


@pytest.fixture(scope="session")
def live_clip(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_clip(tmp_path_factory.mktemp("seg") / "live.mp4", LIVE_SECONDS)


@pytest.fixture(scope="module")
def vod(vod_clip: Source) -> Iterator[str]:
    name = unique("segvod")
    w = publish_vod(name, vod_clip)
    try:
        yield name
    finally:
        w.close()


def _publish(clip: Source) -> Iterator[SteadyPublisher]:
    pub = SteadyPublisher(unique("seglive"), clip).start()
    try:
        yield pub
    finally:
        pub.close()


@pytest.fixture(scope="module")
def live(live_clip: Source) -> Iterator[SteadyPublisher]:
    """One live stream shared by a module's tests (it keeps running between them)."""
    yield from _publish(live_clip)


@pytest.fixture
def fresh_live(live_clip: Source) -> Iterator[SteadyPublisher]:
    """A live stream of the test's own (for tests that disturb the publisher)."""
    yield from _publish(live_clip)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = start_server()
    try:
        yield s
    finally:
        with contextlib.suppress(Exception):
            stop_server(s)


def fetch(
    server: Server, path: str, headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, dict[str, str], bytes, float]:
    """GET ``path``: (status, lower-case headers, body, seconds taken)."""
    t0 = time.monotonic()
    req = urllib.request.Request(server.base + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            return (
                r.status,
                {k.lower(): v for k, v in r.headers.items()},
                body,
                time.monotonic() - t0,
            )
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read(), time.monotonic() - t0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Attach MistOutHTTP's log to failing tests that used the server."""
    report = yield
    srv = item.funcargs.get("server") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(srv, Server) and srv.log.exists():  # type: ignore[attr-defined]
        report.sections.append(("MistOutHTTP log", srv.log.read_text(errors="replace")[-8000:]))  # type: ignore[attr-defined]
    return report
