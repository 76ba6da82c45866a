"""Fixtures for the live path: real MistOutRTMP (standalone: it spawns MistInBuffer
itself), real MistOutHTTP, ffmpeg publishers, and leftover checks."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shm.model import StreamState
from tests.outputs_http.conftest import Server as HttpServer
from tests.outputs_http.conftest import start_server as start_http
from tests.outputs_http.conftest import stop_server as stop_http

PY = sys.executable
# how long a program may take to start (import, bind, first answer): minutes' worth of
# margin, since a loaded 2-core machine was measured at 17 s for MistOutRTMP
STARTUP_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MADE: set[str] = set()  # every stream name a test made up, for the leftover check


def unique(prefix: str = "lv") -> str:
    name = f"{prefix}{secrets.token_hex(4)}"
    MADE.add(name)
    return name


def wait_for(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def standalone_env() -> dict[str, str]:
    """No controller: the control client's UDP requests go to a closed port."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", UDP_API=f"127.0.0.1:{free_port()}")
    env.pop("MIST_CONTROL", None)
    env.pop("MIST_CHILD", None)
    return env


def stream_state(stream: str) -> StreamState | None:
    import shm

    try:
        with shm.StreamReader(stream) as r:
            return r.meta.state
    except shm.StreamNotFound:
        return None


def shm_names(stream: str) -> list[str]:
    """The stream's pages under /dev/shm (its name exactly, not a prefix of another)."""
    pat = re.compile(rf"^Mst(Lock|Meta|STATE|User|Trak|Data){re.escape(stream)}(@|$)")
    return [n for n in os.listdir("/dev/shm") if pat.match(n)]


@dataclass
class Rtmp:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, stream: str, app: str = "live") -> str:
        return f"rtmp://127.0.0.1:{self.port}/{app}/{stream}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def start_rtmp(*extra: str, env: dict[str, str] | None = None) -> Rtmp:
    with tempfile.NamedTemporaryFile(prefix="mistoutrtmp-", suffix=".log", delete=False) as f:
        log = Path(f.name)
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [PY, "-m", "outputs.rtmp.server", "-p", "0", "-i", "127.0.0.1", *extra],
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env or standalone_env(),
        )
    srv = Rtmp(proc, 0, log)
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline and proc.poll() is None:
        for line in srv.text().splitlines():
            if line.startswith("MistOutRTMP listening on"):
                srv.port = int(line.rsplit(":", 1)[1])
                return srv
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError("MistOutRTMP did not start:\n" + srv.text())


def stop_rtmp(srv: Rtmp) -> None:
    srv.proc.terminate()
    try:
        srv.proc.wait(15)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        srv.proc.wait()
        raise AssertionError("MistOutRTMP ignored SIGTERM") from None


@pytest.fixture(scope="module")
def rtmp() -> Iterator[Rtmp]:
    srv = start_rtmp("--timeout", "3")
    try:
        yield srv
    finally:
        stop_rtmp(srv)
        srv.log.unlink(missing_ok=True)
    # the buffers it spawned ended with it and left nothing in /dev/shm
    wait_for(lambda: not [n for s in MADE for n in shm_names(s)], 30, "no shm leftovers")


@pytest.fixture(scope="module")
def http() -> Iterator[HttpServer]:
    srv = start_http()
    try:
        yield srv
    finally:
        with contextlib.suppress(Exception):
            stop_http(srv)


FFMPEG_H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
               "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"]  # fmt: skip


def ffmpeg_publish(
    url: str, seconds: float, size: str = "320x240", codec: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """ffmpeg sends testsrc + sine in real time (-re) to ``url``."""
    return subprocess.Popen(
        ["ffmpeg", "-v", "error", "-nostdin", "-re",
         "-f", "lavfi", "-i", f"testsrc=size={size}:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         "-t", str(seconds), *(codec or FFMPEG_H264), "-f", "flv", url],
        stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_ready(stream: str, timeout: float = 60.0) -> None:
    wait_for(lambda: stream_state(stream) == StreamState.READY, timeout, f"{stream} READY")


def stop_proc(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def publisher(rtmp: Rtmp) -> Iterator[Callable[..., tuple[str, subprocess.Popen[bytes]]]]:
    """``start(seconds) -> (stream, ffmpeg process)`` with the stream READY on the bus."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(seconds: float = 30, **kw: Any) -> tuple[str, subprocess.Popen[bytes]]:
        stream = unique()
        proc = ffmpeg_publish(rtmp.url(stream), seconds, **kw)
        procs.append(proc)
        wait_ready(stream)
        return stream, proc

    try:
        yield start
    finally:
        for p in procs:
            stop_proc(p)
