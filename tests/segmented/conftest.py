"""Fixtures for the segmented outputs: clips made at test time, published on the bus,
and a real MistOutHTTP (with the HLS and CMAF plug-ins) on a free port.

Media is encoded with the ffmpeg CLI and demuxed by PyAV into the media model (the
same path as ``tests/outputs_http``, whose publishers and server helpers are reused).
"""

from __future__ import annotations

import contextlib
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from shm.model import TrackMeta
from tests.outputs_http.conftest import (
    CODEC_NAMES,
    H264_AAC,
    Frame,
    LivePublisher,
    Server,
    Source,
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
    import subprocess

    args = [a if a != "25" else str(gop) for a in H264_AAC]  # -g / -keyint_min
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(seconds), *args, str(path)],
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
            if pkt.size == 0 or pkt.dts is None or pkt.pts is None:
                continue
            tb = pkt.time_base
            tid = 1 if pkt.stream is vs else 2
            dts = round(pkt.dts * tb * 1000)
            pts = round(pkt.pts * tb * 1000)
            frames.append(Frame(tid, dts, pts - dts, bool(pkt.is_keyframe) or tid == 2, bytes(pkt)))
    base = min(f.dts for f in frames)
    for f in frames:
        f.dts -= base
    frames.sort(key=lambda f: (f.dts, f.track))
    return Source(path, tracks, frames)


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


@pytest.fixture
def live(live_clip: Source) -> Iterator[LivePublisher]:
    pub = LivePublisher(unique("seglive"), live_clip).start()
    try:
        yield pub
    finally:
        pub.close()


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
