"""Warm starts of ``MistInBuffer`` for a standalone connector (MistOutRTMP without a
controller).

A Python interpreter that has imported the buffer costs ~0.2 s of CPU and ~10 MiB to
start, and a connector that takes many pushes at once (every encoder reconnecting after
a restart) would start dozens at the same moment. The zygote is one process that has
imported :mod:`inputs.buffer` and forks a buffer per request: the child is running
within a millisecond and shares the imported modules' pages with its siblings (PSS
splits them). Under the controller the controller starts inputs, as before.

Protocol on the zygote's socket (a socketpair with the connector): a request is one
JSON line ``{"argv": [...]}`` (MistInBuffer's arguments), the reply one JSON line
``{"pid": N}``. The kernel reaps the children (SIGCHLD ignored). The zygote exits when
the connector closes its end; its children live on, as a buffer started on its own
would, and end by themselves (no publisher within ``resume`` s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

SPAWN_TIMEOUT_S = 5.0


# -- the zygote process -------------------------------------------------------------------


def _child(argv: list[str]) -> int:
    """Run MistInBuffer with ``argv`` in a forked child; its exit code."""
    from inputs import buffer

    sys.argv = ["MistInBuffer", *argv]
    try:
        buffer.main.main(args=argv, prog_name="MistInBuffer")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # report and leave: this is a process boundary
        import traceback

        traceback.print_exc()
        return 1
    return 0


def _fork(sock: socket.socket, argv: list[str]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        # what ps/top/psutil call it (not "python")
        with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
            comm.write("MistInBuffer")
        code = _child(argv)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(fd: int) -> None:
    """The zygote: import the buffer once, then fork one per request until EOF."""
    import gc

    from inputs import buffer  # the point: imported once, shared by every child

    with contextlib.suppress(Exception):  # click imports and looks up more on first parse
        buffer.main.make_context("MistInBuffer", ["-s", "warmup", "push://"])
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the connector decides when we go
    gc.freeze()  # keep the collector from touching (and so copying) the shared pages
    sock = socket.socket(fileno=fd)
    pending = b""
    while True:
        try:
            data = sock.recv(65536)
        except InterruptedError:  # pragma: no cover - PEP 475 retries recv
            continue
        except OSError:
            return
        if not data:
            return
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            try:
                argv = [str(a) for a in json.loads(line)["argv"]]
                reply: dict[str, object] = {"pid": _fork(sock, argv)}
            except (ValueError, KeyError, TypeError, OSError) as exc:
                reply = {"error": str(exc)}
            sock.sendall(json.dumps(reply).encode() + b"\n")


# -- the connector's side -------------------------------------------------------------------


class Zygote:
    """Starts the zygote on first use and asks it for buffers (asyncio)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.pids: dict[int, float] = {}  # children we started -> when
        self._lock: asyncio.Lock | None = None

    def _start(self) -> socket.socket:
        mine, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "inputs.zygote", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        mine.setblocking(False)
        self.sock = mine
        return mine

    async def spawn(self, argv: list[str]) -> int:
        """A new MistInBuffer with ``argv``; its pid. Raises ``OSError`` when the zygote
        cannot (the caller then starts one the ordinary way)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            sock = self.sock
            if sock is None or self.proc is None or self.proc.poll() is not None:
                self._drop()
                sock = self._start()
            loop = asyncio.get_running_loop()
            try:
                await loop.sock_sendall(sock, json.dumps({"argv": argv}).encode() + b"\n")
                reply = b""
                async with asyncio.timeout(SPAWN_TIMEOUT_S):
                    while not reply.endswith(b"\n"):
                        data = await loop.sock_recv(sock, 4096)
                        if not data:
                            raise OSError("the zygote went away")
                        reply += data
            except (OSError, TimeoutError) as exc:
                self._drop()
                raise OSError(f"zygote: {exc}") from exc
            answer = json.loads(reply)
            pid = answer.get("pid") if isinstance(answer, dict) else None
            if not isinstance(pid, int):
                raise OSError(f"zygote refused: {answer}")
            self.pids[pid] = time.monotonic()
            return pid

    def running(self, pid: int) -> bool:
        return pid in self.pids and _alive(pid)

    def reap(self) -> None:
        self.pids = {p: t for p, t in self.pids.items() if _alive(p)}
        if self.proc is not None:
            self.proc.poll()  # a zygote that died is collected, not left a zombie

    def _drop(self) -> None:
        if self.sock is not None:
            self.sock.close()  # EOF: the zygote exits
            self.sock = None
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    async def close(self, grace: float = 5.0) -> None:
        """End the buffers it started (SIGTERM, SIGKILL after ``grace``), then the
        zygote (last: while it runs it reaps them)."""
        for pid in list(self.pids):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in self.pids) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for pid in self.pids:
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        self.pids.clear()
        self._drop()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs. The zygote's children are reaped at once, but one whose
    zygote died is reaped by init, perhaps late: a zombie counts as gone."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


if __name__ == "__main__":
    serve(int(sys.argv[1]))
