"""Sessions: every connection reported by a program, bundled as MistServer does (reference 6.8).

A connection (``cid``, chosen by the reporting program) belongs to one session whose id is
``common.sessions.session_id`` under the configured ``session*Mode`` (viewers 14 =
stream + IP + token; inputs ``I``, outputs ``O``, unspecified ``U`` prefixes). A viewer
session is decided once by USER_NEW (payload: stream, IP, token, connector, URL, session
id, JWT valid); the answer is kept for the session's life, a denial for 600 s (or until
``invalidate_sessions``). CONN_OPEN may refuse each connection; CONN_CLOSE follows it,
after CONN_STOP when the output reached the end of the data (a whole VoD file sent, a
live stream that ended).

Kicks (``stop_sessions``, ``stop_sessid``, ``stop_tag``, a USER_NEW that turns false on
``invalidate_sessions``) mark connections; the owning program learns at once (a datagram
to its reporter socket) and again in the reply to its next counter report.

A session ends :attr:`SessionTable.linger` seconds (MistServer's STATS_DELAY, 15 s) after
its last connection: then USER_END fires and the access log gets one line. Connections
whose program stopped reporting for :data:`STALE_S` are closed by us.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from common.defaults import SESSION_DENY_S, STATS_DELAY_S
from common.sessions import DEFAULT_MODES, KINDS, session_id
from controller import jwt

if TYPE_CHECKING:
    from controller.triggers import TriggerService

STALE_S = 10.0
# A session counts as current this long after its last connection closed: request-based
# viewers (HLS/CMAF segment requests) are between two connections most of the time.
CURRENT_GRACE_S = 5.0
HISTORY_S = 60  # per-session samples kept for ``clients`` with a past ``time``
MODE_KEYS = {
    "viewer": "sessionViewerMode",
    "input": "sessionInputMode",
    "output": "sessionOutputMode",
    "unspecified": "sessionUnspecifiedMode",
}


@dataclass
class Conn:
    cid: str
    sessid: str
    kind: str
    stream: str
    host: str
    token: str
    connector: str
    url: str
    addr: tuple[str, int]
    opened: float  # unix
    seen: float  # monotonic of the last report
    down: int = 0
    up: int = 0
    packets: int = 0
    lost: int = 0
    retrans: int = 0
    position: int = 0
    kicked: bool = False


@dataclass
class StreamAcc:
    """Cumulative numbers of one stream since it became active (reset at STREAM_END)."""

    views: int = 0  # viewer sessions started
    viewseconds: float = 0.0
    down: int = 0
    up: int = 0
    packets: int = 0
    lost: int = 0
    retrans: int = 0
    inputs: int = 0  # input sessions started
    outputs: int = 0


@dataclass
class Session:
    sessid: str
    kind: str
    stream: str
    host: str
    token: str
    connector: str
    started: float  # unix
    allowed: bool = True
    conns: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    down: int = 0  # bytes of every connection, closed ones included
    up: int = 0
    packets: int = 0
    lost: int = 0
    retrans: int = 0
    position: int = 0
    idle_since: float | None = None  # monotonic; None while a connection is open
    hosts: dict[str, float] = field(default_factory=dict)  # name -> connection-seconds
    connectors: dict[str, float] = field(default_factory=dict)
    streams: dict[str, float] = field(default_factory=dict)
    history: deque[tuple[int, int, int, int, int, int, int]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_S)
    )  # (unix second, down, up, packets, lost, retrans, position)

    def duration(self, now: float) -> int:
        return max(0, int(now - self.started))

    def current(self, mono: float) -> bool:
        """Connected now, or between two requests of a request-based viewer."""
        return bool(self.conns) or (
            self.idle_since is not None and mono - self.idle_since < CURRENT_GRACE_S
        )


class SessionTable:
    def __init__(
        self,
        config: Callable[[], dict[str, Any]],
        triggers: TriggerService,
        send: Callable[[tuple[str, int], dict[str, Any]], None],
        on_end: Callable[[Session, float], None],
        jwks: Callable[[], Any] = list,
        url_keys: Callable[[], list[jwt.Key]] = list,
    ) -> None:
        self._config = config  # -> the "config" section
        self._jwks = jwks  # -> the top-level "jwks" list
        self._url_keys = url_keys  # -> the keys fetched from JWKS URLs in that list
        self._keys_from: Any = None
        self._keys: list[jwt.Key] = []
        self.triggers = triggers
        self._send = send  # datagram to a reporter
        self._on_end = on_end  # access log, WebSocket frame
        self.conns: dict[str, Conn] = {}
        self.sessions: dict[str, Session] = {}
        self.denied: dict[str, tuple[float, str]] = {}  # sessid -> (monotonic expiry, stream)
        self.pending: dict[str, asyncio.Future[bool]] = {}  # USER_NEW in flight
        self.stream_tags: dict[str, set[str]] = {}  # runtime tags (tag_stream)
        self.accs: dict[str, StreamAcc] = {}
        self.linger = float(STATS_DELAY_S)
        self.ended = 0  # sessions ended since start
        self.cached_denials = 0
        self.started_by_kind = dict.fromkeys(KINDS, 0)
        # bytes/packets of every connection since the controller started (Prometheus)
        self.total = {"down": 0, "up": 0, "packets": 0, "lost": 0, "retrans": 0}

    # ---- opening ----------------------------------------------------------------------------
    def mode(self, kind: str) -> int:
        value = self._config().get(MODE_KEYS.get(kind, "sessionUnspecifiedMode"))
        return value if isinstance(value, int) else DEFAULT_MODES.get(kind, 0)

    async def open(self, req: dict[str, Any], addr: tuple[str, int]) -> dict[str, Any]:
        cid = str(req.get("cid", ""))
        kind = req.get("kind") if req.get("kind") in KINDS else "unspecified"
        stream, host = str(req.get("stream", "")), str(req.get("host", ""))
        token, connector = str(req.get("token", "")), str(req.get("connector", ""))
        url = str(req.get("url", ""))
        sessid = session_id(str(kind), self.mode(str(kind)), stream, host, token, connector)
        reply = {"cid": cid, "sessid": sessid, "allow": False}
        if not cid:
            return reply
        if not await self._session_allowed(sessid, str(kind), stream, host, token, connector, url):
            return reply
        lines = [stream, host, connector, url]
        outcome = await self.triggers.fire("CONN_OPEN", lines, stream)
        if not outcome.allow:
            return reply
        now, mono = time.time(), time.monotonic()
        sess = self.sessions.get(sessid)
        if sess is None:
            sess = Session(sessid, str(kind), stream, host, token, connector, now)
            self.sessions[sessid] = sess
            self.started_by_kind[str(kind)] += 1
            acc = self.accs.setdefault(stream, StreamAcc())
            if kind == "viewer":
                acc.views += 1
            elif kind == "input":
                acc.inputs += 1
            elif kind == "output":
                acc.outputs += 1
        sess.conns.add(cid)
        sess.idle_since = None
        sess.connector = connector
        self.conns[cid] = Conn(
            cid, sessid, str(kind), stream, host, token, connector, url, addr, now, mono
        )
        reply["allow"] = True
        return reply

    async def _session_allowed(
        self, sessid: str, kind: str, stream: str, host: str, token: str, connector: str, url: str
    ) -> bool:
        denied = self.denied.get(sessid)
        if denied is not None:
            if denied[0] > time.monotonic():
                self.cached_denials += 1
                return False
            del self.denied[sessid]
        sess = self.sessions.get(sessid)
        if sess is not None:
            return sess.allowed
        if kind != "viewer":
            return True
        if jwt.is_jws(token) and jwt.validate(token, self.keys(), stream, host):
            return True  # a valid JWT admits the session without USER_NEW
        if not self.triggers.configured("USER_NEW", stream):
            return True
        waiting = self.pending.get(sessid)
        if waiting is not None:  # another connection of this session is asking already
            return await asyncio.shield(waiting)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pending[sessid] = future
        try:
            ok = await self._user_new(sessid, stream, host, token, connector, url)
            future.set_result(ok)
        finally:
            self.pending.pop(sessid, None)
        return ok

    def keys(self) -> list[jwt.Key]:
        """The configured JWKs (parsed again only when the config's list changed) and those
        fetched from its JWKS URLs."""
        raw = self._jwks()
        if raw is not self._keys_from:
            self._keys, self._keys_from = jwt.parse_keys(raw), raw
        fetched = self._url_keys()
        return self._keys + fetched if fetched else self._keys

    async def _user_new(
        self, sessid: str, stream: str, host: str, token: str, connector: str, url: str
    ) -> bool:
        lines = [stream, host, token, connector, url, sessid, "false"]
        outcome = await self.triggers.fire("USER_NEW", lines, stream)
        if not outcome.allow:
            self.denied[sessid] = (time.monotonic() + SESSION_DENY_S, stream)
        return outcome.allow

    # ---- counters ---------------------------------------------------------------------------
    def update(
        self, rows: Any, closing: bool = False, unknown: list[str] | None = None
    ) -> list[str]:
        """Apply ``[cid, down, up, packets, lost, retrans, position]`` rows; returns kicks.
        Connections we do not know (we restarted) are appended to ``unknown``. A closing
        row may end in ``1``: the output reached the end of the data (CONN_STOP)."""
        kicks: list[str] = []
        mono = time.monotonic()
        if not isinstance(rows, list):
            return kicks
        for row in rows:
            if not (isinstance(row, list) and row and isinstance(row[0], str)):
                continue
            conn = self.conns.get(row[0])
            if conn is None:
                if unknown is not None and not closing:
                    unknown.append(row[0])
                continue
            values = row[1:7]
            if len(values) != 6 or not all(type(v) is int and v >= 0 for v in values):
                values = [v if isinstance(v, int) and v >= 0 else 0 for v in values]
                values += [0] * (6 - len(values))
            self._apply(conn, *values)
            conn.seen = mono
            if closing:
                self.close(conn.cid, ended=len(row) > 7 and row[7] == 1)
            elif conn.kicked:
                kicks.append(conn.cid)
        return kicks

    def _apply(
        self, conn: Conn, down: int, up: int, packets: int, lost: int, retrans: int, pos: int
    ) -> None:
        # Counters are cumulative per connection; a smaller value (a reordered datagram)
        # changes nothing.
        conn.position = pos
        d_down = down - conn.down if down > conn.down else 0
        d_up = up - conn.up if up > conn.up else 0
        d_pkt = packets - conn.packets if packets > conn.packets else 0
        d_lost = lost - conn.lost if lost > conn.lost else 0
        d_re = retrans - conn.retrans if retrans > conn.retrans else 0
        sess = self.sessions.get(conn.sessid)
        if sess is not None:
            sess.position = pos
        if not (d_down or d_up or d_pkt or d_lost or d_re):
            return
        conn.down += d_down
        conn.up += d_up
        conn.packets += d_pkt
        conn.lost += d_lost
        conn.retrans += d_re
        total = self.total
        total["down"] += d_down
        total["up"] += d_up
        total["packets"] += d_pkt
        total["lost"] += d_lost
        total["retrans"] += d_re
        acc = self.accs.get(conn.stream)
        if acc is None:
            acc = self.accs[conn.stream] = StreamAcc()
        for target in (sess, acc):
            if target is not None:
                target.down += d_down
                target.up += d_up
                target.packets += d_pkt
                target.lost += d_lost
                target.retrans += d_re

    def close(self, cid: str, ended: bool = False) -> None:
        conn = self.conns.pop(cid, None)
        if conn is None:
            return
        if ended:  # MistServer's payload: name, host, connector and an empty line
            self.triggers.fire_background(
                "CONN_STOP", [conn.stream, conn.host, conn.connector, ""], conn.stream
            )
        self.triggers.fire_background(
            "CONN_CLOSE", [conn.stream, conn.host, conn.connector, conn.url], conn.stream
        )
        sess = self.sessions.get(conn.sessid)
        if sess is not None:
            secs = max(0.0, time.time() - conn.opened)  # connection-seconds, for USER_END
            for table, key in (
                (sess.hosts, conn.host),
                (sess.connectors, conn.connector),
                (sess.streams, conn.stream),
            ):
                table[key] = table.get(key, 0.0) + secs
            sess.conns.discard(cid)
            if not sess.conns:
                sess.idle_since = time.monotonic()

    # ---- periodic ---------------------------------------------------------------------------
    def tick(self, now: float, mono: float, dt: float) -> None:
        """Once a second: stale connections, per-second samples, ended sessions."""
        for cid in [c.cid for c in self.conns.values() if mono - c.seen > STALE_S]:
            self.close(cid)
        second = int(now)
        viewers_by_stream: dict[str, int] = {}
        for sess in list(self.sessions.values()):
            if sess.current(mono):
                if sess.kind == "viewer":
                    viewers_by_stream[sess.stream] = viewers_by_stream.get(sess.stream, 0) + 1
                sess.history.append(
                    (
                        second,
                        sess.down,
                        sess.up,
                        sess.packets,
                        sess.lost,
                        sess.retrans,
                        sess.position,
                    )
                )
            if (
                not sess.conns
                and sess.idle_since is not None
                and mono - sess.idle_since >= self.linger
            ):
                self._end(sess, now)
        for stream, count in viewers_by_stream.items():
            self.accs.setdefault(stream, StreamAcc()).viewseconds += count * dt
        for sessid in [s for s, (until, _) in self.denied.items() if until <= mono]:
            del self.denied[sessid]

    def _end(self, sess: Session, now: float) -> None:
        del self.sessions[sess.sessid]
        self.ended += 1
        if sess.kind == "viewer":
            secs = sess.duration(now)
            self.triggers.fire_background(
                "USER_END",
                [
                    sess.token,
                    ",".join(sess.streams) or sess.stream,
                    ",".join(sess.connectors) or sess.connector,
                    ",".join(sess.hosts) or sess.host,
                    str(secs),
                    str(sess.up),
                    str(sess.down),
                    ",".join(sorted(sess.tags)),
                    _secs(sess.hosts),
                    _secs(sess.connectors),
                    _secs(sess.streams),
                    sess.sessid,
                ],
                sess.stream,
            )
        self._on_end(sess, now)

    def end_all(self, now: float) -> None:
        for cid in list(self.conns):
            self.close(cid)
        for sess in list(self.sessions.values()):
            self._end(sess, now)

    # ---- control ----------------------------------------------------------------------------
    def kick(self, conns: list[Conn]) -> int:
        by_addr: dict[tuple[str, int], list[str]] = {}
        for conn in conns:
            conn.kicked = True
            by_addr.setdefault(conn.addr, []).append(conn.cid)
        for addr, cids in by_addr.items():
            self._send(addr, {"session_kick": {"disconnect": cids}})
        return len(conns)

    def conns_of(self, pred: Callable[[Conn], bool]) -> list[Conn]:
        return [c for c in self.conns.values() if pred(c)]

    def stop_streams(self, spec: Any) -> int:
        """``stop_sessions``: a name, a list of names or ``{stream: protocol}``."""
        if isinstance(spec, dict):
            wanted = {k: v for k, v in spec.items() if isinstance(k, str)}
            return self.kick(
                self.conns_of(
                    lambda c: (
                        c.stream in wanted
                        and (not wanted[c.stream] or wanted[c.stream] == c.connector)
                    )
                )
            )
        names = set(_strs(spec))
        return self.kick(self.conns_of(lambda c: c.stream in names))

    def stop_sessids(self, spec: Any) -> int:
        ids = set(_strs(spec))
        return self.kick(self.conns_of(lambda c: c.sessid in ids))

    def stop_tags(self, spec: Any) -> int:
        tags = set(_strs(spec))
        ids = {s.sessid for s in self.sessions.values() if s.tags & tags}
        return self.kick(self.conns_of(lambda c: c.sessid in ids))

    def tag_sessids(self, spec: Any) -> None:
        if isinstance(spec, dict):
            for sessid, tags in spec.items():
                sess = self.sessions.get(sessid)
                if sess is not None:
                    sess.tags.update(_strs(tags))

    async def invalidate(self, spec: Any) -> int:
        """Re-run USER_NEW for the viewer sessions of the given streams (all if ``true``)."""
        names = None if spec is True or spec is None or spec == "" else set(_strs(spec))

        def hit(stream: str) -> bool:
            return names is None or stream in names

        for sessid in [s for s, (_, stream) in self.denied.items() if hit(stream)]:
            del self.denied[sessid]
        targets = [
            s for s in self.sessions.values() if s.kind == "viewer" and hit(s.stream) and s.conns
        ]
        kicked = 0
        for sess in targets:
            if not self.triggers.configured("USER_NEW", sess.stream):
                continue
            conn = self.conns.get(next(iter(sess.conns)))
            url = conn.url if conn is not None else ""
            ok = await self._user_new(
                sess.sessid, sess.stream, sess.host, sess.token, sess.connector, url
            )
            sess.allowed = ok
            if not ok:
                kicked += self.kick([c for c in self.conns.values() if c.sessid == sess.sessid])
        return kicked

    def tags_of(self, stream: str, configured: list[str]) -> list[str]:
        extra = self.stream_tags.get(stream, set())
        return sorted(set(configured) | extra)


def _strs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    if isinstance(value, dict):
        return [k for k in value if isinstance(k, str)]
    return []


def _secs(values: dict[str, float]) -> str:
    return ",".join(f"{k}:{int(v)}" for k, v in values.items())
