"""Client side of the controller's UDP API, for child programs.

The controller sets ``MIST_CONTROL=<host>:<port>`` in every child's environment; the
UDP API takes one JSON object per datagram and answers the sender (reference 3.5).
Standalone (no ``MIST_CONTROL``), :func:`control_address` falls back to
``localhost:4242`` (or ``UDP_API``), so a program started by hand still finds a
running controller; when none answers, :func:`ensure_input` returns status
``"error"`` with ``error == "no controller"`` and the caller may start the input
itself (``MistIn<X> -s <stream> <source>``) or report the stream as offline.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from common.defaults import API_PORT

NO_CONTROLLER = "no controller"


def control_address() -> tuple[str, int]:
    """Where the controller's UDP API listens."""
    raw = os.environ.get("MIST_CONTROL") or os.environ.get("UDP_API") or ""
    raw = raw.removeprefix("udp://")
    if ":" in raw:
        host, _, port = raw.rpartition(":")
        try:
            return host.strip("[]") or "127.0.0.1", int(port)
        except ValueError:
            pass
    return "127.0.0.1", API_PORT


def under_controller() -> bool:
    """True when this process was started by the controller."""
    return os.environ.get("MIST_CHILD") == "1" and bool(os.environ.get("MIST_CONTROL"))


def send(message: dict[str, Any], address: tuple[str, int] | None = None) -> None:
    """Fire-and-forget one datagram (heartbeats, status updates)."""
    data = json.dumps(message).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(data, address or control_address())
        except OSError:
            pass


def request(
    message: dict[str, Any], timeout: float = 5.0, address: tuple[str, int] | None = None
) -> dict[str, Any] | None:
    """Send ``message`` and wait for the JSON reply; ``None`` if nobody answered in time."""
    data = json.dumps(message).encode()
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address or control_address())
            sock.send(data)
        except OSError:
            return None
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                reply = sock.recv(65536)
            except (TimeoutError, OSError):
                return None
            try:
                obj = json.loads(reply)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def ensure_input(stream: str, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the controller to make sure ``stream`` has a running input.

    Returns ``{"stream", "status": "running"|"started"|"error", "error"?}``. "started"
    means the input was just spawned: wait for the stream's shm state to become ready.
    """
    reply = request({"ensure_input": stream}, timeout=timeout)
    if reply is None:
        return {"stream": stream, "status": "error", "error": NO_CONTROLLER}
    result = reply.get("ensure_input")
    if not isinstance(result, dict):
        return {"stream": stream, "status": "error", "error": str(reply.get("error", "bad reply"))}
    return result


async def ensure_input_async(stream: str, timeout: float = 10.0) -> dict[str, Any]:
    """:func:`ensure_input` off the event loop."""
    import asyncio

    return await asyncio.to_thread(ensure_input, stream, timeout)
