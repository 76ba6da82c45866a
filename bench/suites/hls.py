"""Segmented delivery (HLS/CMAF in MistOutHTTP): segment throughput beside nginx, and how
soon new media becomes available in each playlist kind.

* ``mistpy_segments_per_s`` / ``nginx_segments_per_s`` / ``ratio_mistpy_over_nginx``:
  keep-alive clients (one uvloop load client) GET the newest live TS segments of one
  stream round-robin; nginx serves byte-identical copies of the same segments as static
  files in the same run. ``*_p50_ms``/``*_p99_ms`` are per-request latencies.
* ``available_ms_hls`` / ``available_ms_llhls`` / ``available_ms_dash``: from the
  publisher appending the frame that ends a segment (or an LL-HLS part) to the moment
  a client sees it listed (HLS and DASH: polling every 20 ms; LL-HLS: blocking reload).
  The source is timestamped by the publisher (wall time of each appended frame).
* ``player_latency_s_*``: that plus the hold-back the manifests tell players to keep
  (HOLD-BACK, PART-HOLD-BACK, suggestedPresentationDelay) -- what a conforming player's
  distance behind live is; for the low-latency (chunked) MPD, its ServiceDescription
  latency target, which dash.js steers to.

``--quick``: fewer clients, shorter windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import av

from bench.loadclient import GetStats, http_get_loop
from bench.peers import Nginx, PeerError, free_port, wait_port
from mistcodecs.dash import expand_timeline, parse_mpd
from mistcodecs.hls import parse_media_playlist
from shm import StreamWriter
from shm.model import StreamState, TrackMeta

FPS = 25


class _Publisher:
    """A 1 Mbit/s H264 + AAC clip published live in real time, looped with continuing
    times; ``stamps`` maps each frame's dts to the monotonic time it was appended."""

    def __init__(self, stream: str, clip: Path) -> None:
        self.writer = StreamWriter(stream, live=True)
        self.frames: list[tuple[int, int, int, bool, bytes]] = []
        with av.open(str(clip)) as c:
            vs, aus = c.streams.video[0], c.streams.audio[0]
            self.writer.add_track(TrackMeta(1, "video", "H264", init=bytes(vs.codec_context.extradata or b""),
                                            width=vs.codec_context.width, height=vs.codec_context.height,
                                            fpks=FPS * 1000))  # fmt: skip
            self.writer.add_track(TrackMeta(2, "audio", "AAC", init=bytes(aus.codec_context.extradata or b""),
                                            rate=aus.codec_context.sample_rate, channels=2, size=16))  # fmt: skip
            for p in c.demux(vs, aus):
                if p.size and p.dts is not None and p.pts is not None:
                    tb = p.time_base
                    dts, pts = round(p.dts * tb * 1000), round(p.pts * tb * 1000)
                    tid = 1 if p.stream is vs else 2
                    self.frames.append(
                        (tid, dts, pts - dts, bool(p.is_keyframe) or tid == 2, bytes(p))
                    )
        base = min(f[1] for f in self.frames)
        self.frames = sorted(((t, d - base, o, k, b) for t, d, o, k, b in self.frames),
                             key=lambda f: (f[1], f[0]))  # fmt: skip
        self.stamps: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        video = [f for f in self.frames if f[0] == 1]
        audio = [f for f in self.frames if f[0] == 2]
        span = len(video) * 1000 // FPS
        t0 = time.monotonic()
        vi = ai = 0
        while not self.stop.is_set():
            v = video[vi % len(video)]
            vdts = v[1] + (vi // len(video)) * span
            adts = ai * 1024 * 1000 // 48000
            tid, dts, off, key, data = (1, vdts, v[2], v[3], v[4]) if vdts <= adts else (
                2, adts, 0, True, audio[ai % len(audio)][4])  # fmt: skip
            if tid == 1:
                vi += 1
            else:
                ai += 1
            delay = t0 + dts / 1000 - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return
            self.writer.append(tid, dts, off, key, data)
            self.stamps[dts] = time.monotonic()

    def __enter__(self) -> _Publisher:
        self.writer.set_state(StreamState.READY)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.writer.close()


def _make_clip(folder: Path) -> Path:
    out = folder / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=640x360:r={FPS}",
         "-f", "lavfi", "-i", "sine=r=48000", "-t", "8", "-c:v", "libx264", "-preset", "ultrafast",
         "-b:v", "1M", "-g", str(FPS), "-keyint_min", str(FPS), "-c:a", "aac", "-b:a", "64k",
         "-ac", "2", str(out)],
        check=True,
    )  # fmt: skip
    return out


def _get(port: int, path: str, timeout: float = 20) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        body: bytes = r.read()
        return body


async def _load(port: int, paths: list[str], clients: int, seconds: float) -> GetStats:
    total = GetStats()
    runs = await asyncio.gather(
        *(http_get_loop("127.0.0.1", port, paths, seconds) for _ in range(clients))
    )
    for s in runs:
        total.requests += s.requests
        total.bytes += s.bytes
        total.errors += s.errors
        total.latencies += s.latencies
    return total


def _figures(label: str, stats: GetStats, seconds: float) -> dict[str, Any]:
    lat = sorted(stats.latencies) or [0.0]
    return {
        f"{label}_segments_per_s": round(stats.requests / seconds),
        f"{label}_mbit_per_s": round(stats.bytes * 8 / seconds / 1e6),
        f"{label}_p50_ms": round(lat[len(lat) // 2] * 1000, 2),
        f"{label}_p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2),
        f"{label}_errors": stats.errors,
    }


def _stamp(pub: _Publisher, ms: int) -> float | None:
    """When the first frame at or after ``ms`` was appended."""
    later = [d for d in pub.stamps if d >= ms]
    return pub.stamps[min(later)] if later else None


def _availability(port: int, stream: str, pub: _Publisher, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hls_path, mpd_path = f"/hls/{stream}/1_2/index.m3u8", f"/cmaf/{stream}/index.mpd"

    def hls_ends() -> tuple[set[int], int]:
        pl = parse_media_playlist(_get(port, hls_path).decode())
        return {int(s.uri[:-3].split("_")[1]) for s in pl.segments}, pl.target_duration or 0

    low_latency_dash = False

    def dash_end() -> tuple[int, float]:
        """End of the newest complete segment, and the delay players are told to keep.
        A low-latency MPD lists the segment in progress last (sent chunked): players
        aim at its ServiceDescription latency, not at complete segments plus a delay."""
        nonlocal low_latency_dash
        mpd = parse_mpd(_get(port, mpd_path))
        segments = expand_timeline(mpd.adaptation_sets[0].representations[0].timeline)
        if mpd.availability_time_offset is not None and mpd.latency is not None:
            low_latency_dash = True
            start, _ = segments[-1]  # the open one starts where the last complete one ends
            return start, mpd.latency.target / 1000
        start, duration = segments[-1]
        return start + duration, mpd.suggested_presentation_delay or 0.0

    seen_hls, target = hls_ends()
    seen_dash, delay = dash_end()
    hls_lat: list[float] = []
    dash_lat: list[float] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:  # HLS TS and DASH: poll the manifests
        ends, target = hls_ends()
        for end in ends - seen_hls:
            if (stamp := _stamp(pub, end)) is not None:
                hls_lat.append(time.monotonic() - stamp)
        seen_hls |= ends
        end, delay = dash_end()
        if end != seen_dash and (stamp := _stamp(pub, end)) is not None:
            dash_lat.append(time.monotonic() - stamp)
        seen_dash = end
        time.sleep(0.02)
    ll_lat: list[float] = []
    pl = parse_media_playlist(_get(port, f"/cmaf/{stream}/1/index.m3u8").decode())
    until = time.monotonic() + seconds
    while time.monotonic() < until:  # LL-HLS: block for the next part
        msn, part = pl.next_msn, len(pl.open_parts)
        pl = parse_media_playlist(
            _get(port, f"/cmaf/{stream}/1/index.m3u8?_HLS_msn={msn}&_HLS_part={part}").decode()
        )
        parts = pl.open_parts if pl.next_msn == msn else pl.segments[msn - pl.first_msn].parts
        if len(parts) > part:
            start = int(parts[part].uri.split("_")[1].split(".")[0])
            end = start + round(sum(p.duration for p in parts[: part + 1]) * 1000)
            stamp = _stamp(pub, end)
            if stamp is not None:
                ll_lat.append(time.monotonic() - stamp)
    part_hold = pl.server_control.part_hold_back if pl.server_control else 0.0
    for label, values in (("hls", hls_lat), ("llhls", ll_lat), ("dash", dash_lat)):
        out[f"available_ms_{label}"] = round(statistics.median(values) * 1000) if values else None
    if hls_lat:
        out["player_latency_s_hls"] = round(statistics.median(hls_lat) + 3 * target, 2)
    if ll_lat:
        out["player_latency_s_llhls"] = round(statistics.median(ll_lat) + (part_hold or 0), 2)
    if dash_lat:
        behind = delay if low_latency_dash else statistics.median(dash_lat) + delay
        out["player_latency_s_dash"] = round(behind, 2)
    return out


def run(quick: bool) -> dict[str, Any]:
    clients = 20 if quick else 100
    window = 3.0 if quick else 10.0
    out: dict[str, Any] = {"clients": clients, "window_s": window}
    stream = f"benchhls{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="bench-hls-") as tmp:
        folder = Path(tmp)
        clip = _make_clip(folder)
        port = free_port()
        env = dict(os.environ, MIST_CONTROL="none")
        server = subprocess.Popen(
            [sys.executable, "-m", "outputs.http.server", "-p", str(port), "-i", "127.0.0.1"],
            env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_port(port, server, "MistOutHTTP")
            with _Publisher(stream, clip) as pub:
                media = f"/hls/{stream}/1_2/index.m3u8"
                deadline = time.monotonic() + 30
                while True:
                    pl = parse_media_playlist(_get(port, media).decode())
                    if len(pl.segments) >= 3 or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                paths = [f"/hls/{stream}/1_2/{s.uri}" for s in pl.segments[-3:]]
                root = folder / "www"
                for p in paths:  # the same bytes as static files for nginx
                    (root / p.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                    (root / p.lstrip("/")).write_bytes(_get(port, p))
                out["segment_kb"] = round(
                    sum((root / p.lstrip("/")).stat().st_size for p in paths) / len(paths) / 1024
                )
                try:
                    import uvloop

                    runner: Any = uvloop.run
                except ImportError:  # pragma: no cover
                    runner = asyncio.run
                out.update(_figures("mistpy", runner(_load(port, paths, clients, window)), window))
                with contextlib.suppress(PeerError), Nginx(rtmp=False, http_root=root) as ngx:
                    stats = runner(_load(ngx.http_port, paths, clients, window))
                    out.update(_figures("nginx", stats, window))
                if out.get("nginx_segments_per_s"):
                    out["ratio_mistpy_over_nginx"] = round(
                        out["mistpy_segments_per_s"] / out["nginx_segments_per_s"], 3
                    )
                out.update(_availability(port, stream, pub, 6.0 if quick else 20.0))
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return out
