"""Added latency of the live path, packet in (RTMP publish) to packet out, p50/p99.

Paths: our RTMP -> RTMP and RTMP -> HTTP-FLV (MistOutRTMP -> MistInBuffer -> bus ->
MistOutRTMP / MistOutHTTP), and nginx-rtmp RTMP -> RTMP in the same run. Each frame
of the synthetic 1 Mbit/s stream carries its send time (``_live.Publisher``); viewers
on the same machine note when it arrives. Publisher and viewers share one uvloop, so
the figures include that loop's own scheduling, equally for every server.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.suites._live import (
    Publisher,
    avc_config,
    percentile,
    read_stamps,
    servers,
)
from mistcodecs.rtmp import ConnectResult, MediaMessage, RtmpClientConnection, StreamCreated

TARGETS = {"p50_ms": 10.0, "p99_ms": 50.0}


async def _rtmp_viewer(port: int, app: str, name: str, seconds: float, out: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = RtmpClientConnection(plain_handshake=True)
    conn.connect(app, f"rtmp://127.0.0.1:{port}/{app}")
    writer.write(conn.data_to_send())
    sid = 0
    end = time.monotonic() + seconds
    try:
        while (left := end - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(reader.read(262144), left)
            except TimeoutError:
                break
            if not data:
                break
            now = time.monotonic_ns()
            for ev in conn.receive_data(data):
                if isinstance(ev, ConnectResult):
                    conn.create_stream()
                elif isinstance(ev, StreamCreated):
                    sid = ev.stream_id
                    conn.play(sid, name)
                elif isinstance(ev, MediaMessage) and ev.kind == "video":
                    for stamp in read_stamps(bytearray(ev.payload)):
                        out.append((now - stamp) / 1e6)
            pending = conn.data_to_send()
            if pending:
                writer.write(pending)
    finally:
        writer.close()


async def _http_viewer(port: int, name: str, seconds: float, out: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /{name}.flv HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    buf = bytearray()
    end = time.monotonic() + seconds
    try:
        while (left := end - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(reader.read(262144), left)
            except TimeoutError:
                break
            if not data:
                break
            now = time.monotonic_ns()
            buf += data
            out.extend((now - s) / 1e6 for s in read_stamps(buf))
    finally:
        writer.close()


def _summary(lat: list[float], warmup: int) -> dict[str, Any]:
    lat = lat[warmup:]  # the GOP log a joining viewer gets first is old by design
    return {
        "p50_ms": round(percentile(lat, 0.5), 3),
        "p99_ms": round(percentile(lat, 0.99), 3),
        "max_ms": round(max(lat, default=float("nan")), 3),
        "samples": len(lat),
    }


async def _measure(port: int, app: str, name: str, seconds: float, http: int = 0) -> dict:
    config = avc_config()
    pub = Publisher(port, app, name)
    task = asyncio.ensure_future(pub.run(seconds + 4, config))
    await asyncio.wait_for(pub.ready.wait(), 20)
    await asyncio.sleep(1.5)  # the buffer turns READY after a second of media
    rtmp_lat: list[float] = []
    http_lat: list[float] = []
    viewers = [_rtmp_viewer(port, app, name, seconds, rtmp_lat)]
    if http:
        viewers.append(_http_viewer(http, name, seconds, http_lat))
    await asyncio.gather(*viewers)
    await task
    warm = 2 * 25  # skip the first two seconds (joining GOP)
    result = {"rtmp": _summary(rtmp_lat, warm)}
    if http:
        result["http_flv"] = _summary(http_lat, warm)
    return result


def run(quick: bool) -> dict[str, Any]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    seconds = 8.0 if quick else 30.0
    out: dict[str, Any] = {"seconds": seconds, "bitrate_kbps": 1000, "targets": TARGETS}
    with servers() as srv:
        name = f"benchlat{os.getpid()}"
        ours = asyncio.run(_measure(srv.rtmp, "live", name, seconds, srv.http))
        out["mistpy_rtmp_to_rtmp"] = ours["rtmp"]
        out["mistpy_rtmp_to_http_flv"] = ours["http_flv"]
        if srv.nginx:
            theirs = asyncio.run(_measure(srv.nginx, "live", name, seconds))
            out["nginx_rtmp_to_rtmp"] = theirs["rtmp"]
            for q in ("p50_ms", "p99_ms"):
                mine, other = ours["rtmp"][q], theirs["rtmp"][q]
                out[f"ratio_rtmp_{q}_mistpy_over_nginx"] = round(mine / other, 2) if other else None
    return out
