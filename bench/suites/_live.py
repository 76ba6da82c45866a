"""What the live benchmarks share: servers on loopback ports (our MistOutRTMP +
MistOutHTTP, nginx with its RTMP module), a sans-IO RTMP publisher of a synthetic
1 Mbit/s H264 stream whose frames carry their send time, and light viewers.

The publisher sends a real AVC sequence header (so every server accepts the stream)
followed by frames whose AVCC payload is one filler NAL (type 12) holding a magic
word and ``time.monotonic_ns()`` at send time, padded to the target size. Nothing on
the way parses NAL contents, so the stamp arrives untouched in every output format.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mistcodecs.rtmp import ConnectResult, RtmpClientConnection, Status, StreamCreated

MAGIC = b"MiStPyTs"
STAMP = struct.Struct(">Q")
FPS = 25
NGINX_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Servers:
    rtmp: int  # our MistOutRTMP
    http: int  # our MistOutHTTP
    nginx: int  # nginx-rtmp, 0 if not installed
    procs: list[subprocess.Popen[bytes]]


@contextmanager
def servers() -> Iterator[Servers]:
    """Our RTMP + HTTP outputs (standalone: RTMP spawns the live buffers) and nginx-rtmp."""
    env = dict(os.environ, UDP_API=f"127.0.0.1:{free_port()}")
    env.pop("MIST_CONTROL", None)
    env.pop("MIST_CHILD", None)
    procs: list[subprocess.Popen[bytes]] = []
    rtmp, http, nginx = free_port(), free_port(), 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    try:
        for port, module in ((rtmp, "outputs.rtmp.server"), (http, "outputs.http.server")):
            proc = subprocess.Popen(
                [sys.executable, "-m", module, "-p", str(port), "-i", "127.0.0.1", "-g", "2"],
                env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(proc)
            wait_port(port, proc, module)
        if NGINX_MODULE.exists() and shutil.which("nginx"):
            nginx = free_port()
            conf = tmp / "nginx.conf"
            conf.write_text(
                f"load_module {NGINX_MODULE};\ndaemon off;\nmaster_process off;\n"
                f"error_log {tmp}/error.log error;\npid {tmp}/nginx.pid;\n"
                "worker_rlimit_nofile 65536;\n"
                "events { worker_connections 4096; }\n"
                f"rtmp {{ server {{ listen 127.0.0.1:{nginx}; chunk_size 4096;\n"
                "  application live { live on; record off; } } }\n"
            )
            proc = subprocess.Popen(
                ["nginx", "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "error.log")],
                stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(proc)
            wait_port(nginx, proc, "nginx")
        yield Servers(rtmp, http, nginx, procs)
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def avc_config() -> bytes:
    """A real avcC (SPS/PPS of a 320x240 H264 stream) made with PyAV."""
    from fractions import Fraction

    import av
    import numpy as np

    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 320, 240, "yuv420p"
    enc.time_base = Fraction(1, FPS)
    enc.options = {"x264-params": "log-level=none"}
    enc.flags |= av.codec.context.Flags.global_header
    enc.open()
    frame = av.VideoFrame.from_ndarray(np.zeros((240, 320, 3), np.uint8), format="rgb24")
    frame = frame.reformat(format="yuv420p")
    frame.pts = 0
    enc.encode(frame)
    extradata = bytes(enc.extradata or b"")
    if not extradata:
        raise RuntimeError("libx264 gave no extradata")
    return extradata


def stamped_body(key: bool, size: int) -> bytes:
    """An FLV AVC video body whose payload is one filler NAL carrying the send time."""
    nal = b"\x0c" + MAGIC + STAMP.pack(time.monotonic_ns())
    nal += bytes(max(0, size - len(nal)))
    return (b"\x17\x01" if key else b"\x27\x01") + b"\0\0\0" + len(nal).to_bytes(4, "big") + nal


def read_stamps(buf: bytearray) -> list[int]:
    """Send times of every complete stamp in ``buf``; consumed bytes are removed."""
    out: list[int] = []
    pos = 0
    while (at := buf.find(MAGIC, pos)) >= 0 and at + len(MAGIC) + 8 <= len(buf):
        out.append(STAMP.unpack_from(buf, at + len(MAGIC))[0])
        pos = at + len(MAGIC) + 8
    keep = max(pos, len(buf) - len(MAGIC) - 8)
    del buf[:keep]
    return out


class Publisher:
    """Publishes the synthetic stream in real time to ``rtmp://127.0.0.1:port/app/name``."""

    def __init__(self, port: int, app: str, name: str, bitrate: int = 1_000_000) -> None:
        self.port, self.app, self.name = port, app, name
        self.frame_bytes = bitrate // 8 // FPS
        self.sent = 0
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def run(self, seconds: float, config: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        conn = RtmpClientConnection(plain_handshake=True)
        events: list[object] = []

        async def until(kind: type) -> object:
            while True:
                for i, ev in enumerate(events):
                    if isinstance(ev, kind):
                        del events[: i + 1]
                        return ev
                data = await asyncio.wait_for(reader.read(65536), 15)
                if not data:
                    raise ConnectionError("server closed the publisher")
                events.extend(conn.receive_data(data))
                flush()

        def flush() -> None:
            out = conn.data_to_send()
            if out:
                writer.write(out)

        async def drain_input() -> None:
            while data := await reader.read(65536):
                conn.receive_data(data)
                flush()

        try:
            conn.connect(self.app, f"rtmp://127.0.0.1:{self.port}/{self.app}")
            flush()
            await until(ConnectResult)
            conn.create_stream()
            flush()
            created = await until(StreamCreated)
            sid = created.stream_id  # type: ignore[attr-defined]
            conn.publish(sid, self.name)
            flush()
            while True:
                st = await until(Status)
                if st.code == "NetStream.Publish.Start":  # type: ignore[attr-defined]
                    break
            pump = asyncio.ensure_future(drain_input())
            conn.send_media(sid, "video", 0, b"\x17\x00\x00\x00\x00" + config)
            flush()
            self.ready.set()
            t0 = time.monotonic()
            n = 0
            while (elapsed := time.monotonic() - t0) < seconds:
                due = n / FPS
                if due > elapsed:
                    await asyncio.sleep(due - elapsed)
                conn.send_media(
                    sid, "video", n * 1000 // FPS, stamped_body(n % FPS == 0, self.frame_bytes)
                )
                flush()
                self.sent += 1
                n += 1
            pump.cancel()
        finally:
            writer.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]
