"""Fault injection: ``kill -9`` of each kind of process while viewers watch and ffmpeg
pushes. The controller must bring back what must run (connectors within 5 s), viewers
of other processes must not notice, and a restarted controller must start clean."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import psutil
import pytest

from bench.loadclient import LoadThread, ViewerStats, http_viewer, rtmp_viewer
from tests.reliability.conftest import (
    Server,
    config_streams,
    listeners,
    shm_pages,
    start_server,
    stop_server,
    try_fetch,
    wait_for,
    wait_gone,
)

pytestmark = pytest.mark.reliability
RESTART_S = 5.0  # connectors must be serving again within this


@dataclass
class Download:
    """A paced HTTP download in a thread: a viewer that takes its time over a VoD file."""

    url: str
    rate: int  # bytes/s
    data: bytearray
    error: str = ""

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=15) as resp:
                while chunk := resp.read(16384):
                    self.data += chunk
                    time.sleep(len(chunk) / self.rate)
        except OSError as exc:
            self.error = repr(exc)


def paced_download(url: str, rate: int) -> tuple[Download, threading.Thread]:
    dl = Download(url, rate, bytearray())
    th = threading.Thread(target=dl.run, daemon=True)
    th.start()
    return dl, th


def vod_download(srv: Server, seconds: int) -> tuple[bytes, Download, threading.Thread]:
    """The whole VoD as FLV, then a download of it paced to take ``seconds``, started."""
    url = f"http://127.0.0.1:{srv.http}/{srv.vod}.flv"
    full = try_fetch(url)
    assert full is not None
    dl, th = paced_download(url, len(full) // seconds)
    wait_for(lambda: len(dl.data) > 0, 10, 0.05, "the VoD download started")
    return full, dl, th


def frames(data: bytes, tmp: Path, name: str) -> int:
    path = tmp / name
    path.write_bytes(data)
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def hls_frames(url: str, want: int = 10) -> int:
    """Video frames FFmpeg (PyAV) decodes from a live HLS playlist (TS or fMP4), up to ``want``."""
    n = 0
    with av.open(url, timeout=15) as c:
        for _ in c.decode(video=0):
            n += 1
            if n >= want:
                break
    return n


def kill9(proc: psutil.Process) -> float:
    proc.send_signal(signal.SIGKILL)
    return time.monotonic()


def back_within(
    srv: Server, program: str, old: int, check: Callable[[], object], since: float
) -> float:
    """Seconds from the kill until a new ``program`` runs and ``check()`` passes."""
    new = wait_for(
        lambda: (p := srv.one(program)) is not None and p.pid != old and p,
        10,
        0.05,
        f"a new {program}",
    )
    wait_for(check, 10, 0.05, f"{program} serving again")
    took = time.monotonic() - since
    assert new.pid != old
    return took


def rtmp_undisturbed(stats: ViewerStats, killed: float) -> None:
    assert stats.status == 1 and not stats.error and not stats.closed, stats
    assert stats.max_gap < 2.0, f"RTMP viewer stalled {stats.max_gap:.1f} s"
    assert stats.bytes_between(killed, killed + 2.5) > 20_000, "no media after the kill"


@pytest.fixture(scope="module")
def srv(server: Server) -> Server:
    server.push_live()
    return server


def _ensure_push(s: Server) -> None:
    if not s.pushes or s.pushes[-1].poll() is not None or not s.stream_online(s.live):
        s.stop_pushes()
        s.push_live()


def test_kill_http_output_rtmp_viewer_unaffected(srv: Server, load: LoadThread) -> None:
    _ensure_push(srv)
    rv, hv = ViewerStats(), ViewerStats()
    f_r = load.submit(rtmp_viewer("127.0.0.1", srv.rtmp, "live", srv.live, 7, rv))
    f_h = load.submit(http_viewer("127.0.0.1", srv.http, f"/{srv.live}.flv", 7, hv))
    wait_for(lambda: rv.bytes > 0 and hv.bytes > 0, 15, 0.05, "both viewers playing")
    time.sleep(1.0)
    old = srv.wait_one("MistOutHTTP")
    killed = kill9(old)
    took = back_within(srv, "MistOutHTTP", old.pid, srv.http_ok, killed)
    assert took < RESTART_S, f"MistOutHTTP back after {took:.1f} s"
    f_r.result(20)
    f_h.result(20)
    rtmp_undisturbed(rv, killed)
    assert hv.closed or hv.error  # its own process died: that viewer is gone
    live = try_fetch(f"http://127.0.0.1:{srv.http}/{srv.live}.flv", limit=50_000)
    assert live is not None and live[:3] == b"FLV"
    # HLS (TS) and CMAF (fMP4, LL-HLS) live in MistOutHTTP too: served again, decodable
    base = f"http://127.0.0.1:{srv.http}"
    assert hls_frames(f"{base}/hls/{srv.live}/index.m3u8") == 10
    assert hls_frames(f"{base}/cmaf/{srv.live}/index.m3u8") == 10
    master = try_fetch(f"{base}/cmaf/{srv.live}/index.m3u8")
    assert master is not None
    video = next(ln for ln in master.decode().splitlines() if ln and not ln.startswith("#"))
    ll = try_fetch(f"{base}/cmaf/{srv.live}/{video}")
    assert ll is not None and b"#EXT-X-PART:" in ll


def test_kill_rtmp_output_vod_viewer_unaffected(srv: Server, tmp_path: Path) -> None:
    _ensure_push(srv)
    full, dl, th = vod_download(srv, 5)
    old = srv.wait_one("MistOutRTMP")
    killed = kill9(old)

    def rtmp_port_open() -> bool:
        return bool(listeners(srv.rtmp))

    took = back_within(srv, "MistOutRTMP", old.pid, rtmp_port_open, killed)
    assert took < RESTART_S, f"MistOutRTMP back after {took:.1f} s"
    th.join(30)
    assert not dl.error, dl.error
    assert bytes(dl.data) == full  # the HTTP viewer did not notice
    assert frames(bytes(dl.data), tmp_path, "vod.flv") == 250
    # the publisher's connection died with MistOutRTMP; a new push is accepted
    srv.stop_pushes()
    srv.push_live()


def test_kill_vod_input_live_viewer_unaffected(
    srv: Server, load: LoadThread, tmp_path: Path
) -> None:
    _ensure_push(srv)
    full = try_fetch(f"http://127.0.0.1:{srv.http}/{srv.vod}.flv")
    assert full is not None
    dl, th = paced_download(f"http://127.0.0.1:{srv.http}/{srv.vod}.flv", len(full) // 5)
    rv = ViewerStats()
    f_r = load.submit(rtmp_viewer("127.0.0.1", srv.rtmp, "live", srv.live, 6, rv))
    wait_for(lambda: rv.bytes > 0 and dl.data, 15, 0.05, "the viewers playing")
    old = srv.wait_one("MistInMP4", srv.vod)
    killed = kill9(old)
    wait_gone([old.pid], 5)
    # the next viewer gets the VoD again (a new input, started on demand), complete
    data = wait_for(
        lambda: try_fetch(f"http://127.0.0.1:{srv.http}/{srv.vod}.flv"), 10, 0.1, "the VoD again"
    )
    took = time.monotonic() - killed
    assert took < RESTART_S, f"VoD served again after {took:.1f} s"
    assert frames(data, tmp_path, "again.flv") == 250
    f_r.result(20)
    rtmp_undisturbed(rv, killed)
    th.join(30)  # the viewer inside the killed input's stream: cut short or complete
    assert dl.error or len(dl.data) <= len(full)
    # once the old readers are gone, a request starts a fresh input
    wait_for(
        lambda: (
            try_fetch(f"http://127.0.0.1:{srv.http}/{srv.vod}.flv") == full
            and srv.one("MistInMP4", srv.vod)
        ),
        15,
        0.5,
        "a new MistInMP4 serving the VoD",
    )


def test_kill_live_buffer_vod_viewer_unaffected(srv: Server, tmp_path: Path) -> None:
    _ensure_push(srv)
    full, dl, th = vod_download(srv, 4)
    old = srv.wait_one("MistInBuffer", srv.live)
    killed = kill9(old)
    # the push dies with its buffer; the publisher comes back (retrying, as encoders do:
    # a publish in the moment before the controller reaps the dead buffer is dropped)
    wait_for(lambda: srv.pushes[-1].poll() is not None, 10, 0.05, "the push to notice")
    srv.stop_pushes()

    def republished() -> psutil.Process | None:
        if not srv.pushes or srv.pushes[-1].poll() is not None:
            srv.stop_pushes()
            srv.push()
        new = srv.one("MistInBuffer", srv.live)
        return new if new is not None and new.pid != old.pid else None

    wait_for(republished, 20, 0.2, "a new MistInBuffer for the new push")
    wait_for(lambda: srv.stream_online(srv.live), 15, 0.1, "the live stream online again")
    assert time.monotonic() - killed < 25
    data = try_fetch(f"http://127.0.0.1:{srv.http}/{srv.live}.flv", limit=30_000)
    assert data is not None and data[:3] == b"FLV"
    th.join(30)
    assert not dl.error, dl.error
    assert bytes(dl.data) == full


def test_kill_controller_restart_is_clean(tmp_path: Path, load: LoadThread) -> None:
    srv = start_server(tmp_path)
    try:
        srv.push_live()
        rv = ViewerStats()
        load.submit(rtmp_viewer("127.0.0.1", srv.rtmp, "live", srv.live, 5, rv))
        wait_for(lambda: rv.bytes > 0, 15, 0.05, "the RTMP viewer playing")
        before = config_streams(srv.mist.config)
        kids = [p.pid for ps in srv.children().values() for p in ps]
        assert len(kids) >= 3
        assert srv.mist.proc is not None
        srv.mist.proc.send_signal(signal.SIGKILL)
        srv.mist.proc.wait(10)
        # no angel process: the children follow their parent (PR_SET_PDEATHSIG) and exit
        wait_gone(kids, 15)
        srv.stop_pushes()
        assert json.loads(srv.mist.config.read_text())  # the file parses
        assert config_streams(srv.mist.config) == before  # and holds the same streams
        srv.mist.start()
        t0 = time.monotonic()
        wait_for(srv.online, 10, 0.05, "connectors online after the restart")
        wait_for(srv.http_ok, 10, 0.05, "HTTP serving after the restart")
        took = time.monotonic() - t0
        assert took < RESTART_S, f"connectors back {took:.1f} s after the API"
        # exactly one listener per port, and it is a child of the new controller
        mine = {p.pid for ps in srv.children().values() for p in ps}
        for port in (srv.http, srv.rtmp):
            owners = listeners(port)
            assert len(owners) == 1 and owners <= mine, (port, owners, mine)
        srv.push_live()
        data = try_fetch(f"http://127.0.0.1:{srv.http}/{srv.live}.flv", limit=30_000)
        assert data is not None and data[:3] == b"FLV"
        kids = list(mine)
    finally:
        stop_server(srv)
    assert srv.mist.proc is not None and srv.mist.proc.returncode == 0
    wait_gone(kids)
    wait_for(lambda: not shm_pages(srv.vod, srv.live), 10, 0.1, "shm pages removed")
    assert config_streams(srv.mist.config) == before
