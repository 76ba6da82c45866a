"""Ingest: concurrent RTMP publishers at 2 Mbit/s kept without loss (DESIGN.md section 5).

The source is a real 2 Mbit/s H264 + AAC FLV (ffmpeg, CBR with filler) made once; its
tags are chunked before the clock starts and every publisher sends the same bytes paced
by their timestamps (``bench.loadclient.rtmp_publisher``), from several load processes.
One viewer per stream plays it back from the same server, counting bytes.

A publisher is *kept* when it sent everything with no batch leaving more than
``MAX_LAG_S`` late (the server reads fast enough) and its viewer received at least
``KEEP_RATIO`` of the source's byte rate over the measuring window (the server passed
it on). Steps double the publisher count until one is not kept; ``max_kept`` is the
largest step where all were. Servers: our MistOutRTMP (standalone: one MistInBuffer per
stream) and nginx-rtmp (one process), in the same run; the whole stepping is repeated
and medians and the spread reported.
"""

from __future__ import annotations

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
from bench.peers import Nginx, PeerError, cpu_seconds, free_port, nginx_available, wait_port
from bench.report import stepped_summary

BITRATE = 2_000_000
KEEP_RATIO = 0.9
MAX_LAG_S = 1.0
WARMUP_S = 2.5
MIN_WINDOW_S = 4.0
TARGETS = {"ratio_max_kept_mistpy_over_nginx": 1.0}


def make_source(folder: Path, seconds: float) -> Path:
    out = folder / "ingest.flv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "1900k", "-maxrate", "1900k",
         "-bufsize", "1900k", "-x264-params", "nal-hrd=cbr:log-level=none", "-g", "30",
         "-c:a", "aac", "-b:a", "96k", "-f", "flv", str(out)],
        check=True,
    )  # fmt: skip
    return out


def _worker(port: int, names: list[str], source: str, seconds: float, out: Any) -> None:
    """One load process: publishers for ``names`` and one viewer each."""
    import asyncio

    tags = lc.read_flv_tags(Path(source))
    byte_rate = sum(len(t.body) for t in tags) / (tags[-1].timestamp / 1000)

    async def main() -> list[dict[str, Any]]:
        prepared: dict[int, list[tuple[int, bytes]]] = {}
        pubs = [
            asyncio.ensure_future(
                lc.rtmp_publisher("127.0.0.1", port, "live", n, tags, prepared=prepared)
            )
            for n in names
        ]
        await asyncio.sleep(1.0)  # let every publish start before the viewers ask
        views = [
            asyncio.ensure_future(lc.rtmp_viewer("127.0.0.1", port, "live", n, seconds - 1.0))
            for n in names
        ]
        pub_stats = await asyncio.gather(*pubs)
        view_stats = await asyncio.gather(*views)
        res = []
        for p, v in zip(pub_stats, view_stats, strict=True):
            # The window opens WARMUP_S after the viewer asked (the first key may take a
            # GOP to come), later if the first byte came late; it must stay long enough.
            start = max(v.started + WARMUP_S, v.first_byte + 1.0)
            end = v.started + seconds - 1.3
            late = not v.bytes or end - start < MIN_WINDOW_S
            viewed = not late and v.status and v.kept_real_time(start, end, byte_rate, KEEP_RATIO)
            res.append(
                {
                    "published": p.done and not p.error and p.max_lag <= MAX_LAG_S,
                    "viewed": bool(viewed),
                    "late": late,
                    "received_ratio": round(
                        v.bytes_between(start, end) / byte_rate / (end - start), 2
                    )
                    if not late
                    else 0.0,
                    "lag": p.max_lag,
                    "error": p.error or v.error,
                }
            )
        return res

    out.put(lc.run(main()))


def _step(
    port: int, count: int, prefix: str, source: Path, seconds: float, pids: Callable[[], list[int]]
) -> dict[str, Any]:
    workers = max(1, min(os.cpu_count() or 1, 4, count))
    names = [f"{prefix}_{i}" for i in range(count)]
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker, args=(port, names[w::workers], str(source), seconds, q), daemon=True
        )
        for w in range(workers)
    ]
    before = cpu_seconds(pids())
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results: list[dict[str, Any]] = []
    for _ in procs:
        results += q.get(timeout=seconds + 60)
    after = cpu_seconds(pids())
    # processes born during the step (one buffer per new stream) count from zero
    used = sum(t - before.get(pid, 0.0) for pid, t in after.items())
    cpu = 100 * used / (time.monotonic() - t0)
    for p in procs:
        p.join(10)
    kept = sum(1 for r in results if r["published"] and r["viewed"])
    ratios = sorted(r["received_ratio"] for r in results if not r["late"])
    errors = sorted({r["error"] for r in results if r["error"]})[:3]
    return {
        "publishers": count,
        "kept": kept,
        "max_lag_s": round(max(r["lag"] for r in results), 3),
        "server_cpu_percent": round(cpu, 1),
        "server_cpu_percent_per_publisher": round(cpu / count, 2),
        "late_viewers": sum(1 for r in results if r["late"]),
        "not_published": sum(1 for r in results if not r["published"]),
        "min_received_ratio": ratios[0] if ratios else None,
        **({"errors": errors} if errors else {}),
    }


def _stepping(
    port: int,
    tag: str,
    steps: list[int],
    source: Path,
    seconds: float,
    pids: Callable[[], list[int]],
) -> tuple[int, list[dict[str, Any]]]:
    best, done = 0, []
    for count in steps:
        res = _step(port, count, f"{tag}{count}", source, seconds, pids)
        done.append(res)
        if res["kept"] < count:
            break
        best = count
    return best, done


@contextmanager
def mist_rtmp() -> Iterator[tuple[int, Callable[[], list[int]]]]:
    """Our MistOutRTMP, standalone (it starts a MistInBuffer per pushed stream)."""
    port = free_port()
    env = dict(os.environ, UDP_API=f"127.0.0.1:{free_port()}")
    env.pop("MIST_CONTROL", None)
    env.pop("MIST_CHILD", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "outputs.rtmp.server", "-p", str(port), "-i", "127.0.0.1", "-g", "2"],
        env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def pids() -> list[int]:
        try:
            main = psutil.Process(proc.pid)
            return [main.pid, *(c.pid for c in main.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    try:
        wait_port(port, proc, "MistOutRTMP")
        yield port, pids
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(quick: bool) -> dict[str, Any]:
    seconds = 8.0 if quick else 15.0
    reps = 2 if quick else 3
    steps = [4, 8, 16] if quick else [8, 16, 24, 32, 48, 64, 96, 128]
    folder = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    out: dict[str, Any] = {
        "bitrate_mbit": BITRATE / 1e6,
        "seconds": seconds,
        "quick": quick,
        "targets": TARGETS,
    }
    try:
        source = make_source(folder, seconds + 1)
        ours: list[int] = []
        theirs: list[int] = []
        for rep in range(reps):
            with mist_rtmp() as (port, pids):
                best, mine = _stepping(port, f"in{rep}m", steps, source, seconds, pids)
                ours.append(best)
            out["mistpy"] = stepped_summary(ours, mine)
            if nginx_available():
                try:
                    with Nginx() as ngx:
                        best, other = _stepping(
                            ngx.rtmp_port, f"in{rep}n", steps, source, seconds, ngx.pids
                        )
                        theirs.append(best)
                except PeerError as exc:
                    out["nginx_error"] = str(exc)
        if theirs:
            out["nginx_rtmp"] = stepped_summary(theirs, other)
            n = statistics.median(theirs)
            out["ratio_max_kept_mistpy_over_nginx"] = (
                round(statistics.median(ours) / n, 2) if n else None
            )
        out["capped_at_last_step"] = steps[-1]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out
