"""Firing MistServer triggers from child programs (reference 7).

The controller owns the trigger configuration and runs every handler (executables and
HTTP URLs); children only ask it over the UDP API::

    answer = await triggers.fire_async("PLAY_REWRITE", [stream, host, "HTTP", url], stream)
    if answer is not None:                        # a blocking handler answered
        if not answer: ...deny...                 # "" denies
        stream = answer
    if not await triggers.allowed_async("CONN_PLAY", [stream, host, "HTTP", url], stream):
        ...reject...
    triggers.fire_nowait("CONN_CLOSE", [stream, host, "HTTP", url], stream)
    fallback = await triggers.default_stream_async(stream, host, "HTTP", url)  # "" = none

Request ``{"trigger_fire": {"name", "payload": [lines], "stream", "wait": bool}}``; the
reply's ``trigger_fire`` member is ``{"configured": bool, "answer": str, "allow": bool,
"blocking": bool}``. ``fire*`` returns ``None`` when no handler is configured for the
trigger and stream (or no controller answers), so the caller keeps its own default.
``answer`` is the last blocking handler's answer (rewrite triggers: the last blocking
rewrite wins; only use it when ``blocking``), ``allow`` ANDs every handler's truthiness
(boolean triggers: use :func:`allowed` / :func:`allowed_async`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from common import control
from common.defaults import TRIGGER_TIMEOUT_S

# The controller gives a blocking executable SIGTERM at 10 s, SIGKILL at 14 s and answers
# with the default at 15 s; a child waits a little longer than that.
REPLY_TIMEOUT_S = TRIGGER_TIMEOUT_S + 6.0

TRUE_PREFIXES = ("1", "yes", "true", "cont")


def is_true(answer: str | None) -> bool:
    """MistServer's truthiness: the answer starts (after spaces) with 1, yes, true or cont."""
    if answer is None:
        return False
    text = answer.lstrip().lower()
    return text.startswith(TRUE_PREFIXES)


@dataclass(frozen=True)
class TriggerReply:
    configured: bool
    answer: str
    allow: bool
    blocking: bool

    @classmethod
    def from_json(cls, obj: Any) -> TriggerReply | None:
        if not isinstance(obj, dict):
            return None
        return cls(
            bool(obj.get("configured")),
            str(obj.get("answer", "")),
            bool(obj.get("allow", True)),
            bool(obj.get("blocking")),
        )


def _request(name: str, payload: list[str], stream: str | None, wait: bool) -> dict[str, Any]:
    return {
        "trigger_fire": {
            "name": name,
            "payload": [str(line) for line in payload],
            "stream": stream or "",
            "wait": wait,
        }
    }


def fire_full(
    name: str, payload: list[str], stream: str | None = None, timeout: float = REPLY_TIMEOUT_S
) -> TriggerReply | None:
    """Blocking: run ``name``'s handlers and return the combined reply (None: no controller)."""
    reply = control.request(_request(name, payload, stream, True), timeout=timeout)
    return TriggerReply.from_json(reply.get("trigger_fire")) if reply else None


def fire(name: str, payload: list[str], stream: str | None = None) -> str | None:
    """Blocking rewrite trigger: the last blocking answer; None when no blocking handler
    is configured (then the caller keeps its value)."""
    result = fire_full(name, payload, stream)
    return result.answer if result is not None and result.blocking else None


def allowed(name: str, payload: list[str], stream: str | None = None) -> bool:
    """Blocking boolean trigger: True unless a configured handler said no."""
    result = fire_full(name, payload, stream)
    return result is None or not result.configured or result.allow


def fire_nowait(name: str, payload: list[str], stream: str | None = None) -> None:
    """Fire and forget (the controller still runs every handler, results ignored)."""
    control.send(_request(name, payload, stream, False))


class _Client(asyncio.DatagramProtocol):
    """One UDP socket per event loop and controller address; replies are matched by a
    request id."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: tuple[str, int]) -> None:
        self.loop = loop
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(ValueError):
            obj = json.loads(data)
            if not isinstance(obj, dict):
                return
            body = obj.get("trigger_fire") or obj.get("default_stream") or obj.get("trigger_names")
            rid = body.get("rid") if isinstance(body, dict) else None
            future = self.waiting.pop(rid, None) if isinstance(rid, int) else None
            if future is not None and not future.done() and isinstance(body, dict):
                future.set_result(body)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable: no controller
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ConnectionRefusedError(str(exc)))
        self.waiting.clear()


_clients: dict[int, _Client] = {}


async def _client() -> _Client:
    # Keyed by the loop's id, but checked against the loop object and the controller's
    # address: a later ``asyncio.run`` may reuse a dead loop's id (and a later run may
    # talk to another controller), and a socket of a closed loop never answers.
    loop = asyncio.get_running_loop()
    address = control.control_address()
    key = id(loop) ^ os.getpid()
    client = _clients.get(key)
    if (
        client is None
        or client.loop is not loop
        or client.address != address
        or client.transport is None
        or client.transport.is_closing()
    ):
        _, client = await loop.create_datagram_endpoint(
            lambda: _Client(loop, address), remote_addr=address
        )
        _clients[key] = client
    return client


async def _ask(key: str, body: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """One request/reply with the controller on this loop's socket (None: no answer)."""
    try:
        client = await _client()
    except OSError:
        return None
    rid = next(client.ids)
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    client.waiting[rid] = future
    assert client.transport is not None
    try:
        client.transport.sendto(json.dumps({key: {**body, "rid": rid}}).encode())
        return await asyncio.wait_for(future, timeout)
    except (TimeoutError, OSError):
        return None
    finally:
        client.waiting.pop(rid, None)


NAMES_TTL_S = 2.0
_names: dict[tuple[int, tuple[str, int]], tuple[float, frozenset[str] | None]] = {}


async def configured_names() -> frozenset[str] | None:
    """Trigger names the controller has handlers for, cached for :data:`NAMES_TTL_S` per
    process (None: unknown, no controller answered). Spares a round trip per connection
    for the triggers nobody configured; a newly configured trigger applies within 2 s."""
    key = (os.getpid(), control.control_address())
    now = time.monotonic()
    cached = _names.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    reply = await _ask("trigger_names", {}, 2.0)
    names = reply.get("names") if reply else None
    value = frozenset(n for n in names if isinstance(n, str)) if isinstance(names, list) else None
    _names[key] = (now + NAMES_TTL_S, value)
    return value


def configured_names_sync() -> frozenset[str] | None:
    """:func:`configured_names` for threads and synchronous programs (same cache)."""
    key = (os.getpid(), control.control_address())
    now = time.monotonic()
    cached = _names.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    reply = control.request({"trigger_names": {}}, timeout=2.0)
    body = reply.get("trigger_names") if reply else None
    names = body.get("names") if isinstance(body, dict) else None
    value = frozenset(n for n in names if isinstance(n, str)) if isinstance(names, list) else None
    _names[key] = (now + NAMES_TTL_S, value)
    return value


async def fire_full_async(
    name: str, payload: list[str], stream: str | None = None, timeout: float = REPLY_TIMEOUT_S
) -> TriggerReply | None:
    """As :func:`fire_full`, on the running event loop (no thread, no blocking)."""
    known = await configured_names()
    if known is not None and name not in known:
        return TriggerReply(False, "", True, False)
    body = await _ask(
        "trigger_fire", _request(name, payload, stream, True)["trigger_fire"], timeout
    )
    return TriggerReply.from_json(body)


async def default_stream_async(
    stream: str, host: str, connector: str, url: str, timeout: float = REPLY_TIMEOUT_S
) -> str:
    """The fallback for an unavailable ``stream`` (DEFAULT_STREAM's answer or the
    configured ``defaultStream``, variables expanded); empty: none, answer with an error."""
    body = {"stream": stream, "host": host, "connector": connector, "url": url}
    reply = await _ask("default_stream", body, timeout)
    fallback = reply.get("stream") if reply else None
    return fallback if isinstance(fallback, str) else ""


async def fire_async(name: str, payload: list[str], stream: str | None = None) -> str | None:
    """As :func:`fire`, on the running event loop."""
    result = await fire_full_async(name, payload, stream)
    return result.answer if result is not None and result.blocking else None


async def allowed_async(name: str, payload: list[str], stream: str | None = None) -> bool:
    result = await fire_full_async(name, payload, stream)
    return result is None or not result.configured or result.allow


def track_list_json(tracks: dict[int, Any]) -> str:
    """LIVE_TRACK_LIST's payload line: ``{"<id>": {type, codec, width, ...}}`` from
    ``shm.model.TrackMeta`` objects (binary fields such as ``init`` left out)."""
    out: dict[str, dict[str, Any]] = {}
    for tid, track in sorted(tracks.items()):
        record = track.to_record() if hasattr(track, "to_record") else dict(track)
        out[str(tid)] = {
            k: v
            for k, v in record.items()
            if isinstance(v, (str, int, float, bool)) and v not in ("", None)
        }
    return json.dumps(out, sort_keys=True)


def unload_lines(stream: str, input_type: str, cancelable: bool, reason: str) -> list[str]:
    """STREAM_UNLOAD's payload: name, input type, then ``cancelable`` or ``uncancelable``
    with the reason appended without a separator (as MistServer's code sends it)."""
    return [stream, input_type, ("cancelable" if cancelable else "uncancelable") + reason]


def unload_allowed(stream: str, input_type: str, reason: str) -> bool:
    """STREAM_UNLOAD before an idle input exits: False when a handler wants it kept."""
    return allowed("STREAM_UNLOAD", unload_lines(stream, input_type, True, reason), stream)


async def unload_allowed_async(stream: str, input_type: str, reason: str) -> bool:
    """As :func:`unload_allowed`, on the running event loop."""
    lines = unload_lines(stream, input_type, True, reason)
    return await allowed_async("STREAM_UNLOAD", lines, stream)


def report_output_end(
    bytes_written: int, first_ms: int | None, last_ms: int | None, reason: str = ""
) -> None:
    """Tell the controller what a push/recording output wrote, just before it exits, so
    that OUTPUT_END/RECORDING_END carry real media times (``push_status_update``, keyed
    by this process's pid, which is the push id). A no-op outside a controller."""
    if not control.under_controller():
        return
    status: dict[str, Any] = {"bytes": bytes_written, "reason": reason}
    if first_ms is not None and last_ms is not None:
        status.update(media_first_ms=first_ms, media_last_ms=last_ms)
    control.send({"push_status_update": {"id": os.getpid(), "status": status}})
