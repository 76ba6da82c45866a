"""Hostile clients against the real outputs under the controller: slowloris HTTP,
half-open RTMP handshakes, thousands of connections opened and dropped, oversized
headers, viewers that never read. Throughout, a normal client must be served promptly
and the attacked process must stay within a memory bound.

The server runs with ``header_timeout 3`` (HTTP) and ``timeout 3`` (RTMP) so the
timeouts act within a short test. ``MIST_RELIABILITY_LONG=1`` multiplies the load.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable, Iterator
from functools import partial

import psutil
import pytest

from bench.loadclient import LoadThread, ViewerStats, http_viewer, rtmp_viewer
from tests.reliability.conftest import LONG, Server, rss, try_fetch, wait_for

pytestmark = pytest.mark.reliability
SCALE = 5 if LONG else 1
MIB = 1 << 20


def memory_bound(connections: int) -> int:
    """What a process may grow by: the design's 64 KiB per connection plus slack."""
    return 24 * MIB + connections * 64 * 1024


@pytest.fixture(scope="module")
def srv(server: Server) -> Iterator[Server]:
    if not server.pushes or server.pushes[-1].poll() is not None:
        server.stop_pushes()
        server.push_live()
    wait_for(server.online, 60, 0.1, "connectors online")
    yield server


def served_promptly(srv: Server) -> float:
    """A normal client: the stream info and the first 40 kB of the live FLV, timed. An
    on-demand VoD input may be booting (it idles out between tests): info is polled."""
    t0 = time.monotonic()

    def info() -> bool:
        got = try_fetch(f"http://127.0.0.1:{srv.http}/json_{srv.vod}.js")
        return got is not None and b'"type"' in got

    wait_for(info, 3.0, 0.05, "json_ served")
    live = try_fetch(f"http://127.0.0.1:{srv.http}/{srv.live}.flv", limit=40_000)
    assert live is not None and live[:3] == b"FLV", "live FLV not served"
    took = time.monotonic() - t0
    assert took < 3.0, f"a normal client waited {took:.1f} s"
    return took


def during(seconds: float, check: Callable[[], object]) -> int:
    """Run ``check`` about every 0.5 s for ``seconds``; how many times it ran."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        check()
        n += 1
        time.sleep(0.5)
    return n


def pid_of(srv: Server, program: str) -> int:
    return srv.wait_one(program).pid


def fds(pid: int) -> int:
    return psutil.Process(pid).num_fds()


def fds_back(pid: int, limit: int) -> bool:
    return fds(pid) <= limit


async def _open_many(port: int, count: int, first: bytes) -> list[asyncio.StreamWriter]:
    async def one() -> asyncio.StreamWriter | None:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return None
        w.write(first)
        return w

    writers: list[asyncio.StreamWriter] = []
    for i in range(0, count, 200):
        got = await asyncio.gather(*(one() for _ in range(min(200, count - i))))
        writers += [w for w in got if w is not None]
    return writers


async def _trickle(writers: list[asyncio.StreamWriter], seconds: float, every: float) -> int:
    """Send one header byte per connection every ``every`` s; count the server's closes."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(every)
        for w in writers:
            if not w.is_closing():
                try:
                    w.write(b"a")
                except (OSError, RuntimeError):
                    pass
    return sum(1 for w in writers if w.transport.is_closing())


async def _close(writers: list[asyncio.StreamWriter]) -> None:
    for w in writers:
        w.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


async def _closed_by_server(port: int, count: int, first: bytes, wait: float) -> int:
    """Open ``count`` connections, send ``first``, wait until the server closes them."""
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(count):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue
        w.write(first)
        conns.append((r, w))

    async def closed(r: asyncio.StreamReader) -> bool:
        try:
            while await asyncio.wait_for(r.read(65536), wait):
                pass
            return True
        except (TimeoutError, OSError):
            return False

    try:
        res = await asyncio.gather(*(closed(r) for r, _ in conns))
    finally:
        await _close([w for _, w in conns])
    return sum(res)


def test_slowloris_http(srv: Server, load: LoadThread) -> None:
    pid = pid_of(srv, "MistOutHTTP")
    count = 300 * SCALE
    before = rss(pid)
    writers = load.submit(
        _open_many(srv.http, count, b"GET /x.flv HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    ).result(30)
    try:
        assert len(writers) == count
        trickle = load.submit(_trickle(writers, 6.0 * SCALE, 1.0))
        assert during(5.0 * SCALE, lambda: served_promptly(srv)) >= 3
        closed = trickle.result(30)
        grown = rss(pid) - before
    finally:
        load.submit(_close(writers)).result(10)
    # header_timeout 3 s: every slow header was cut off (408) long before 6 s
    assert closed == count, f"{count - closed} slowloris connections still open"
    assert grown < memory_bound(count), f"MistOutHTTP grew {grown / MIB:.1f} MiB"


def test_half_open_rtmp_handshakes(srv: Server, load: LoadThread) -> None:
    pid = pid_of(srv, "MistOutRTMP")
    count = 300 * SCALE
    before = rss(pid)
    c0_partial_c1 = b"\x03" + bytes(700)  # C0 and 700 of C1's 1536 bytes, then silence
    closing = load.submit(_closed_by_server(srv.rtmp, count, c0_partial_c1, 12.0))
    time.sleep(0.5)
    viewer = load.submit(rtmp_viewer("127.0.0.1", srv.rtmp, "live", srv.live, 3.0)).result(20)
    assert viewer.status == 1 and viewer.bytes > 0, viewer
    assert viewer.first_byte - viewer.started < 2.0, "the normal RTMP viewer waited"
    grown = rss(pid) - before
    closed = closing.result(60)
    assert closed == count, f"{count - closed} half-open handshakes were never closed"
    assert grown < memory_bound(count), f"MistOutRTMP grew {grown / MIB:.1f} MiB"
    served_promptly(srv)


async def _churn(port: int, total: int, parallel: int, payload: bytes) -> int:
    """Open and drop ``total`` connections, ``parallel`` at a time; half with a reset."""
    done = 0
    linger = struct.pack("ii", 1, 0)
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        nonlocal done
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            if payload and i % 3 == 0:
                await loop.sock_sendall(sock, payload)
            if i % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)  # RST
            done += 1
        except OSError:
            pass
        finally:
            sock.close()

    for i in range(0, total, parallel):
        await asyncio.gather(*(one(j) for j in range(i, min(total, i + parallel))))
    return done


def test_connections_opened_and_dropped(srv: Server, load: LoadThread) -> None:
    total = 10_000 if LONG else 2_000
    http_pid, rtmp_pid = pid_of(srv, "MistOutHTTP"), pid_of(srv, "MistOutRTMP")
    base_fds = {p: fds(p) for p in (http_pid, rtmp_pid)}
    base_rss = {p: rss(p) for p in (http_pid, rtmp_pid)}
    futs = [
        load.submit(_churn(srv.http, total // 2, 100, b"GET / HTTP/1.1\r\n")),
        load.submit(_churn(srv.rtmp, total // 2, 100, b"\x03" + bytes(100))),
    ]
    during(1.0, lambda: served_promptly(srv))
    assert sum(f.result(120) for f in futs) >= total * 0.99
    served_promptly(srv)
    # every dropped connection is let go: no descriptor kept, memory back in bounds
    for pid in (http_pid, rtmp_pid):
        wait_for(partial(fds_back, pid, base_fds[pid] + 10), 15, 0.2, f"fds of {pid} back")
        assert rss(pid) - base_rss[pid] < memory_bound(100)


def test_oversized_headers(srv: Server) -> None:
    pid = pid_of(srv, "MistOutHTTP")
    before = rss(pid)
    cases = {
        "long line": b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\n\r\n",
        "huge header": b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 1_000_000 + b"\r\n\r\n",
        "many headers": b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 5000 + b"\r\n",
    }
    for what, req in cases.items():
        with socket.create_connection(("127.0.0.1", srv.http), 5) as s:
            s.settimeout(5)
            try:
                s.sendall(req)
            except OSError:
                pass  # closed on us mid-send: also a refusal
            try:
                reply = s.recv(4096)
            except OSError:
                reply = b""
        status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.") else 0
        assert status in (0, 400, 413, 414, 431), (what, reply[:100])
    assert rss(pid) - before < memory_bound(10)
    served_promptly(srv)


def test_viewers_that_never_read(srv: Server, load: LoadThread) -> None:
    http_pid, rtmp_pid = pid_of(srv, "MistOutHTTP"), pid_of(srv, "MistOutRTMP")
    before = {p: rss(p) for p in (http_pid, rtmp_pid)}
    count = 20 * SCALE
    stuck: list[socket.socket] = []
    for i in range(count):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", srv.http))
        s.sendall(f"GET /{srv.live}.flv HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        stuck.append(s)
        if i % 2 == 0:  # and a few RTMP ones that stop reading after the handshake start
            r = socket.socket()
            r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            r.connect(("127.0.0.1", srv.rtmp))
            r.sendall(b"\x03" + bytes(1536))
            stuck.append(r)
    try:
        hv, rv = ViewerStats(), ViewerStats()
        f_h = load.submit(http_viewer("127.0.0.1", srv.http, f"/{srv.live}.flv", 6 * SCALE, hv))
        f_r = load.submit(rtmp_viewer("127.0.0.1", srv.rtmp, "live", srv.live, 6 * SCALE, rv))
        f_h.result(60)
        f_r.result(60)
        for v in (hv, rv):
            assert v.bytes > 0 and not v.error, v
            assert v.max_gap < 2.0, f"a normal viewer stalled {v.max_gap:.1f} s"
            # the test stream runs at a few hundred kbit/s: it kept coming all along
            assert v.bytes_between(v.first_byte + 1, v.last_byte) > 20_000
        for pid, was in before.items():
            grown = rss(pid) - was
            assert grown < memory_bound(count), f"{pid} grew {grown / MIB:.1f} MiB"
    finally:
        for s in stuck:
            s.close()
    served_promptly(srv)
