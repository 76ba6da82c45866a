"""Session accounting for outputs and inputs: one object per process, three calls per connection.

MistServer runs a ``MistSession`` process per session; we keep sessions in the controller
(DESIGN 1) and every program reports its connections over the UDP API::

    reporter = sessions.reporter("HTTP")                 # once per process (lazy, per loop)
    conn = await reporter.open(stream, host, token=tkn, url=url)          # viewer
    if not conn.allowed:
        ...answer 403 / close...
    conn.down += len(chunk)                              # counters: plain attributes
    conn.kicked                                          # asyncio.Event: stop now
    conn.close()                                         # on disconnect (idempotent)

``kind`` is ``"viewer"`` (default), ``"input"`` (incoming push), ``"output"`` (push out) or
``"unspecified"``. ``open`` asks the controller (``session_open``), which computes the
session id, runs USER_NEW once per session (answer cached; a denial holds 10 minutes) and
CONN_OPEN. Every second the reporter sends the counters of all its open connections in
batches (``session_update``); the reply lists connections to disconnect (``stop_sessions``,
``invalidate_sessions`` that USER_NEW now denies, ...), and the controller also pushes such
kicks to the reporter's socket at once. Connections the controller has not heard of for a
while are dropped by it, so a crashed program leaves nothing behind; connections a
restarted controller does not know are opened again (USER_NEW may then refuse them).

Without a controller (standalone programs) ``open`` allows everything after one short try.

Outputs usually call the one-stop helpers :func:`admit_viewer` (PLAY_REWRITE, session,
CONN_PLAY) and :func:`admit_push` (PUSH_REWRITE, STREAM_PUSH, input session), then
:func:`track_body` (HTTP streamed bodies) or count ``conn.down``/``conn.up`` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import itertools
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from common import control, triggers
from common.streamname import sanitize

REPORT_S = 1.0
OPEN_TIMEOUT_S = 20.0  # USER_NEW/CONN_OPEN may block up to 15 s in the controller
ABSENT_TIMEOUT_S = 0.5  # first try when standalone
ABSENT_RETRY_S = 10.0
BATCH = 400  # connections per update datagram (well under 64 KiB)
SHARED_IDLE_S = 5.0  # a request-based viewer's connection ends this long after its last request

KINDS = ("viewer", "input", "output", "unspecified")
PREFIX = {"viewer": "", "input": "I", "output": "O", "unspecified": "U"}
DEFAULT_MODES = {"viewer": 14, "input": 15, "output": 15, "unspecified": 0}
TOKEN_PARAMS = ("tkn", "sid", "sessId", "sessid", "jwt")


def ip_bytes(host: str) -> bytes:
    """The 16-byte binary form MistServer hashes (IPv4 as IPv4-mapped IPv6)."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host.encode()
    if isinstance(ip, ipaddress.IPv4Address):
        return b"\x00" * 10 + b"\xff\xff" + ip.packed
    return ip.packed


def session_id(kind: str, mode: int, stream: str, host: str, token: str, connector: str) -> str:
    """sha256 hex of (stream if mode&8) + (IP if &4) + (token if &2) + (connector if &1)."""
    digest = hashlib.sha256()
    if mode & 8:
        digest.update(stream.encode())
    if mode & 4:
        digest.update(ip_bytes(host))
    if mode & 2:
        digest.update(token.encode())
    if mode & 1:
        digest.update(connector.encode())
    return PREFIX.get(kind, "U") + digest.hexdigest()


def token_from(
    query: Mapping[str, str],
    cookies: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """The session token: ``?tkn=`` (or ``sid``/``sessId``/``jwt``), else the ``tkn`` or
    ``jwt`` cookie, else the ``X-Mist-Tkn`` header or an ``Authorization: Bearer`` token
    (a JWT, see ``controller.jwt``); empty when none."""
    for key in TOKEN_PARAMS:
        if query.get(key):
            return str(query[key])
    for name in ("tkn", "jwt"):
        if cookies and cookies.get(name):
            return str(cookies[name])
    if headers and headers.get("X-Mist-Tkn"):
        return str(headers["X-Mist-Tkn"])
    scheme, _, bearer = (headers or {}).get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and bearer.strip():
        return bearer.strip()
    return ""


def http_token(query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """:func:`token_from` for an HTTP request (lower- or mixed-case header names)."""
    lower = {k.lower(): v for k, v in headers.items()}
    cookies: dict[str, str] = {}
    for part in lower.get("cookie", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            cookies[name] = value
    found = {
        "X-Mist-Tkn": lower.get("x-mist-tkn", ""),
        "Authorization": lower.get("authorization", ""),
    }
    return token_from(query, cookies, found)


class Connection:
    """One client connection as the program sees it; counters are cumulative bytes."""

    def __init__(self, reporter: Reporter, cid: str, allowed: bool, sessid: str) -> None:
        self.reporter = reporter
        self.id = cid
        self.allowed = allowed
        self.sessid = sessid
        self.down = 0  # bytes sent to the client
        self.up = 0  # bytes received from the client
        self.packets = 0
        self.lost = 0
        self.retrans = 0
        self.position = 0  # media ms
        self.stream = ""
        self.kicked = asyncio.Event()
        self.closed = False
        self.shared = False  # reused by several requests (request-based outputs)
        self.ended = False  # the output reached the end of the data (CONN_STOP)
        self.request: dict[str, Any] = {}  # the session_open body, to open it again
        self.last_used = time.monotonic()

    def row(self) -> list[Any]:
        return [self.id, self.down, self.up, self.packets, self.lost, self.retrans, self.position]

    def kick(self) -> None:
        self.kicked.set()
        if self.shared:  # nobody holds it between requests: end it here
            self.reporter._forget_shared(self)
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.reporter._closed(self)


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(ValueError):
            obj = json.loads(data)
            if isinstance(obj, dict):
                self.reporter._received(obj)

    def error_received(self, exc: Exception) -> None:
        self.reporter._refused()


class Reporter:
    """All connections of one program (one per event loop)."""

    def __init__(self, connector: str) -> None:
        self.connector = connector
        self.conns: dict[str, Connection] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.prefix = f"{os.getpid()}-{os.urandom(3).hex()}-"
        self.absent_until = 0.0
        self.task: asyncio.Task[None] | None = None
        self.closing: list[list[Any]] = []
        self.seen_controller = False
        # (requested stream, host, token) -> (connection, stream after PLAY_REWRITE)
        self.shared: dict[tuple[str, str, str], tuple[Connection, str]] = {}

    async def _ensure(self) -> asyncio.DatagramTransport:
        if self.transport is None or self.transport.is_closing():
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Proto(self), remote_addr=control.control_address()
            )
            self.transport = transport
            self.task = asyncio.create_task(self._report_loop(), name=f"sessions-{self.connector}")
        return self.transport

    async def open(
        self,
        stream: str,
        host: str,
        *,
        token: str = "",
        url: str = "",
        kind: str = "viewer",
        connector: str | None = None,
    ) -> Connection:
        """Register a connection; ``allowed`` says whether USER_NEW/CONN_OPEN let it in."""
        cid = self.prefix + str(next(self.ids))
        connector = connector or self.connector
        request = {
            "cid": cid,
            "stream": stream,
            "host": host,
            "token": token,
            "url": url,
            "kind": kind if kind in KINDS else "unspecified",
            "connector": connector,
        }
        reply: dict[str, Any] | None = None
        if time.monotonic() >= self.absent_until:
            transport = await self._ensure()
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.waiting[cid] = future
            transport.sendto(json.dumps({"session_open": request}).encode())
            patient = control.under_controller() or self.seen_controller
            try:
                reply = await asyncio.wait_for(
                    future, OPEN_TIMEOUT_S if patient else ABSENT_TIMEOUT_S
                )
                self.seen_controller = True
            except (TimeoutError, ConnectionError):
                reply = None
                if not patient:
                    self.absent_until = time.monotonic() + ABSENT_RETRY_S
            finally:
                self.waiting.pop(cid, None)
        if reply is None:  # nobody decides: allow, count nothing
            conn = Connection(self, cid, True, "")
            conn.closed = True
            return conn
        conn = Connection(self, cid, bool(reply.get("allow", True)), str(reply.get("sessid", "")))
        conn.stream = stream
        conn.request = request
        if conn.allowed:
            self.conns[cid] = conn
        else:
            conn.closed = True
        return conn

    def _closed(self, conn: Connection) -> None:
        if self.conns.pop(conn.id, None) is not None:
            self.closing.append([*conn.row(), 1] if conn.ended else conn.row())
            if self.transport is not None and not self.transport.is_closing():
                self._send({"session_close": {"conns": self.closing}})
                self.closing = []

    def _send(self, obj: dict[str, Any]) -> None:
        if self.transport is not None:
            with contextlib.suppress(OSError):
                self.transport.sendto(json.dumps(obj).encode())

    def _received(self, obj: dict[str, Any]) -> None:
        opened = obj.get("session_open")
        if isinstance(opened, dict):
            cid = str(opened.get("cid"))
            future = self.waiting.pop(cid, None)
            if future is not None and not future.done():
                future.set_result(opened)
            elif future is None and cid in self.conns and not opened.get("allow", True):
                self.conns[cid].kick()  # re-opened after a controller restart: now refused
        for key in ("session_update", "session_kick"):
            body = obj.get(key)
            if isinstance(body, dict):
                for cid in body.get("disconnect", []):
                    conn = self.conns.get(cid) if isinstance(cid, str) else None
                    if conn is not None:
                        conn.kick()
                for cid in body.get("unknown", []):  # the controller restarted
                    conn = self.conns.get(cid) if isinstance(cid, str) else None
                    if conn is not None and conn.request:
                        self._send({"session_open": conn.request})

    def _refused(self) -> None:
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ConnectionRefusedError("no controller"))

    def _forget_shared(self, conn: Connection) -> None:
        for key in [k for k, (c, _) in self.shared.items() if c is conn]:
            del self.shared[key]

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_S)
            idle = time.monotonic() - SHARED_IDLE_S
            for key, (conn, _) in list(self.shared.items()):
                if conn.last_used < idle:
                    del self.shared[key]
                    conn.close()
            rows = [c.row() for c in self.conns.values()]
            for start in range(0, len(rows), BATCH):
                self._send({"session_update": {"conns": rows[start : start + BATCH]}})

    async def aclose(self) -> None:
        for conn in list(self.conns.values()):
            conn.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.transport is not None:
            self.transport.close()


@dataclass
class Admission:
    """What an output does with a new viewer or publisher: serve ``stream`` and report
    through ``conn``, or refuse (``refused`` says why; ``conn`` is then None)."""

    stream: str
    conn: Connection | None
    refused: str = ""


async def admit_viewer(
    stream: str, host: str, connector: str, url: str, token: str = "", reuse: bool = False
) -> Admission:
    """PLAY_REWRITE (a blocking answer renames the stream, "" refuses), then the session
    (USER_NEW once per session, CONN_OPEN), then CONN_PLAY.

    ``reuse`` (request-based outputs: HLS/CMAF playlists, segments, parts): requests of
    the same stream, host and token share one connection until it is idle for
    :data:`SHARED_IDLE_S` or kicked; the caller must not close it. This keeps the
    per-request cost a dict lookup. A request without a token joins the most recent
    viewer of that stream and host (playlists do not repeat ``?tkn=`` in segment URLs)."""
    rep = reporter(connector)
    if reuse:
        found = rep.shared.get((stream, host, token))
        if found is None and not token:
            # Segment URLs in our playlists carry no token: a tokenless request joins the
            # viewer on this stream and host that asked most recently.
            candidates = [v for (s, h, _), v in rep.shared.items() if s == stream and h == host]
            found = max(candidates, key=lambda v: v[0].last_used, default=None)
        if found is not None and not found[0].closed and not found[0].kicked.is_set():
            found[0].last_used = time.monotonic()
            return Admission(found[1], found[0])
    requested = stream
    renamed = await triggers.fire_async("PLAY_REWRITE", [stream, host, connector, url], stream)
    if renamed is not None:
        if not sanitize(renamed):
            return Admission(stream, None, "refused by PLAY_REWRITE")
        stream = sanitize(renamed)
    conn = await rep.open(stream, host, token=token, url=url)
    if not conn.allowed:
        return Admission(stream, None, "access denied (USER_NEW / CONN_OPEN)")
    if not await triggers.allowed_async("CONN_PLAY", [stream, host, connector, url], stream):
        conn.close()
        return Admission(stream, None, "refused by CONN_PLAY")
    if reuse and not conn.closed:
        conn.shared = True
        rep.shared[(requested, host, token)] = (conn, stream)
    return Admission(stream, conn)


async def admit_push(
    stream: str, host: str, connector: str, url: str, token: str = ""
) -> Admission:
    """PUSH_REWRITE (push URL, host, stream -> new stream name, "" refuses), STREAM_PUSH,
    then an input session. RTMP calls RTMP_PUSH_REWRITE itself first (it rewrites URLs)."""
    renamed = await triggers.fire_async("PUSH_REWRITE", [url, host, stream], stream)
    if renamed is not None:
        if not sanitize(renamed):
            return Admission(stream, None, "refused by PUSH_REWRITE")
        stream = sanitize(renamed)
    if not await triggers.allowed_async("STREAM_PUSH", [stream, host, connector, url], stream):
        return Admission(stream, None, "refused by STREAM_PUSH")
    conn = await reporter(connector).open(stream, host, token=token, url=url, kind="input")
    if not conn.allowed:
        return Admission(stream, None, "access denied (CONN_OPEN)")
    return Admission(stream, conn)


_reporters: dict[tuple[int, str], Reporter] = {}


def reporter(connector: str) -> Reporter:
    """The reporter of this event loop for ``connector`` (created on first use)."""
    key = (id(asyncio.get_running_loop()), connector)
    found = _reporters.get(key)
    if found is None:
        found = _reporters[key] = Reporter(connector)
    return found


class CountingSink:
    """Wraps a streamed-body sink (``write``/``drain``/``closed``): every byte written is
    counted in ``conn.down``, and a kicked connection reports itself closed."""

    def __init__(self, sink: Any, conn: Connection) -> None:
        self.sink = sink
        self.conn = conn

    def write(self, data: bytes) -> None:
        self.conn.down += len(data)
        self.sink.write(data)

    async def drain(self) -> None:
        await self.sink.drain()

    @property
    def closed(self) -> bool:
        return bool(self.sink.closed) or self.conn.kicked.is_set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)


async def close_on_kick(conn: Connection, close: Callable[[], Any]) -> None:
    """Wait for a kick of ``conn``, then call ``close`` (e.g. the transport's)."""
    await conn.kicked.wait()
    close()


def track_body(
    body: Callable[[Any], Awaitable[None]], conn: Connection
) -> Callable[[Any], Awaitable[None]]:
    """A streamed HTTP body that counts its bytes, stops on a kick and closes ``conn``
    (marked ``ended`` when the body finished while the viewer was still connected)."""

    async def run(sink: Any) -> None:
        closer = getattr(sink, "close", None)
        watcher = (
            asyncio.create_task(close_on_kick(conn, closer), name=f"kick-{conn.id}")
            if callable(closer)
            else None
        )
        try:
            counted = CountingSink(sink, conn)
            await body(counted)
            # the body ran out with the viewer still there: the end of the data (a shared
            # connection is one HLS/CMAF viewer's many requests: none of them is the end)
            conn.ended = not counted.closed and not conn.shared
        finally:
            if watcher is not None:
                watcher.cancel()
            if not conn.shared:
                conn.close()

    return run
