"""Live fan-out: how many viewers of a 1 Mbit/s stream stay at real time.

Servers (``bench.peers``, same run): our MistOutRTMP and MistOutHTTP reading the
MistInBuffer of the pushed stream from the bus, viewed over RTMP and HTTP-FLV; nginx-rtmp
(one process) viewed over RTMP. The source is a real 1 Mbit/s H264 + AAC FLV published
in real time by its own process (``bench.publisher``).

Each step opens N viewers (``bench.loadclient``: set-up parsed, then bytes only counted,
``SO_RCVLOWAT`` batching) spread over load processes of at most ``PER_LOADER`` viewers,
and waits until all play (``setup_s``, at most ``SETUP_MAX_S``; ``not_playing_at_start``
counts those that never did). After a warm-up every viewer's byte count is taken at the
same two instants; a viewer is
*kept at real time* when it received at least ``KEEP_RATIO`` of the source's byte rate
in between. Steps go up until one viewer is not kept; ``max_kept`` is the last step
where all were. ``source_ratio`` is what the publisher itself sent in the window against
real time: below ``KEEP_RATIO`` the machine starved the source, the step gives no verdict
(``source_behind``) and the stepping stops there. Each step reports, over that window, the server's CPU (every process of it, the live
buffer included) and the load processes' own CPU (total, and the busiest one: well
below 100 % means the load client was not the limit). The stepping is repeated:
medians, the spread and ratios against nginx-rtmp.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import loadclient as lc
from bench.peers import PeerError, cpu_seconds, live_servers
from bench.publisher import PublisherProcess, byte_rate, make_flv, read_flv_tags
from bench.report import stepped_summary

KBPS = 1000
KEEP_RATIO = 0.85
WARMUP_S = 3.0
PER_LOADER = 500
SETUP_MAX_S = 60.0  # the longest a step waits for all its viewers to play
RCVLOWAT = 32 * 1024
TARGETS = {"max_kept_http_flv": 2000, "ratio_rtmp_mistpy_over_nginx": 1.0}


def _loader(
    kind: str, port: int, name: str, count: int, start: Any, window: float, ready: Any, out: Any
) -> None:
    """One load process: ``count`` viewers. Once all play (or ``SETUP_MAX_S`` passed) it
    says so on ``ready`` and waits for the parent to set ``start`` (monotonic, the same
    clock in every process); then their bytes over ``window`` and this process's CPU."""
    import asyncio

    async def main() -> None:
        launched = time.monotonic()
        stats = [lc.ViewerStats() for _ in range(count)]
        tasks = []
        for i, st in enumerate(stats):
            if kind == "http":
                coro = lc.http_viewer(
                    "127.0.0.1", port, f"/{name}.flv", 3600, st, 3600, rcvlowat=RCVLOWAT
                )
            else:
                coro = lc.rtmp_viewer(
                    "127.0.0.1", port, "live", name, 3600, st, 3600, rcvlowat=RCVLOWAT
                )
            tasks.append(asyncio.ensure_future(coro))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # a ramp, not a SYN flood
        while time.monotonic() - launched < SETUP_MAX_S:
            if all((s.status and s.bytes) or s.error for s in stats):
                break
            await asyncio.sleep(0.1)
        ready.put(time.monotonic() - launched)
        while not start.value:
            await asyncio.sleep(0.02)
        await asyncio.sleep(max(0.0, start.value - time.monotonic()))
        before = [s.bytes for s in stats]
        late = time.monotonic() - start.value
        not_playing = sum(1 for s in stats if not s.status or s.error)
        cpu0 = time.process_time()
        await asyncio.sleep(max(0.0, start.value + window - time.monotonic()))
        got = [s.bytes - b for s, b in zip(stats, before, strict=True)]
        cpu = time.process_time() - cpu0
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        errors = sorted({s.error for s in stats if s.error})[:2]
        out.put(
            {"got": got, "late_s": late, "errors": errors, "cpu": cpu, "not_playing": not_playing}
        )

    lc.run(main())


def _step(
    kind: str,
    port: int,
    name: str,
    viewers: int,
    window: float,
    rate: float,
    pids: list[int],
    pub: PublisherProcess,
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready, q = ctx.Queue(), ctx.Queue()
    start = ctx.Value("d", 0.0)
    loaders = -(-viewers // PER_LOADER)
    shares = [viewers // loaders + (1 if i < viewers % loaders else 0) for i in range(loaders)]
    procs = [
        ctx.Process(
            target=_loader, args=(kind, port, name, n, start, window, ready, q), daemon=True
        )
        for n in shares
    ]
    for proc in procs:
        proc.start()
    setup = max(ready.get(timeout=SETUP_MAX_S + 60) for _ in procs)
    start_at = time.monotonic() + WARMUP_S  # every viewer plays: the warm-up, then measure
    start.value = start_at
    time.sleep(max(0.0, start_at - time.monotonic()))
    c0, s0 = cpu_seconds(pids), pub.sent_bytes
    time.sleep(max(0.0, start_at + window - time.monotonic()))
    c1, s1 = cpu_seconds(pids), pub.sent_bytes
    reports = [q.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(10)
    server = sum(t - c0.get(pid, t) for pid, t in c1.items()) / window * 100
    got = [g for r in reports for g in r["got"]]
    need = rate * window * KEEP_RATIO
    errors = sorted({e for r in reports for e in r["errors"]})[:3]
    return {
        "viewers": viewers,
        "kept": sum(1 for g in got if g >= need),
        "min_received_ratio": round(min(got) / (rate * window), 2) if got else 0.0,
        "source_ratio": round((s1 - s0) / (rate * window), 2),
        "server_cpu_percent": round(server, 1),
        "load_processes": loaders,
        "load_cpu_percent": round(sum(r["cpu"] for r in reports) / window * 100, 1),
        "load_cpu_busiest_percent": round(max(r["cpu"] for r in reports) / window * 100, 1),
        "load_late_s": round(max(r["late_s"] for r in reports), 2),
        "setup_s": round(setup, 1),
        "not_playing_at_start": sum(r["not_playing"] for r in reports),
        **({"errors": errors} if errors else {}),
    }


def _stepping(
    kind: str,
    port: int,
    pub_port: int,
    name: str,
    source: Path,
    steps: list[int],
    window: float,
    pids: Callable[[], list[int]],
) -> tuple[int, list[dict[str, Any]]]:
    rate = byte_rate(read_flv_tags(source))
    long = len(steps) * (window + WARMUP_S + SETUP_MAX_S + 20) + 30
    pub = PublisherProcess(pub_port, "live", name, source, long)
    try:
        time.sleep(2.0)  # the buffer turns READY after a second of media
        best, done = 0, []
        for n in steps:
            res = _step(kind, port, name, n, window, rate, pids(), pub)
            done.append(res)
            if res["source_ratio"] < KEEP_RATIO:
                res["source_behind"] = True  # the machine starved the publisher: no verdict
                break
            if res["kept"] < n:
                break
            best = n
        return best, done
    finally:
        pub.stop()


def run(quick: bool) -> dict[str, Any]:
    steps = [50, 200] if quick else [250, 500, 1000, 2000, 3000]
    window = 4.0 if quick else 6.0
    reps = 2
    out: dict[str, Any] = {
        "bitrate_kbps": KBPS,
        "keep_ratio": KEEP_RATIO,
        "window_s": window,
        "steps": steps,
        "quick": quick,
        "targets": TARGETS,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    folder = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    runs: dict[str, list[int]] = {}
    last: dict[str, list[dict[str, Any]]] = {}
    try:
        source = make_flv(folder / "src.flv", 30, KBPS)
        with live_servers() as (mist, ngx):
            targets = [
                ("mistpy_rtmp", "rtmp", mist.rtmp_port, mist.rtmp_port, mist.pids),
                ("mistpy_http_flv", "http", mist.http_port, mist.rtmp_port, mist.pids),
            ]
            if ngx is not None:
                targets.append(("nginx_rtmp", "rtmp", ngx.rtmp_port, ngx.rtmp_port, ngx.pids))
            for rep in range(reps):
                for label, kind, port, pub_port, pids in targets:
                    name = f"fan{os.getpid()}r{rep}{label.replace('_', '')}"
                    best, done = _stepping(kind, port, pub_port, name, source, steps, window, pids)
                    runs.setdefault(label, []).append(best)
                    last[label] = done
    except PeerError as exc:
        out["error"] = str(exc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for label, values in runs.items():
        out[label] = stepped_summary(values, last[label])
    theirs = statistics.median(runs["nginx_rtmp"]) if runs.get("nginx_rtmp") else 0
    for label in ("mistpy_rtmp", "mistpy_http_flv"):
        if theirs and runs.get(label):
            kind = label.removeprefix("mistpy_")
            ratio = statistics.median(runs[label]) / theirs
            out[f"ratio_{kind}_mistpy_over_nginx"] = round(ratio, 2)
    out["capped_at_last_step"] = steps[-1]
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for docs/benchmarks.md (``bench.report``)."""
    rows = []
    for label in ("mistpy_http_flv", "mistpy_rtmp", "nginx_rtmp"):
        fig = result.get(label)
        if not fig:
            continue
        text = f"{fig['max_kept_median']:,.0f} (runs {', '.join(map(str, fig['max_kept_runs']))})"
        if fig["last_run_steps"]:
            top = fig["last_run_steps"][-1]
            text += (
                f"; at {top['viewers']:,}: {top['kept']:,} kept, server CPU "
                f"{top['server_cpu_percent']} %, busiest load process "
                f"{top['load_cpu_busiest_percent']} % ({top['load_processes']} processes)"
            )
            if top.get("source_behind"):
                text += f"; the publisher itself sent {top['source_ratio']:.0%} of real time"
        rows.append((f"viewers kept, {label}", text))
    for key in ("ratio_rtmp_mistpy_over_nginx", "ratio_http_flv_mistpy_over_nginx"):
        if key in result:
            rows.append((key, str(result[key])))
    if "error" in result:
        rows.append(("error", str(result["error"])))
    rows.append(("steps", f"{result['steps']} (stop at the first not all kept)"))
    return rows
