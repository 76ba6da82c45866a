"""Hostile and slow clients never disturb the publisher or the other viewers."""

from __future__ import annotations

import asyncio
import os
import struct
import time

import pytest

from bench.rtmpclient import Client, PlayStats
from mistcodecs.rtmp.chunks import ChunkWriter

from ..netburst import check_fd_limit_raised, connected_burst
from .conftest import Rtmp, start_rtmp, stop_rtmp, wait_for
from .test_e2e import http_capture


async def _closed_by_server(c: Client, timeout: float = 8.0) -> bool:
    assert c.reader is not None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            data = await asyncio.wait_for(c.reader.read(65536), deadline - time.monotonic())
            if not data:
                return True
    except (TimeoutError, ConnectionError):
        return False
    finally:
        c.close()
    return False


async def _hostile(rtmp: Rtmp, stream: str) -> dict[str, bool]:
    results: dict[str, bool] = {}

    async def garbage_after_handshake() -> None:
        c = Client("127.0.0.1", rtmp.port)
        await c.handshake()
        assert c.writer is not None
        c.writer.write(os.urandom(8192))
        results["random bytes"] = await _closed_by_server(c)

    async def oversized_chunk() -> None:
        c = Client("127.0.0.1", rtmp.port)
        await c.handshake()
        assert c.writer is not None
        w = ChunkWriter()
        c.writer.write(w.write(2, 1, 0, 0, struct.pack(">I", 0x7FFFFFFF)))
        # a message header announcing 16 MiB of audio, then a trickle: the reader must refuse
        c.writer.write(bytes([0x04]) + b"\0\0\0" + (0xFFFFFF).to_bytes(3, "big") + b"\x08")
        c.writer.write(struct.pack("<I", 1) + os.urandom(4096))
        results["oversized"] = await _closed_by_server(c)

    async def amf_garbage() -> None:
        c = Client("127.0.0.1", rtmp.port)
        await c.handshake()
        assert c.writer is not None
        w = ChunkWriter()
        c.writer.write(w.write(3, 20, 0, 0, b"\x02\x00\x07connect\x00" + os.urandom(300)))
        c.writer.write(w.write(3, 20, 0, 0, b"\x0a\xff\xff\xff\xff"))  # strict array of 4G items
        results["amf"] = await _closed_by_server(c)

    async def stalled_publisher() -> None:
        c = Client("127.0.0.1", rtmp.port)
        await c.handshake()
        sid = await c.create_stream()
        c.conn.publish(sid, stream + "stall")
        c.flush()
        results["stalled"] = await _closed_by_server(c, 10.0)

    async def half_handshake() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", rtmp.port)
        writer.write(b"\x03" + os.urandom(700))  # C0 + part of C1, then silence
        c = Client("127.0.0.1", rtmp.port)
        c.reader, c.writer = reader, writer
        results["half handshake"] = await _closed_by_server(c, 10.0)

    await asyncio.gather(
        garbage_after_handshake(), oversized_chunk(), amf_garbage(), stalled_publisher(),
        half_handshake(),
    )  # fmt: skip
    return results


def test_malformed_clients_only_hurt_themselves(rtmp: Rtmp, publisher: object) -> None:
    stream, pub = publisher(40)  # type: ignore[operator]

    async def main() -> tuple[dict[str, bool], PlayStats]:
        stats = PlayStats()
        viewer = asyncio.ensure_future(Client("127.0.0.1", rtmp.port).play(stream, 7.0, stats))
        results = await _hostile(rtmp, stream)
        await viewer
        return results, stats

    results, stats = asyncio.run(main())
    assert results == dict.fromkeys(results, True), results
    assert len(results) == 5
    assert not stats.closed and len(stats.media) >= 7 * 25 * 0.8
    assert stats.max_lag() < 1.0
    assert pub.poll() is None
    assert rtmp.proc.poll() is None
    text = rtmp.text()
    assert "sent nothing for" in text  # the stalled publisher and the half handshake


@pytest.mark.parametrize("viewers", [20, pytest.param(50, marks=pytest.mark.slow)])
def test_fanout_slow_viewer_does_not_hold_back_others(
    rtmp: Rtmp, http: object, publisher: object, tmp_path: object, viewers: int
) -> None:
    """``viewers`` viewers on RTMP, HTTP-FLV and HTTP-TS; one RTMP viewer reads at 10 %
    of the bitrate. Every other RTMP viewer stays within 1.5 s of real time and every HTTP
    viewer receives at least 70 % of the bytes an RTMP viewer does."""
    from pathlib import Path

    stream, pub = publisher(60)  # type: ignore[operator]
    seconds = 5.0
    # the stream's byte rate, measured by one viewer first
    probe = PlayStats()
    asyncio.run(Client("127.0.0.1", rtmp.port).play(stream, 1.5, probe))
    rate = probe.bytes / 1.5
    n_rtmp = viewers // 2
    n_http = viewers - n_rtmp
    captures = [
        http_capture(
            http,  # type: ignore[arg-type]
            f"/{stream}.{'flv' if i % 2 else 'ts'}",
            seconds,
            Path(str(tmp_path)) / f"h{i}.{'flv' if i % 2 else 'ts'}",
        )
        for i in range(n_http)
    ]

    async def main() -> tuple[list[PlayStats], PlayStats]:
        fast = [PlayStats() for _ in range(n_rtmp)]
        slow = PlayStats()
        tasks = [Client("127.0.0.1", rtmp.port).play(stream, seconds, s) for s in fast]
        tasks.append(
            Client("127.0.0.1", rtmp.port).play(stream, seconds, slow, rcvbuf=4096, rate=rate / 10)
        )
        await asyncio.gather(*tasks)
        return fast, slow

    fast, slow = asyncio.run(main())
    for c in captures:
        c.join(30)
    lags = sorted(s.max_lag() for s in fast)
    assert lags[-1] < 1.5, lags
    assert slow.bytes < rate * seconds * 0.5  # it really was slow
    per_rtmp = min(s.bytes for s in fast)
    for i in range(n_http):
        ext = "flv" if i % 2 else "ts"
        size = (Path(str(tmp_path)) / f"h{i}.{ext}").stat().st_size
        assert size > 0.7 * per_rtmp, (ext, size, per_rtmp)
    assert pub.poll() is None
    wait_for(lambda: rtmp.proc.poll() is None, 1, "server alive")


def test_a_burst_of_rtmp_connections_waits_in_the_accept_queue() -> None:
    """A burst of viewers while MistOutRTMP cannot accept (stopped here, busy in real
    life) waits in the accept queue; once it runs, every one gets its handshake."""
    srv = start_rtmp()
    try:
        check_fd_limit_raised(srv.proc.pid)
        with connected_burst(srv.proc.pid, "127.0.0.1", srv.port) as socks:
            c0c1 = b"\x03" + bytes(8) + os.urandom(1528)
            for s in socks:
                s.sendall(c0c1)
            for s in socks:
                got = b""
                while len(got) < 1 + 1536:
                    more = s.recv(4096)
                    assert more, "closed before S0 S1"
                    got += more
                assert got[0] == 3
    finally:
        stop_rtmp(srv)
