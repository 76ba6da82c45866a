"""Memory: RSS per connected viewer and per live stream (DESIGN.md section 5: <= 64 KiB
per idle connected viewer).

* ``per_viewer_kib``: a low-bitrate (about 250 kbit/s) live stream is published; N
  viewers connect (HTTP-FLV to MistOutHTTP, RTMP to MistOutRTMP and to nginx-rtmp) and
  keep playing it while the server's RSS is sampled; the growth divided by N. "Idle"
  here means a viewer that only receives (no seeking, no requests): the steady state of
  a live audience.
* ``per_stream_kib``: K more streams are published (no viewers); the growth of the
  summed PSS of the server processes (ours: MistOutRTMP plus a MistInBuffer per
  stream, whose shared pages PSS splits fairly; nginx: its one process) divided by K.

Each figure is the median of repeated runs, with the spread.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from bench import loadclient as lc
from bench.peers import Nginx, PeerError, free_port, nginx_available, wait_port

TARGETS = {"per_viewer_kib": 64}
SETTLE_S = 2.0


def make_source(folder: Path, seconds: float) -> Path:
    out = folder / "memory.flv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "200k", "-g", "25",
         "-x264-params", "log-level=none", "-c:a", "aac", "-b:a", "48k", "-f", "flv", str(out)],
        check=True,
    )  # fmt: skip
    return out


def _rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _pss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def _load(kind: str, port: int, stream: str, count: int, hold: float, q: Any) -> None:
    """Load process: ``count`` viewers; reports how many play, then holds them."""

    async def main() -> None:
        stats = [lc.ViewerStats() for _ in range(count)]
        if kind == "http":
            coros = [lc.http_viewer("127.0.0.1", port, f"/{stream}.flv", hold, s) for s in stats]
        else:
            coros = [lc.rtmp_viewer("127.0.0.1", port, "live", stream, hold, s) for s in stats]
        tasks = [asyncio.ensure_future(c) for c in coros]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(1 for s in stats if s.bytes) < count:
            await asyncio.sleep(0.2)
        q.put(sum(1 for s in stats if s.bytes))
        await asyncio.gather(*tasks)

    lc.run(main())


def _publish(port: int, names: list[str], source: Path, q: Any) -> None:
    tags = lc.read_flv_tags(source)

    async def main() -> None:
        prepared: dict[int, list[tuple[int, bytes]]] = {}
        tasks = [
            asyncio.ensure_future(
                lc.rtmp_publisher("127.0.0.1", port, "live", n, tags, prepared=prepared)
            )
            for n in names
        ]
        await asyncio.sleep(1.0)
        q.put(True)
        await asyncio.gather(*tasks)

    lc.run(main())


class _Publishers:
    """Publishers of ``names`` in their own process for the source's whole length."""

    def __init__(self, port: int, names: list[str], source: Path) -> None:
        ctx = mp.get_context("fork")
        self.q = ctx.Queue()
        self.proc = ctx.Process(target=_publish, args=(port, names, source, self.q), daemon=True)
        self.proc.start()
        self.q.get(timeout=30)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.join(10)


def per_viewer(
    kind: str,
    port: int,
    view_port: int,
    pids: Callable[[], list[int]],
    source: Path,
    count: int,
    tag: str,
) -> float:
    """KiB of RSS growth per viewer of the server(s) in ``pids``."""
    stream = f"mem{tag}"
    pub = _Publishers(port, [stream], source)
    try:
        time.sleep(SETTLE_S)
        before = _rss(pids())
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        load = ctx.Process(
            target=_load,
            args=(kind, view_port, stream, count, 3 * SETTLE_S + 2 + count / 100, q),
            daemon=True,
        )
        load.start()
        playing = q.get(timeout=60)
        time.sleep(SETTLE_S)
        after = _rss(pids())
        load.join(40)
        if playing < count:
            raise RuntimeError(f"only {playing} of {count} {kind} viewers played")
        return (after - before) / count / 1024
    finally:
        pub.stop()


def per_stream(
    port: int, pids: Callable[[], list[int]], source: Path, count: int, tag: str
) -> float:
    base = _Publishers(port, [f"mem{tag}base"], source)  # warm the server up with one stream
    try:
        time.sleep(SETTLE_S)
        before = _pss(pids())
        more = _Publishers(port, [f"mem{tag}s{i}" for i in range(count)], source)
        try:
            time.sleep(SETTLE_S + 1)
            after = _pss(pids())
        finally:
            more.stop()
        return (after - before) / count / 1024
    finally:
        base.stop()


def _tree(pid: int) -> Callable[[], list[int]]:
    def pids() -> list[int]:
        try:
            main = psutil.Process(pid)
            return [main.pid, *(c.pid for c in main.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    return pids


@contextmanager
def mist_outputs() -> Iterator[tuple[int, int, int, int]]:
    """Standalone MistOutRTMP and MistOutHTTP: (rtmp port, rtmp pid, http port, http pid)."""
    env = dict(os.environ, UDP_API=f"127.0.0.1:{free_port()}")
    env.pop("MIST_CONTROL", None)
    env.pop("MIST_CHILD", None)
    procs: list[subprocess.Popen[bytes]] = []
    ports = []
    try:
        for module in ("outputs.rtmp.server", "outputs.http.server"):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", module, "-p", str(port), "-i", "127.0.0.1", "-g", "2"],
                env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(proc)
            wait_port(port, proc, module)
            ports.append(port)
        yield ports[0], procs[0].pid, ports[1], procs[1].pid
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _med(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 1),
        "spread": [round(min(values), 1), round(max(values), 1)],
    }


def run(quick: bool) -> dict[str, Any]:
    viewers = 100 if quick else 1000
    streams = 4 if quick else 20
    reps = 2 if quick else 3
    folder = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    res: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        res.setdefault(key, []).append(value)

    try:
        source = make_source(folder, 30)
        for rep in range(reps):
            with mist_outputs() as (rtmp, rtmp_pid, http, http_pid):
                add(
                    "mistpy_http_flv_per_viewer_kib",
                    per_viewer("http", rtmp, http, lambda: [http_pid], source, viewers, f"{rep}h"),
                )
                add(
                    "mistpy_rtmp_per_viewer_kib",
                    per_viewer("rtmp", rtmp, rtmp, lambda: [rtmp_pid], source, viewers, f"{rep}r"),
                )
                add(
                    "mistpy_per_stream_kib",
                    per_stream(rtmp, _tree(rtmp_pid), source, streams, f"{rep}"),
                )
            if nginx_available():
                try:
                    with Nginx() as ngx:
                        add(
                            "nginx_rtmp_per_viewer_kib",
                            per_viewer(
                                "rtmp",
                                ngx.rtmp_port,
                                ngx.rtmp_port,
                                ngx.pids,
                                source,
                                viewers,
                                f"{rep}n",
                            ),
                        )
                        add(
                            "nginx_per_stream_kib",
                            per_stream(ngx.rtmp_port, ngx.pids, source, streams, f"{rep}n"),
                        )
                except PeerError:
                    pass
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out: dict[str, Any] = {
        "viewers": viewers,
        "streams": streams,
        "quick": quick,
        "targets": TARGETS,
    }
    out.update({k: _med(v) for k, v in res.items()})
    for mine, theirs in (
        ("mistpy_rtmp_per_viewer_kib", "nginx_rtmp_per_viewer_kib"),
        ("mistpy_per_stream_kib", "nginx_per_stream_kib"),
    ):
        if mine in res and theirs in res and statistics.median(res[theirs]) > 0:
            out[f"ratio_{mine}_over_nginx"] = round(
                statistics.median(res[mine]) / statistics.median(res[theirs]), 2
            )
    return out
