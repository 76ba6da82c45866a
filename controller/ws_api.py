"""The WebSocket API on ``/ws`` (reference 3.4): live log lines and stream states.

Query: ``logs=N`` (the last N lines first) or ``logs=since:UNIX``, ``accs=`` the same
for access entries, ``streams=1``.
The first frame is ``["auth", true|false]``; an unauthorized client must send
``["auth", {"username", "password"}]`` (password as for the HTTP API, against the
challenge of its host) within 10 s. Then the server pushes ``["log", [time, kind, msg,
stream, pid, exe, line]]`` for every new log line, ``["access", [time, session, stream,
connector, host, duration, up, down, tags]]`` for every ended session and, with ``streams=1``,
``["stream", [name, status, viewers, inputs, outputs, tags]]`` whenever a stream's
status changes (status codes 0..5, MistServer's). Nothing is sent while more than
10 kB wait in the socket buffer (those frames are dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from common.log import LogRecord

if TYPE_CHECKING:
    from controller.http_api import HttpApi

AUTH_TIMEOUT_S = 10.0
MAX_PENDING = 10_000
STREAM_POLL_S = 1.0


def _log_selection(records: list[LogRecord], spec: str) -> list[LogRecord]:
    if spec.startswith("since:"):
        try:
            since = float(spec[6:])
        except ValueError:
            return []
        return [r for r in records if r.time >= since]
    try:
        count = int(spec)
    except ValueError:
        return []
    return records[-count:] if count > 0 else []


async def handle_ws(
    api: HttpApi, request: web.Request, host: str, local: bool
) -> web.WebSocketResponse:
    ctl = api.ctl
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    authorized = local
    await ws.send_json(["auth", authorized])
    if not authorized:
        authorized = await _wait_auth(api, ws, host)
        if not authorized:
            await ws.close()
            return ws
    queue: asyncio.Queue[list[Any]] = asyncio.Queue(maxsize=1000)

    def on_log(record: LogRecord) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(["log", record.to_api()])

    def on_access(entry: list[Any]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(["access", entry])

    for record in _log_selection(list(ctl.logbook.records), request.query.get("logs", "")):
        await ws.send_json(["log", record.to_api()])
    for entry in _access_selection(list(ctl.monitor.access), request.query.get("accs", "")):
        await ws.send_json(["access", entry])
    ctl.logbook.listeners.append(on_log)
    ctl.monitor.access_listeners.append(on_access)
    tasks = [asyncio.create_task(_pump(ws, queue, request.transport), name="ws-pump")]
    if request.query.get("streams") not in (None, "", "0"):
        tasks.append(asyncio.create_task(_streams(ctl, queue), name="ws-streams"))
    try:
        async for msg in ws:  # the client may only close (or re-auth, ignored)
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        ctl.logbook.listeners.remove(on_log)
        ctl.monitor.access_listeners.remove(on_access)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return ws


def _access_selection(entries: list[list[Any]], spec: str) -> list[list[Any]]:
    """``accs=N`` (the last N) or ``accs=since:UNIX`` over access entries (time first)."""
    if spec.startswith("since:"):
        try:
            since = float(spec[6:])
        except ValueError:
            return []
        return [e for e in entries if e[0] >= since]
    try:
        count = int(spec)
    except ValueError:
        return []
    return entries[-count:] if count > 0 else []


async def _wait_auth(api: HttpApi, ws: web.WebSocketResponse, host: str) -> bool:
    ctl = api.ctl
    try:
        msg = await ws.receive(timeout=AUTH_TIMEOUT_S)
    except TimeoutError:
        return False
    if msg.type != WSMsgType.TEXT:
        return False
    try:
        frame = json.loads(msg.data)
    except ValueError:
        return False
    creds = frame[1] if isinstance(frame, list) and len(frame) == 2 and frame[0] == "auth" else None
    now = ctl.now()
    ok = (
        isinstance(creds, dict)
        and isinstance(creds.get("username"), str)
        and isinstance(creds.get("password"), str)
        and ctl.auth.limiter.blocked(host, now) == 0
        and ctl.auth.check_credentials(creds["username"], creds["password"], host, now)
    )
    if not ok:
        ctl.auth.limiter.failed(host, now)
        ctl.logbook.emit("AUTH", f"Failed WebSocket login from {host}")
    await ws.send_json(["auth", bool(ok)])
    return bool(ok)


async def _pump(
    ws: web.WebSocketResponse, queue: asyncio.Queue[list[Any]], transport: asyncio.Transport | None
) -> None:
    while True:
        frame = await queue.get()
        if transport is not None and transport.get_write_buffer_size() > MAX_PENDING:
            continue  # backpressure: drop
        await ws.send_json(frame)


async def _streams(ctl: Any, queue: asyncio.Queue[list[Any]]) -> None:
    last: dict[str, int] = {}
    while True:
        names = set(ctl.active_names()) | set(ctl.store.data["streams"])
        for name in sorted(names):
            status = ctl.stream_state(name) if name in ctl.active_names() else 0
            if last.get(name) != status:
                last[name] = status
                counts = ctl.monitor.stream_counts(name)
                frame = [name, status, counts["viewers"], counts["inputs"], counts["outputs"]]
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(["stream", [*frame, ctl.monitor.stream_tags(name)]])
        for gone in [n for n in last if n not in names]:
            del last[gone]
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(["stream", [gone, 0, 0, 0, 0, []]])
        await asyncio.sleep(STREAM_POLL_S)
