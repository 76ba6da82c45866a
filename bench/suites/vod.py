"""VoD: a one-hour low-bitrate MP4 through MistInMP4 and MistOutHTTP (DESIGN.md section 5).

* ``index_cold_s`` / ``index_warm_s``: MistInMP4's own figure from its log (indexing
  vs. loading the ``.dtsh`` header); ``ready_cold_s`` / ``ready_warm_s``: process start
  to stream READY on the bus.
* ``ttfb_cold_ms`` / ``ttfb_warm_ms``: input start to the first body byte of
  ``/<s>.mp4`` (no controller: the input is started by hand, the request follows
  READY); ``ttfb_indexed_ms``: a request to the running, indexed input (target 100 ms),
  whose progressive layout MistOutHTTP has cached; ``ttfb_indexed_uncached_ms``: the
  same with a layout built for the request (a ``?stop=`` past the end, new each time).
* ``download_mb_per_s``: the whole progressive MP4, one client.
* ``pages_per_s`` / ``read_packets_per_s``: input side only -- a bus reader walks every
  track from start to end while the input loads its pages on demand.

``--quick`` uses a 10-minute file instead of the hour.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shm import StreamNotFound, StreamReader
from shm.model import StreamState

TARGETS = {"ttfb_indexed_ms": 100.0}
_INDEX_RE = re.compile(r"(?:indexed|index loaded from header) \S+ in ([0-9.]+) s")


def _make_file(folder: Path, minutes: int) -> Path:
    minute, out = folder / "minute.mp4", folder / "long.mp4"
    base = ["ffmpeg", "-v", "error", "-y"]
    subprocess.run(
        [*base, "-f", "lavfi", "-i", "testsrc2=s=160x120:r=10", "-f", "lavfi", "-i",
         "sine=r=8000", "-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-g", "20",
         "-c:a", "aac", "-b:a", "8k", str(minute)],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [*base, "-stream_loop", str(minutes - 1), "-i", str(minute), "-c", "copy",
         "-movflags", "+faststart", str(out)],
        check=True,
    )  # fmt: skip
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Input:
    def __init__(self, stream: str, path: Path) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inputs.mp4", "-s", stream, str(path), "--inputtimeout", "60"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.stream = stream

    def wait_ready(self) -> float:
        deadline = time.monotonic() + 120
        while True:
            try:
                with StreamReader(self.stream) as r:
                    while r.meta.state != StreamState.READY:
                        if self.proc.poll() is not None or time.monotonic() > deadline:
                            raise RuntimeError("MistInMP4 never became ready")
                        r.wait_sync(0.01)
                    return time.perf_counter() - self.started
            except StreamNotFound:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("MistInMP4 never published the stream") from None
                time.sleep(0.005)

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        return err


def _ttfb(port: int, stream: str, query: str = "") -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("GET", f"/{stream}.mp4{query}")
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"/{stream}.mp4 answered {resp.status}")
    resp.read(1)
    took = time.perf_counter() - started
    conn.close()
    return took


def _download(port: int, stream: str) -> tuple[int, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    started = time.perf_counter()
    conn.request("GET", f"/{stream}.mp4")
    resp = conn.getresponse()
    total = 0
    while chunk := resp.read(1 << 20):
        total += len(chunk)
    took = time.perf_counter() - started
    conn.close()
    return total, took


def _read_all(stream: str) -> dict[str, float]:
    pages = packets = 0
    started = time.perf_counter()
    with StreamReader(stream) as r:
        for tid in sorted(r.meta.tracks):
            c = r.track_page(tid).counters()
            pages += c[7] - c[6]
            r.select([tid])
            r.seek(-(1 << 40))
            while not r.at_end():
                if r.read() is None:
                    r.wait_sync(0.5)
                else:
                    packets += 1
    took = time.perf_counter() - started
    return {"pages_per_s": round(pages / took, 1), "read_packets_per_s": round(packets / took),
            "pages": pages}  # fmt: skip


def _index_time(log: str) -> float | None:
    m = _INDEX_RE.search(log)
    return float(m.group(1)) if m else None


def run(quick: bool) -> dict[str, Any]:
    minutes = 10 if quick else 60
    out: dict[str, Any] = {"minutes": minutes}
    with tempfile.TemporaryDirectory(prefix="bench-vod-") as d:
        path = _make_file(Path(d), minutes)
        out["file_mb"] = round(path.stat().st_size / 1e6, 1)
        port = _free_port()
        http_proc = subprocess.Popen(
            [sys.executable, "-m", "outputs.http.server", "-p", str(port), "-i", "127.0.0.1"],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or http_proc.poll() is not None:
                        raise RuntimeError("MistOutHTTP did not start") from None
                    time.sleep(0.05)
            for phase in ("cold", "warm"):
                stream = f"benchvod{os.getpid()}{phase}"
                inp = _Input(stream, path)
                try:
                    ready = inp.wait_ready()
                    first = _ttfb(port, stream)
                    out[f"ready_{phase}_s"] = round(ready, 3)
                    out[f"ttfb_{phase}_ms"] = round((ready + first) * 1000, 1)
                    if phase == "warm":
                        out.update(_read_all(stream))  # most pages are not loaded yet
                        best = min(_ttfb(port, stream) for _ in range(5))
                        out["ttfb_indexed_ms"] = round(best * 1000, 1)
                        past_end = 10 * 3600 * 1000  # ms; every value is a new cache key
                        built = min(_ttfb(port, stream, f"?stop={past_end + i}") for i in range(3))
                        out["ttfb_indexed_uncached_ms"] = round(built * 1000, 1)
                        total, took = _download(port, stream)
                        out["download_mb"] = round(total / 1e6, 1)
                        out["download_mb_per_s"] = round(total / 1e6 / took, 1)
                finally:
                    log = inp.stop()
                index_s = _index_time(log)
                out[f"index_{phase}_s"] = index_s if index_s is not None else 0.0
                out[f"header_used_{phase}"] = "index loaded from header" in log
        finally:
            http_proc.terminate()
            http_proc.wait(timeout=30)
    return out
