"""What every Mist* program calls at start: logging, heartbeat, stop signals.

Asyncio programs (outputs, most inputs)::

    rt = await runtime.start_async("MistOutRTMP")
    ...serve...
    await rt.wait_stopped()   # SIGTERM/SIGINT or controller gone
    await rt.close()

Blocking programs: ``rt = runtime.start("MistInMP4", stream=s)`` then poll
``rt.stopping.is_set()``, or ``rt.add_stop_callback(fn)``.

Heartbeat (liveness apart from the data plane): under the controller each child sends
``{"heartbeat": {"pid", "program", "stream", "time"}}`` as a UDP datagram to
``MIST_CONTROL`` every :data:`HEARTBEAT_S` seconds. The asyncio variant sends it from
a task on the program's own loop, so a blocked loop stops the heartbeat and the
controller kills and restarts the child after its stall timeout. The controller never
answers heartbeats. Children that never send one are not stall-checked.

Orphan guard (under the controller only): if the parent (controller) dies, the child is
asked to stop as if it got SIGTERM, and exits hard 5 s later if it has not. Standalone
programs keep running when the shell that started them goes away.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from common.control import control_address, under_controller
from common.log import get_logger

if TYPE_CHECKING:  # asyncio is imported on use: blocking programs (MistInBuffer) stay slim
    import asyncio

HEARTBEAT_S = 1.0
ORPHAN_GRACE_S = 5.0


class Runtime:
    """Process-level state of a child program."""

    def __init__(self, program: str, stream: str = "", debug: int | None = None) -> None:
        self.program = program
        self.stream = stream
        self.log = get_logger(program, stream, debug)
        self.stopping = threading.Event()
        self.exit_reason = ""
        self._callbacks: list[Callable[[], Any]] = []
        self._ppid = os.getppid()
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._async_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- stopping ---------------------------------------------------------------------------
    def add_stop_callback(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` (in the signal context / loop) when a stop is requested."""
        self._callbacks.append(callback)

    def request_stop(self, reason: str = "stop requested") -> None:
        if self.stopping.is_set():
            return
        self.exit_reason = reason
        self.stopping.set()
        if self._async_event is not None:
            self._async_event.set()
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                self.log.exception("stop callback failed")

    async def wait_stopped(self) -> None:
        import asyncio

        if self._async_event is None:
            self._async_event = asyncio.Event()
            if self.stopping.is_set():
                self._async_event.set()
        await self._async_event.wait()

    # ---- heartbeat --------------------------------------------------------------------------
    def heartbeat_message(self) -> bytes:
        body = {
            "pid": os.getpid(),
            "program": self.program,
            "stream": self.stream,
            "time": time.time(),
        }
        return json.dumps({"heartbeat": body}).encode()

    def _beat(self) -> None:
        """One heartbeat plus the orphan check."""
        if self._sock is not None and os.getppid() != self._ppid and not self.stopping.is_set():
            self.log.warning("controller went away; stopping")
            self._schedule_stop("orphaned")
            threading.Timer(ORPHAN_GRACE_S, os._exit, (1,)).start()
        if self._sock is not None:
            try:
                self._sock.sendto(self.heartbeat_message(), control_address())
            except OSError:
                pass

    def _schedule_stop(self, reason: str) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self.request_stop, reason)
        else:
            self.request_stop(reason)

    async def _heartbeat_task(self) -> None:
        import asyncio

        while not self.stopping.is_set():
            self._beat()
            await asyncio.sleep(HEARTBEAT_S)

    def _heartbeat_thread(self) -> None:
        while not self.stopping.wait(HEARTBEAT_S):
            self._beat()

    def _open_socket(self) -> None:
        if under_controller():
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock.setblocking(False)

    async def close(self) -> None:
        """Stop the heartbeat (async variant)."""
        import asyncio

        self.stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._close_socket()

    def close_sync(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def start(program: str, stream: str = "", debug: int | None = None) -> Runtime:
    """Set up a blocking program: signal handlers and a heartbeat thread."""
    rt = Runtime(program, stream, debug)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: rt.request_stop(signal.Signals(signum).name))
    rt._open_socket()
    rt._beat()
    rt._thread = threading.Thread(
        target=rt._heartbeat_thread, name=f"{program}-heartbeat", daemon=True
    )
    rt._thread.start()
    return rt


async def start_async(program: str, stream: str = "", debug: int | None = None) -> Runtime:
    """Set up an asyncio program: loop signal handlers and a heartbeat task on this loop."""
    import asyncio

    rt = Runtime(program, stream, debug)
    loop = asyncio.get_running_loop()
    rt._loop = loop
    rt._async_event = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, rt.request_stop, sig.name)
    rt._open_socket()
    rt._task = asyncio.create_task(rt._heartbeat_task(), name=f"{program}-heartbeat")
    return rt


def quiet_asyncio_logger() -> None:
    """Keep asyncio's own debug chatter out of the controller's log."""
    logging.getLogger("asyncio").setLevel(logging.WARNING)
