"""Live fan-out: how many viewers of a 1 Mbit/s stream stay at real time.

For each server (our MistOutRTMP and MistOutHTTP reading MistInBuffer's bus; nginx-rtmp
beside them in the same run) and each step of viewer counts, a load process (uvloop)
opens the viewers and only counts bytes (no parsing once a viewer plays; RTMP viewers
still acknowledge the window as RTMP requires). After a warm-up, a viewer is *kept at
real time* when it received at least ``KEEP_RATIO`` of the stream's byte rate during
the measuring window. The publisher runs in its own process. Server CPU (including
the live buffer process) is reported per step.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import socket
import time
from typing import Any

import psutil

from bench.suites._live import Publisher, avc_config, servers

BITRATE = 1_000_000
KEEP_RATIO = 0.85
WARMUP_S = 3.0
RCVLOWAT = 32 * 1024
VIEWERS_PER_LOADER = 500


def _publisher(port: int, name: str, seconds: float, ready: Any) -> None:
    import uvloop

    async def main() -> None:
        pub = Publisher(port, "live", name, BITRATE)
        task = asyncio.ensure_future(pub.run(seconds, avc_config()))
        await pub.ready.wait()
        ready.put(True)
        await task

    uvloop.run(main())


class _Viewer(asyncio.Protocol):
    """Counts bytes; RTMP viewers use the sans-IO client only until play is sent."""

    def __init__(self, kind: str, name: str, port: int) -> None:
        self.kind, self.name, self.port = kind, name, port
        self.bytes = 0
        self.window_start = 0
        self.transport: asyncio.Transport | None = None
        self.conn: Any = None
        self.raw = False
        self.acked = 0
        self.ack_every = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = tr
        if self.kind == "http":
            self._go_raw()
            tr.write(f"GET /{self.name}.flv HTTP/1.1\r\nHost: b\r\n\r\n".encode())
            return
        from mistcodecs.rtmp import RtmpClientConnection

        self.conn = RtmpClientConnection(plain_handshake=True)
        self.conn.connect("live", f"rtmp://127.0.0.1:{self.port}/live")
        tr.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        self.bytes += len(data)
        if self.raw:
            if self.ack_every and self.bytes - self.acked >= self.ack_every:
                self._ack()
            return
        from mistcodecs.rtmp import ConnectResult, StreamCreated

        for ev in self.conn.receive_data(data):
            if isinstance(ev, ConnectResult):
                self.conn.create_stream()
            elif isinstance(ev, StreamCreated):
                self.conn.play(ev.stream_id, self.name)
                self._go_raw()  # from here on: count bytes only
                self.ack_every = self.conn.peer_window
                self.acked = self.conn.reader.bytes_received
        out = self.conn.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def _go_raw(self) -> None:
        """Count bytes only, and let the kernel wake us per RCVLOWAT bytes rather than
        per server write: the load client must cost far less than the server."""
        self.raw = True
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, RCVLOWAT)

    def _ack(self) -> None:
        from mistcodecs.rtmp import chunks, messages

        self.acked = self.bytes
        self.conn.send_control(chunks.ACKNOWLEDGEMENT, messages.u32(self.bytes & 0xFFFFFFFF))
        assert self.transport is not None
        self.transport.write(self.conn.data_to_send())


def _load(kind: str, port: int, name: str, viewers: int, window: float, out: Any) -> None:
    import uvloop

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        protos: list[_Viewer] = []
        for i in range(viewers):
            try:
                _, proto = await loop.create_connection(
                    lambda: _Viewer(kind, name, port), "127.0.0.1", port
                )
                protos.append(proto)
            except OSError:
                pass
            if i % 50 == 49:
                await asyncio.sleep(0.05)
        await asyncio.sleep(WARMUP_S + viewers / 500)  # handshakes of big steps take a while
        start = [p.bytes for p in protos]
        await asyncio.sleep(window)
        got = [p.bytes - s for p, s in zip(protos, start, strict=True)]
        for p in protos:
            if p.transport is not None:
                p.transport.close()
        return got

    out.put(uvloop.run(main()))


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _step(
    ctx: Any, kind: str, port: int, name: str, viewers: int, window: float, pids: list[int]
) -> dict[str, Any]:
    q = ctx.Queue()
    loaders = max(1, min(4, -(-viewers // VIEWERS_PER_LOADER)))
    shares = [viewers // loaders + (1 if i < viewers % loaders else 0) for i in range(loaders)]
    procs = [
        ctx.Process(target=_load, args=(kind, port, name, n, window, q), daemon=True)
        for n in shares
    ]
    c0, t0 = _cpu(pids), time.monotonic()
    for proc in procs:
        proc.start()
    got: list[int] = []
    for _ in procs:
        got += q.get(timeout=WARMUP_S + viewers / 500 + window + 120)
    for proc in procs:
        proc.join(10)
    cpu = (_cpu(pids) - c0) / (time.monotonic() - t0) * 100
    need = BITRATE / 8 * window * KEEP_RATIO
    return {
        "viewers": viewers,
        "connected": len(got),
        "kept_real_time": sum(1 for g in got if g >= need),
        "server_cpu_percent": round(cpu, 1),
        "load_processes": loaders,
    }


def run(quick: bool) -> dict[str, Any]:
    steps = [50, 200] if quick else [250, 500, 1000, 2000, 3000]
    window = 4.0 if quick else 6.0
    ctx = mp.get_context("spawn")
    out: dict[str, Any] = {"bitrate_kbps": BITRATE // 1000, "keep_ratio": KEEP_RATIO}
    per_step = (WARMUP_S + window + 3) * len(steps)
    with servers() as srv:
        targets = [("mistpy_rtmp", "rtmp", srv.rtmp, [srv.procs[0].pid]),
                   ("mistpy_http_flv", "http", srv.http, [srv.procs[1].pid])]  # fmt: skip
        if srv.nginx:
            targets.append(("nginx_rtmp", "rtmp", srv.nginx, [srv.procs[2].pid]))
        for label, kind, port, pids in targets:
            pub_port = srv.nginx if label.startswith("nginx") else srv.rtmp
            name = f"benchfan{os.getpid()}{label.replace('_', '')}"
            ready = ctx.Queue()
            pub = ctx.Process(
                target=_publisher, args=(pub_port, name, per_step + 10, ready), daemon=True
            )
            pub.start()
            ready.get(timeout=30)
            time.sleep(1.5)  # READY after a second of media
            if label == "mistpy_http_flv":
                pids = [*pids, srv.procs[0].pid]  # the buffer is a child of MistOutRTMP
            out[label] = [_step(ctx, kind, port, name, n, window, pids) for n in steps]
            pub.terminate()
            pub.join(10)
    best = {
        label: max((s["kept_real_time"] for s in out[label]), default=0)
        for label in ("mistpy_rtmp", "mistpy_http_flv", "nginx_rtmp")
        if label in out
    }
    out["max_kept"] = best
    if best.get("nginx_rtmp"):
        out["ratio_rtmp_mistpy_over_nginx"] = round(best["mistpy_rtmp"] / best["nginx_rtmp"], 2)
    return out
