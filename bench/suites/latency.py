"""Added latency of the live path, packet in (RTMP publish) to packet out, p50/p99.

Paths: our RTMP -> RTMP, RTMP -> HTTP-FLV and RTMP -> LL-HLS (MistOutRTMP ->
MistInBuffer -> bus -> MistOutRTMP / MistOutHTTP), and nginx-rtmp RTMP -> RTMP, all in
the same run (``bench.peers``). The source is a real 1 Mbit/s H264 + AAC FLV published
in real time by its own process, one to each server; every video frame carries its send
time in an SEI (``bench.publisher``: written just before the bytes leave). The viewers
(``bench.loadclient``, one uvloop process) scan what they receive for the stamps without
parsing the stream; a frame's latency is its arrival minus its stamp (the same
monotonic clock). The frames of the GOP a joining viewer gets first are skipped.

LL-HLS is read as a player does: the preload-hinted part is requested at once (the
server holds the reply until the part is complete), then the playlist is reloaded with
``_HLS_msn``/``_HLS_part`` for the next hint; a frame's latency is when the part's
bytes holding it arrived, so it includes waiting for the rest of its part
(``part_target_s``), as a player must.

``mistpy_rtmp_to_bus`` splits our figure: a process reading the bus as the live outputs
do (``StreamReader`` with ``lag_wait_s=LIVE_LAG_WAIT_S``, futex waits) notes when each
stamped video frame becomes readable, so the rest of an output's figure is delivery (bus
wake-up, mux, socket, viewer). ``tail_share_before_bus``: for the frames at or above an
output's p99 in a run, the median share of their latency already spent when they
reached the bus (1.0: the tail is ingest, 0.0: delivery).

Repeated runs (fresh viewers each): medians of the per-run p50/p99 and their spread.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench import loadclient as lc
from bench.peers import MistOutputs, Nginx, PeerError, live_servers
from bench.publisher import PublisherProcess, StampScanner, make_flv
from mistcodecs.hls import parse_media_playlist

TARGETS = {"p50_ms": 10.0, "p99_ms": 50.0}
JOIN_SKIP_S = 1.0  # frames sent before a viewer's first byte + this are the joining GOP
PATHS = (
    "mistpy_rtmp_to_rtmp",
    "mistpy_rtmp_to_http_flv",
    "mistpy_rtmp_to_llhls",
    "mistpy_rtmp_to_bus",
    "nginx_rtmp_to_rtmp",
)


Sample = tuple[int, float]  # (stamp: send time in monotonic ns, latency ms)


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else float("nan")


def _collector(out: list[Sample], since: Callable[[], float]) -> lc.OnData:
    """An ``on_data`` that notes (stamp, arrival - stamp in ms) of every stamp sent after
    ``since()`` (monotonic s)."""
    scanner = StampScanner()

    def on_data(data: bytes, now: float) -> None:
        for ns in scanner.feed(data):
            if ns / 1e9 >= since():
                out.append((ns, now * 1000 - ns / 1e6))

    return on_data


def _bus_main(stream: str, seconds: float, out: Any) -> None:
    """(stamp, arrival - stamp in ms) of the video frames read from the bus for ``seconds``,
    from ``JOIN_SKIP_S`` on (a spawned process: the bus reader's own wake-ups)."""
    import shm
    from shm.reader import LIVE_LAG_WAIT_S

    values: list[Sample] = []
    try:
        reader = shm.StreamReader(stream, lag_wait_s=LIVE_LAG_WAIT_S)
    except shm.StreamNotFound:
        out.put(values)
        return
    reader.seek_live()
    since = time.monotonic() + JOIN_SKIP_S
    end = time.monotonic() + seconds
    scanner = StampScanner()
    while (now := time.monotonic()) < end:
        p = reader.read()
        if p is None:
            reader.wait_sync(min(0.5, end - now))
            continue
        for ns in scanner.feed(bytes(p.data[:128])):  # the SEI leads the frame
            if ns / 1e9 >= since:
                values.append((ns, time.monotonic_ns() / 1e6 - ns / 1e6))
    reader.close()
    out.put(values)


async def _llhls(
    port: int, stream: str, seconds: float, out: list[Sample], refused: list[str]
) -> float:
    """Follow the LL-HLS playlist of the video track; the part target (s). A blocking
    reload the server refuses (503 when it timed out on a starved machine, 400 when the
    follower fell too far behind) is noted in ``refused`` and followed by a plain reload,
    as a player would."""
    base = f"http://127.0.0.1:{port}/cmaf/{stream}/"
    started = time.monotonic()
    collect = _collector(out, lambda: started + JOIN_SKIP_S)
    end = started + seconds
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(base + "index.m3u8") as resp:
            master = await resp.text()
        media = next(ln for ln in master.splitlines() if ln and not ln.startswith("#"))
        folder = base + media.rsplit("/", 1)[0] + "/" if "/" in media else base
        async with http.get(base + media) as resp:
            pl = parse_media_playlist(await resp.text())
        part_target = pl.part_target or 0.0
        while time.monotonic() < end:
            hints = [h for h in pl.preload_hints if h.type == "PART"]
            if hints:
                async with http.get(folder + hints[0].uri) as resp:
                    async for data in resp.content.iter_any():
                        collect(data, time.monotonic())
            msn, part = pl.next_msn, len(pl.open_parts)
            query = f"?_HLS_msn={msn}&_HLS_part={part + (1 if hints else 0)}"
            async with http.get(base + media + query) as resp:
                text = await resp.text()
                if resp.status != 200:
                    refused.append(f"{resp.status} {text.strip()[:80]}")
            if resp.status != 200:
                async with http.get(base + media) as resp:
                    text = await resp.text()
            pl = parse_media_playlist(text)
    return part_target


async def _one_run(
    mist: MistOutputs,
    ngx: Nginx | None,
    names: dict[str, str],
    seconds: float,
    refused: list[str],
) -> tuple[dict[str, list[Sample]], float]:
    lat: dict[str, list[Sample]] = {p: [] for p in PATHS}
    coros: list[Any] = []

    def viewer(path: str, make: Callable[[lc.ViewerStats, lc.OnData], Any]) -> None:
        st = lc.ViewerStats()
        coros.append(make(st, _collector(lat[path], lambda: st.first_byte + JOIN_SKIP_S)))

    ours, theirs = names["mistpy"], names["nginx"]
    viewer("mistpy_rtmp_to_rtmp", lambda st, cb: lc.rtmp_viewer(
        "127.0.0.1", mist.rtmp_port, "live", ours, seconds, st, 60, cb))  # fmt: skip
    viewer("mistpy_rtmp_to_http_flv", lambda st, cb: lc.http_viewer(
        "127.0.0.1", mist.http_port, f"/{ours}.flv", seconds, st, 60, cb))  # fmt: skip
    if ngx is not None:
        viewer("nginx_rtmp_to_rtmp", lambda st, cb: lc.rtmp_viewer(
            "127.0.0.1", ngx.rtmp_port, "live", theirs, seconds, st, 60, cb))  # fmt: skip
    ctx = mp.get_context("spawn")
    bus_q = ctx.Queue()
    bus = ctx.Process(target=_bus_main, args=(ours, seconds, bus_q), daemon=True)
    bus.start()
    try:
        results = await asyncio.gather(
            _llhls(mist.http_port, ours, seconds, lat["mistpy_rtmp_to_llhls"], refused), *coros
        )
        try:
            lat["mistpy_rtmp_to_bus"] = await asyncio.to_thread(bus_q.get, True, seconds + 30)
        except queue.Empty:
            pass
    finally:
        bus.join(5)
        if bus.is_alive():
            bus.kill()
    return lat, float(results[0])


def _summary(samples: list[list[Sample]]) -> dict[str, Any]:
    runs = [[ms for _, ms in r] for r in samples]
    p50 = [percentile(r, 0.5) for r in runs if r]
    p99 = [percentile(r, 0.99) for r in runs if r]
    if not p50:
        return {"samples": 0}
    return {
        "p50_ms": round(statistics.median(p50), 2),
        "p99_ms": round(statistics.median(p99), 2),
        "p50_spread_ms": [round(min(p50), 2), round(max(p50), 2)],
        "p99_spread_ms": [round(min(p99), 2), round(max(p99), 2)],
        "max_ms": round(max(max(r) for r in runs if r), 2),
        "samples": sum(len(r) for r in runs),
    }


def _tail_share_before_bus(out: list[list[Sample]], bus: list[list[Sample]]) -> float | None:
    """Median over the runs' frames at or above the output's p99 of (bus latency /
    output latency) for the same stamp."""
    shares = []
    for frames, at_bus in zip(out, bus, strict=False):
        if not frames:
            continue
        p99 = percentile([ms for _, ms in frames], 0.99)
        reached = dict(reversed(at_bus))  # a stamp's first frame (a batch shares its stamp)
        for ns, ms in frames:
            if ms >= p99 and ns in reached and ms > 0:
                shares.append(min(1.0, max(0.0, reached[ns] / ms)))
    return round(statistics.median(shares), 2) if shares else None


def run(quick: bool) -> dict[str, Any]:
    seconds = 8.0 if quick else 20.0
    reps = 2 if quick else 3
    out: dict[str, Any] = {
        "seconds_per_run": seconds,
        "runs": reps,
        "bitrate_kbps": 1000,
        "targets": TARGETS,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    folder = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    collected: dict[str, list[list[Sample]]] = {p: [] for p in PATHS}
    refused: list[str] = []  # LL-HLS blocking reloads the server answered with an error
    pubs = []
    try:
        source = make_flv(folder / "src.flv", 30, 1000)
        names = {"mistpy": f"lat{os.getpid()}m", "nginx": f"lat{os.getpid()}n"}
        long = reps * (seconds + 5) + 30
        with live_servers() as (mist, ngx):
            try:
                pubs.append(PublisherProcess(mist.rtmp_port, "live", names["mistpy"], source, long, True))  # fmt: skip
                if ngx is not None:
                    pubs.append(PublisherProcess(ngx.rtmp_port, "live", names["nginx"], source, long, True))  # fmt: skip
                time.sleep(3.0)  # READY after a second of media, and a first LL-HLS part
                for _ in range(reps):
                    lat, part_target = lc.run(_one_run(mist, ngx, names, seconds, refused))
                    out["llhls_part_target_s"] = part_target
                    for path, values in lat.items():
                        collected[path].append(values)
            finally:
                for pub in pubs:
                    pub.stop()
    except PeerError as exc:
        out["error"] = str(exc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for path, runs in collected.items():
        if any(runs):
            out[path] = _summary(runs)
    shares = {}
    for path in ("mistpy_rtmp_to_rtmp", "mistpy_rtmp_to_http_flv"):
        share = _tail_share_before_bus(collected[path], collected["mistpy_rtmp_to_bus"])
        if share is not None:
            shares[path.removeprefix("mistpy_rtmp_to_")] = share
    if shares:
        out["tail_share_before_bus"] = shares
    theirs = out.get("nginx_rtmp_to_rtmp", {})
    for path in ("mistpy_rtmp_to_rtmp", "mistpy_rtmp_to_http_flv"):
        for q in ("p50_ms", "p99_ms"):
            mine, other = out.get(path, {}).get(q), theirs.get(q)
            if mine is not None and other:
                kind = path.removeprefix("mistpy_rtmp_to_")
                out[f"ratio_{kind}_{q}_mistpy_over_nginx_rtmp"] = round(mine / other, 2)
    out["llhls_refused_reloads"] = len(refused)
    if refused:
        out["llhls_refused_first"] = refused[0]
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for docs/benchmarks.md (``bench.report``)."""
    rows = []
    for path in PATHS:
        fig = result.get(path)
        if fig and fig.get("samples"):
            lo, hi = fig["p50_spread_ms"]
            rows.append(
                (f"{path} p50 / p99 ms", f"{fig['p50_ms']} / {fig['p99_ms']} (p50 runs {lo}-{hi})")
            )
    rows += [(k, str(v)) for k, v in sorted(result.items()) if k.startswith("ratio_")]
    if "tail_share_before_bus" in result:
        shares = ", ".join(f"{k} {v}" for k, v in sorted(result["tail_share_before_bus"].items()))
        rows.append(("p99 tail: share spent before the bus", shares))
    if "llhls_part_target_s" in result:
        rows.append(("LL-HLS part target s", str(result["llhls_part_target_s"])))
    if "error" in result:
        rows.append(("error", str(result["error"])))
    return rows
