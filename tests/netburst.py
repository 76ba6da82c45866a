"""A burst of TCP connections to a server that cannot accept (stopped with SIGSTOP).

Handshakes that fit the listening socket's accept queue complete in the kernel at once;
the others stay unanswered while the server is stopped (their SYNs are dropped again).
Used to check that the live outputs ask for an accept queue long enough for a burst of
viewers (a dropped handshake used to turn into a reset seconds later).
"""

from __future__ import annotations

import errno
import os
import resource
import selectors
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BURST = 600  # far more than the 100 asyncio's create_server listens with by default


def check_fd_limit_raised(pid: int) -> None:
    """The server's soft open-files limit is its hard limit (a descriptor per viewer)."""
    limits = Path(f"/proc/{pid}/limits").read_text()
    fields = next(x for x in limits.splitlines() if x.startswith("Max open files")).split()
    assert fields[3] == fields[4]


@contextmanager
def connected_burst(
    pid: int, host: str, port: int, n: int = BURST
) -> Iterator[list[socket.socket]]:
    """``n`` connections made while process ``pid`` is stopped; asserts that all of
    them completed their handshake, resumes the process and yields them (blocking)."""
    if int(Path("/proc/sys/net/core/somaxconn").read_text()) < n + 8:
        pytest.skip("net.core.somaxconn caps the accept queue below the burst")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 200 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 200, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < n + 200:
        pytest.skip("too few file descriptors for the burst")
    socks: list[socket.socket] = []
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            sel = selectors.DefaultSelector()
            for _ in range(n):
                s = socket.socket()
                s.setblocking(False)
                assert s.connect_ex((host, port)) in (0, errno.EINPROGRESS)
                socks.append(s)
                sel.register(s, selectors.EVENT_WRITE)
            connected = 0
            deadline = time.monotonic() + 30
            while connected < n and time.monotonic() < deadline:
                for key, _ in sel.select(0.5):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                    connected += 1
                    sel.unregister(sock)
            sel.close()
            assert connected == n, f"only {connected} of {n} handshakes completed"
        finally:
            os.kill(pid, signal.SIGCONT)
        for s in socks:
            s.setblocking(True)
            s.settimeout(60)
        yield socks
    finally:
        for s in socks:
            s.close()
