"""Process-level behaviour: SO_REUSEPORT scale-out and graceful SIGTERM with viewers attached."""

from __future__ import annotations

import socket
import time

from ..netburst import check_fd_limit_raised, connected_burst
from .conftest import LivePublisher, Server, start_server, stop_server


def _get_status(server: Server, path: str) -> int:
    status, _, _ = server.get(path)
    return status


def test_two_processes_share_the_port(vod_stream: str) -> None:
    first = start_server()
    try:
        second = start_server("-p", str(first.port))  # the later -p wins over -p 0
        try:
            assert second.port == first.port
            # Both listen (SO_REUSEPORT); with the first gone the port keeps answering.
            assert _get_status(first, f"/json_{vod_stream}.js") == 200
            stop_server(first)
            assert _get_status(second, f"/json_{vod_stream}.js") == 200
        finally:
            stop_server(second)
    finally:
        if first.proc.poll() is None:
            stop_server(first)


def test_sigterm_closes_viewers_and_exits(live_stream: LivePublisher) -> None:
    server = start_server()
    try:
        with socket.create_connection((server.host, server.port), timeout=10) as s:
            s.sendall(f"GET /{live_stream.writer.stream}.flv HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            t0 = time.monotonic()
            server.proc.terminate()
            assert server.proc.wait(10) == 0
            assert time.monotonic() - t0 < 5
            s.settimeout(5)
            while s.recv(65536):  # drains, then EOF: the server closed the viewer
                pass
    finally:
        stop_server(server)  # no-op when it already exited; removes its log


def test_a_burst_of_connections_waits_in_the_accept_queue(vod_stream: str) -> None:
    """A burst of viewers while the server cannot accept (stopped here, busy in real
    life) waits in the accept queue; once the server runs, every one gets its answer."""
    server = start_server()
    try:
        check_fd_limit_raised(server.proc.pid)
        with connected_burst(server.proc.pid, server.host, server.port) as socks:
            request = f"GET /json_{vod_stream}.js HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            for s in socks:
                s.sendall(request.encode())
            for s in socks:
                assert s.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        stop_server(server)
