"""The real MistController with the real HTTP/RTMP outputs and MP4/buffer inputs on free
ports, a VoD clip made at test time, an ffmpeg live push, and the checks every
reliability test shares (children by program, shm pages of our streams, RSS/fds)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench.loadclient import LoadThread
from controller.default_config import make_demo_clip
from tests.controller.conftest import Mist, base_config, free_port, wait_for

PROGRAMS = ("MistOutHTTP", "MistOutRTMP", "MistInMP4", "MistInBuffer")
LONG = os.environ.get("MIST_RELIABILITY_LONG") == "1"

__all__ = ["LONG", "Server", "free_port", "wait_for"]


def program_of(proc: psutil.Process) -> str:
    """``MistOutHTTP`` for ``python .../MistOutHTTP -p ...`` (console scripts)."""
    try:
        for arg in proc.cmdline()[:3]:
            base = os.path.basename(arg)
            if base.startswith("Mist"):
                return base
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        pass
    return ""


def shm_pages(*streams: str) -> set[str]:
    """Our streams' pages in /dev/shm (other sessions' pages are not ours to judge)."""
    return {
        n for n in os.listdir("/dev/shm") if n.startswith("Mst") and any(s in n for s in streams)
    }


def listeners(port: int) -> set[int]:
    """Pids listening on TCP ``port``."""
    pids = set()
    for c in psutil.net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            pids.add(c.pid)
    return pids


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def fetch(url: str, limit: int = 1 << 26, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read(limit))


def try_fetch(url: str, limit: int = 1 << 26) -> bytes | None:
    try:
        return fetch(url, limit, 2)
    except OSError:
        return None


@dataclass
class Server:
    """One controller with HTTP + RTMP connectors, a VoD stream and a push stream."""

    mist: Mist
    http: int
    rtmp: int
    vod: str
    live: str
    clip: Path
    pushes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.mist.proc is not None
        return self.mist.proc.pid

    def children(self) -> dict[str, list[psutil.Process]]:
        out: dict[str, list[psutil.Process]] = {}
        try:
            kids = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return out
        for kid in kids:
            try:
                if kid.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.NoSuchProcess:
                continue
            name = program_of(kid)
            if name:
                out.setdefault(name, []).append(kid)
        return out

    def one(self, program: str, stream: str = "") -> psutil.Process | None:
        for proc in self.children().get(program, []):
            with contextlib.suppress(psutil.NoSuchProcess):
                if not stream or stream in proc.cmdline():
                    return proc
        return None

    def wait_one(self, program: str, stream: str = "", timeout: float = 15) -> psutil.Process:
        try:
            found: psutil.Process = wait_for(
                lambda: self.one(program, stream), timeout, 0.05, program
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; children {self.children()}; log:\n{self.mist.stderr()[-4000:]}"
            ) from None
        return found

    def online(self) -> bool:
        protos = self.mist.api({"minimal": 1, "config": True}, "/api2")["config"]["protocols"]
        return all(p.get("online") == 1 for p in protos)

    def http_ok(self) -> bool:
        return try_fetch(f"http://127.0.0.1:{self.http}/json_{self.vod}.js") is not None

    def stream_online(self, name: str) -> bool:
        return bool(self.mist.api({"streams": 1}, "/api2")["streams"][name].get("online") == 1)

    def push(self, seconds: int = 300) -> subprocess.Popen[bytes]:
        """ffmpeg publishes a real-time test pattern + tone (H264 + AAC) to the live stream."""
        proc = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
             "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", str(seconds),
             "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-x264-params", "log-level=none",
             "-c:a", "aac", "-f", "flv", f"rtmp://127.0.0.1:{self.rtmp}/live/{self.live}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.pushes.append(proc)
        return proc

    def push_live(self, timeout: float = 60, seconds: int = 300) -> subprocess.Popen[bytes]:
        """A push (for ``seconds``), and wait until the stream is playable."""
        proc = self.push(seconds)
        wait_for(lambda: self.stream_online(self.live), timeout, 0.1, "the live stream online")
        return proc

    def stop_pushes(self) -> None:
        for proc in self.pushes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.pushes.clear()


def start_server(tmp: Path, clip_seconds: int = 10) -> Server:
    clip = tmp / "clip.mp4"
    if not clip.exists():
        make_demo_clip(clip, seconds=clip_seconds)
    token = secrets.token_hex(3)
    vod, live = f"relvod{token}", f"rellive{token}"
    http, rtmp = free_port(), free_port()
    cfg = base_config(0)
    cfg["config"]["protocols"] = [
        # short client timeouts, so the hostile-client tests see them act
        {"connector": "HTTP", "port": http, "interface": "127.0.0.1", "header_timeout": 3},
        {"connector": "RTMP", "port": rtmp, "interface": "127.0.0.1", "timeout": 3},
    ]
    cfg["streams"] = {
        vod: {"name": vod, "source": str(clip)},
        live: {"name": live, "source": "push://"},
    }
    config = tmp / "config.json"
    config.write_text(json.dumps(cfg, indent=1))
    env = dict(os.environ, MIST_PROGRAMS=",".join(PROGRAMS))
    for var in ("MIST_CONTROL", "MIST_CHILD", "MIST_NO_BUILTIN"):
        env.pop(var, None)
    mist = Mist(tmp, free_port(), config, env, [])
    mist.start()
    srv = Server(mist, http, rtmp, vod, live, clip)
    wait_for(srv.online, 90, 0.1, "HTTP and RTMP online")  # slow starts on a loaded machine
    wait_for(srv.http_ok, 60, 0.1, "the VoD stream over HTTP")
    return srv


def stop_server(srv: Server) -> None:
    srv.stop_pushes()
    proc = srv.mist.proc
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_gone(pids: list[int], timeout: float = 15) -> None:
    def gone() -> bool:
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                pass
        return True

    wait_for(gone, timeout, 0.1, f"processes {pids} to exit")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A controller shared by the suite's tests (they leave it serving); at the end: a clean stop, no orphans, no
    shm pages of its streams left."""
    srv = start_server(tmp_path_factory.mktemp("rel"))
    try:
        yield srv
    finally:
        kids = [p.pid for ps in srv.children().values() for p in ps]
        stop_server(srv)
        assert srv.mist.proc is not None and srv.mist.proc.returncode == 0, srv.mist.stderr()[
            -3000:
        ]
        wait_gone(kids)
        wait_for(lambda: not shm_pages(srv.vod, srv.live), 10, 0.1, "shm pages removed")


@pytest.fixture
def load() -> Iterator[LoadThread]:
    with LoadThread() as lt:
        yield lt


def config_streams(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    streams: dict[str, Any] = data["streams"]
    return streams
