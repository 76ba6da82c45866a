"""Statistics, triggers and sessions of the running controller, and their API commands.

:class:`Monitor` owns the :class:`~controller.triggers.TriggerService` and the
:class:`~controller.sessions.SessionTable`, and runs a 1 s tick (MistServer's
``runStats``): session bookkeeping, the per-second totals history (600 s,
``STAT_CUTOFF``), stream state changes (STREAM_READY, STREAM_BUFFER, STREAM_END) and the
access log. Children reach it over the UDP API with ``session_open`` /
``session_update`` / ``session_close`` (``common.sessions``) and ``trigger_fire``
(``common.triggers``); :meth:`Monitor.handle_datagram` answers those before the generic
API path because they are the hot path and need the sender's address.

Commands added to the API: ``clients``, ``totals``, ``stats_streams``,
``invalidate_sessions``, ``stop_sessions``, ``stop_sessid``, ``stop_tag``, ``tag_sessid``,
``tag_stream``, ``untag_stream``, ``stream_tags``, ``trigger_stat``, ``trigger_fail`` and
our ``trigger_stats`` (per-trigger ``{count, ms, fails}``) and ``stats_timing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from common.streamname import base_name
from controller.jwks_urls import JwksUrls
from controller.lifecycle import Lifecycle
from controller.sessions import Session, SessionTable, StreamAcc
from controller.triggers import TriggerService

if TYPE_CHECKING:
    from controller.server import Controller

STAT_CUTOFF = 600
TICK_S = 1.0
CLIENT_FIELDS = (
    "host",
    "stream",
    "protocol",
    "conntime",
    "position",
    "down",
    "up",
    "downbps",
    "upbps",
    "sessid",
    "pktcount",
    "pktlost",
    "pktretransmit",
)
TOTAL_FIELDS = ("clients", "inputs", "outputs", "downbps", "upbps", "perc_lost", "perc_retrans")
STAT_FIELDS = (
    "viewers",
    "inputs",
    "outputs",
    "clients",
    "unspecified",
    "views",
    "viewseconds",
    "upbytes",
    "downbytes",
    "packsent",
    "packloss",
    "packretrans",
)
COUNT_KEYS = ("viewers", "inputs", "outputs", "unspecified")
KIND_KEYS = {"viewer": "viewers", "input": "inputs", "output": "outputs"}
UDP_KEYS = (
    "session_open",
    "session_update",
    "session_close",
    "trigger_fire",
    "default_stream",
    "trigger_names",
    "push_status_update",
)

# One second of totals: (stream, connector, kind) -> [sessions, down, up, pkts, lost, retrans]
Sample = dict[tuple[str, str, str], list[int]]


class Monitor:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.triggers = TriggerService(
            lambda: ctl.store.data["config"].get("triggers"),
            self.stream_tags,
            lambda: (ctl.iid, str(ctl.config_view().get("serverid", ""))),
            ctl.logbook.emit,
        )
        self.jwks_urls = JwksUrls(lambda: ctl.store.data.get("jwks"), ctl.logbook.emit)
        self.sessions = SessionTable(
            lambda: ctl.store.data["config"],
            self.triggers,
            self._send,
            self._session_ended,
            lambda: ctl.store.data.get("jwks"),
            self.jwks_urls.keys,
        )
        self.events = Lifecycle(ctl, self.triggers)  # controller-side triggers
        self.history: deque[tuple[int, Sample]] = deque(maxlen=STAT_CUTOFF)
        self._last: dict[str, tuple[int, int, int, int, int]] = {}  # per session, last tick
        self.access: deque[list[Any]] = deque(maxlen=1000)
        self.access_listeners: list[Callable[[list[Any]], None]] = []
        self.stream_status: dict[str, int] = {}
        self.input_types: dict[str, str] = {}  # stream -> input type seen last
        self.stream_listeners: list[Callable[[list[Any]], None]] = []  # WebSocket frames
        self.active: set[str] = set()  # streams seen active since their last STREAM_END
        self.bps: dict[str, tuple[int, int]] = {}  # sessid -> (down, up) bytes/s
        self._task: asyncio.Task[None] | None = None
        self._last_tick = time.monotonic()
        # How long our own work takes (ms), for ``stats_timing`` and the bench.
        self.tick_ms: deque[float] = deque(maxlen=600)
        self.update_ms: deque[float] = deque(maxlen=6000)

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        linger = self.ctl.store.data["config"].get("session_linger")
        if isinstance(linger, (int, float)) and linger >= 0:
            self.sessions.linger = float(linger)
        self._task = asyncio.create_task(self._loop(), name="stats")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sessions.end_all(time.time())
        await self.jwks_urls.close()
        await self.triggers.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.tick()
            except Exception as exc:  # statistics must never stop the controller
                self.ctl.logbook.emit("ERROR", f"stats tick failed: {type(exc).__name__}: {exc}")

    def tick(self) -> None:
        now, mono = time.time(), time.monotonic()
        started = time.perf_counter()
        dt, self._last_tick = mono - self._last_tick, mono
        linger = self.ctl.store.data["config"].get("session_linger")
        if isinstance(linger, (int, float)) and linger >= 0:
            self.sessions.linger = float(linger)
        self.jwks_urls.check(mono)
        self.sessions.tick(now, mono, dt)
        self._sample(int(now), dt)
        self._watch_streams()
        self.tick_ms.append((time.perf_counter() - started) * 1000)

    def timing(self) -> dict[str, float]:
        """p50/p99 of the stats tick and of counter-report handling, in ms."""
        out: dict[str, float] = {}
        for name, values in (("tick", self.tick_ms), ("update", self.update_ms)):
            ordered = sorted(values)
            for label, q in (("p50", 0.5), ("p99", 0.99)):
                value = ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0
                out[f"{name}_{label}_ms"] = round(value, 3)
        return out

    def _sample(self, second: int, dt: float) -> None:
        """One second of totals: per (stream, connector, kind) the current sessions and the
        bytes/packets reported since the previous tick; per session its bytes/s."""
        sample: Sample = {}
        last_all, fresh = self._last, {}
        scale = dt if dt > 0 else 1.0
        mono = time.monotonic()
        for sid, sess in self.sessions.sessions.items():
            if not sess.current(mono):
                continue
            now_vals = (sess.down, sess.up, sess.packets, sess.lost, sess.retrans)
            fresh[sid] = now_vals
            last = last_all.get(sid)
            if last is None:
                deltas = now_vals
            else:  # counters only grow
                deltas = (
                    now_vals[0] - last[0],
                    now_vals[1] - last[1],
                    now_vals[2] - last[2],
                    now_vals[3] - last[3],
                    now_vals[4] - last[4],
                )
            self.bps[sid] = (int(deltas[0] / scale), int(deltas[1] / scale))
            key = (sess.stream, sess.connector, sess.kind)
            row = sample.get(key)
            if row is None:
                sample[key] = [1, *deltas]
            else:
                row[0] += 1
                row[1] += deltas[0]
                row[2] += deltas[1]
                row[3] += deltas[2]
                row[4] += deltas[3]
                row[5] += deltas[4]
        self._last = fresh
        for gone in [s for s in self.bps if s not in fresh]:
            del self.bps[gone]
        self.history.append((second, sample))

    # ---- stream state ------------------------------------------------------------------------
    def counts_by_stream(self) -> dict[str, dict[str, int]]:
        """Current sessions per stream and kind, in one pass over the sessions (views
        of many streams use this instead of :meth:`stream_counts` per stream)."""
        out: dict[str, dict[str, int]] = {}
        mono = time.monotonic()
        for sess in self.sessions.sessions.values():
            if sess.stream and sess.current(mono):
                counts = out.get(sess.stream)
                if counts is None:
                    counts = out[sess.stream] = dict.fromkeys(COUNT_KEYS, 0)
                counts[KIND_KEYS.get(sess.kind, "unspecified")] += 1
        return out

    def stream_counts(
        self, stream: str, by_stream: dict[str, dict[str, int]] | None = None
    ) -> dict[str, int]:
        found = (self.counts_by_stream() if by_stream is None else by_stream).get(stream)
        counts = dict(found) if found else dict.fromkeys(COUNT_KEYS, 0)
        if not counts["inputs"] and self.ctl.supervisor.find_input(stream) is not None:
            counts["inputs"] = 1  # the input process itself (a file or pull input)
        return counts

    def _watch_streams(self) -> None:
        ctl = self.ctl
        active = set(ctl.active_names())
        with_conns = {c.stream for c in self.sessions.conns.values() if c.stream}
        for name in sorted(active | set(self.stream_status)):
            status = ctl.stream_state(name) if name in active else 0
            old = self.stream_status.get(name, 0)
            if status != old:
                self.stream_status[name] = status
                self._status_changed(name, old, status)
            if status == 0 and name in self.stream_status:
                del self.stream_status[name]
        self.active |= active | with_conns
        for name in sorted(self.active - active - with_conns):
            self.active.discard(name)
            acc = self.sessions.accs.pop(name, StreamAcc())
            self.triggers.fire_background(
                "STREAM_END",
                [
                    name,
                    str(acc.down),
                    str(acc.up),
                    str(acc.views),
                    str(acc.inputs),
                    str(acc.outputs),
                    str(int(acc.viewseconds)),
                ],
                name,
            )

    def _status_changed(self, name: str, old: int, status: int) -> None:
        child = self.ctl.supervisor.find_input(name)
        if child is not None:  # remembered: the input may be gone when the state drops
            self.input_types[name] = child.spec.program.removeprefix("MistIn")
        input_type = self.input_types.get(name, "")
        if status == 0:
            self.input_types.pop(name, None)
        # STREAM_BUFFER comes from the live buffer itself (inputs.buffer_events).
        if status == 4 and self.triggers.configured("STREAM_READY", name):
            self.triggers.spawn(self._stream_ready(name, input_type))
        tags = self.stream_tags(name)
        counts = self.stream_counts(name)
        frame = [name, status, counts["viewers"], counts["inputs"], counts["outputs"], tags]
        for listener in list(self.stream_listeners):
            listener(frame)

    async def _stream_ready(self, name: str, input_type: str) -> None:
        """STREAM_READY; a handler answering false shuts the input down (SIGTERM)."""
        outcome = await self.triggers.fire("STREAM_READY", [name, input_type], name)
        child = self.ctl.supervisor.find_input(name)
        if outcome.allow or child is None or not child.pid:
            return
        self.ctl.logbook.emit("INFO", "STREAM_READY refused: shutting the input down", name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)

    def stream_tags(self, stream: str) -> list[str]:
        conf = self.ctl.store.data["streams"].get(base_name(stream), {})
        tags = conf.get("tags", []) if isinstance(conf, dict) else []
        configured = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
        return self.sessions.tags_of(stream, configured)

    # ---- sessions: access log ---------------------------------------------------------------
    def _session_ended(self, sess: Session, now: float) -> None:
        entry = [
            int(now),
            sess.sessid,
            sess.stream,
            sess.connector,
            sess.host,
            sess.duration(now),
            sess.up,
            sess.down,
            ",".join(sorted(sess.tags)),
        ]
        self.access.append(entry)
        for listener in list(self.access_listeners):
            listener(entry)
        target = self.ctl.store.data["config"].get("accesslog", "LOG")
        if not isinstance(target, str) or not target:
            return
        message = (
            f"Session {sess.sessid} ended: {sess.connector} from {sess.host} on stream "
            f"{sess.stream}, {entry[5]} s, {sess.up} B up, {sess.down} B down"
            + (f", tags {entry[8]}" if entry[8] else "")
        )
        if target == "LOG":
            self.ctl.logbook.emit("ACCS", message, sess.stream)
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        try:
            with open(target, "a", encoding="utf-8") as out:
                out.write(f"[{stamp}] {message}\n")
        except OSError as exc:
            self.ctl.logbook.emit("WARN", f"access log {target}: {exc.strerror}")

    # ---- UDP hot path -----------------------------------------------------------------------
    def _send(self, addr: tuple[str, int], obj: dict[str, Any]) -> None:
        udp = self.ctl.udp
        transport = udp.transport if udp is not None else None
        if transport is not None:
            with contextlib.suppress(OSError):
                transport.sendto(json.dumps(obj).encode(), addr)

    def handles(self, request: dict[str, Any]) -> bool:
        return len(request) == 1 and next(iter(request)) in UDP_KEYS

    async def handle_datagram(
        self, request: dict[str, Any], addr: tuple[str, int]
    ) -> dict[str, Any] | None:
        """Answer one of :data:`UDP_KEYS`; ``None`` means no reply."""
        key, body = next(iter(request.items()))
        if not isinstance(body, dict):
            return {"error": f"{key} needs an object", "LTS": 1}
        if key == "session_update":
            started = time.perf_counter()
            unknown: list[str] = []
            kicks = self.sessions.update(body.get("conns"), unknown=unknown)
            self.update_ms.append((time.perf_counter() - started) * 1000)
            reply: dict[str, Any] = {"disconnect": kicks}
            if unknown:  # we restarted: the reporter opens them again
                reply["unknown"] = unknown
            return {"session_update": reply}
        if key == "session_close":
            self.sessions.update(body.get("conns"), closing=True)
            return None
        if key == "session_open":
            return {"session_open": await self.sessions.open(body, addr)}
        if key == "default_stream":
            return await self.events.default_stream(body)
        if key == "push_status_update":
            from controller import pushes

            pushes.attach(self.ctl).status_update(body)
            return None
        if key == "trigger_names":
            names = sorted(self.triggers.names())
            return {"trigger_names": {"names": names, "rid": body.get("rid")}}
        return await self._trigger_fire(body)

    async def _trigger_fire(self, body: dict[str, Any]) -> dict[str, Any] | None:
        name = body.get("name")
        payload = body.get("payload")
        stream = body.get("stream") if isinstance(body.get("stream"), str) else ""
        if not isinstance(name, str) or not isinstance(payload, list):
            return {"error": "trigger_fire needs name and payload", "LTS": 1}
        lines = [str(p) for p in payload]
        if name == "STREAM_BUFFER":
            self.events.buffer_state(lines)
        if not body.get("wait", True):
            self.triggers.fire_background(name, lines, str(stream))
            return None
        outcome = await self.triggers.fire(name, lines, str(stream))
        reply = outcome.to_json()
        if "rid" in body:
            reply["rid"] = body["rid"]
        return {"trigger_fire": reply}

    # ---- API views --------------------------------------------------------------------------
    def clients(self, arg: Any) -> Any:
        if isinstance(arg, list):
            return [self.clients(a) for a in arg]
        req = arg if isinstance(arg, dict) else {}
        fields = [f for f in req.get("fields", []) if f in CLIENT_FIELDS] or list(CLIENT_FIELDS)
        streams = set(_strs(req.get("streams")))
        protocols = set(_strs(req.get("protocols")))
        now = int(time.time())
        when = req.get("time")
        at = now + int(when) if isinstance(when, (int, float)) and when <= 0 else now
        if isinstance(when, (int, float)) and when > 0:
            at = int(when)
        data = []
        for sess in self.sessions.sessions.values():
            if streams and sess.stream not in streams:
                continue
            if protocols and sess.connector not in protocols:
                continue
            row = self._client_row(sess, at, now, fields)
            if row is not None:
                data.append(row)
        return {"time": at, "fields": fields, "data": data}

    def _client_row(self, sess: Session, at: int, now: int, fields: list[str]) -> list[Any] | None:
        down, up, pkts, lost, retrans, pos = (
            sess.down,
            sess.up,
            sess.packets,
            sess.lost,
            sess.retrans,
            sess.position,
        )
        downbps, upbps = self.bps.get(sess.sessid, (0, 0))
        if at < now - 1:
            past = [h for h in sess.history if h[0] <= at]
            if not past or past[-1][0] < at - 1:
                return None
            _, down, up, pkts, lost, retrans, pos = past[-1]
        elif not sess.current(time.monotonic()):
            return None
        values = {
            "host": sess.host,
            "stream": sess.stream,
            "protocol": sess.connector,
            "conntime": max(0, at - int(sess.started)),
            "position": pos,
            "down": down,
            "up": up,
            "downbps": downbps,
            "upbps": upbps,
            "sessid": sess.sessid,
            "pktcount": pkts,
            "pktlost": lost,
            "pktretransmit": retrans,
        }
        return [values[f] for f in fields]

    def totals(self, arg: Any) -> Any:
        if isinstance(arg, list):
            return [self.totals(a) for a in arg]
        req = arg if isinstance(arg, dict) else {}
        fields = [f for f in req.get("fields", []) if f in TOTAL_FIELDS] or list(TOTAL_FIELDS)
        streams = set(_strs(req.get("streams")))
        protocols = set(_strs(req.get("protocols")))
        now = int(time.time())
        start, end = (
            _when(req.get("start"), now - STAT_CUTOFF, now),
            _when(req.get("end"), now, now),
        )
        data = []
        first = last = 0
        for second, sample in self.history:
            if second < start or second > end:
                continue
            sums = [0] * 8  # clients, inputs, outputs, down, up, pkts, lost, retrans
            for (stream, connector, kind), row in sample.items():
                if streams and stream not in streams:
                    continue
                if protocols and connector not in protocols:
                    continue
                slot = {"viewer": 0, "input": 1, "output": 2}.get(kind)
                if slot is not None:
                    sums[slot] += row[0]
                for i in range(5):
                    sums[3 + i] += row[1 + i]
            values = {
                "clients": sums[0],
                "inputs": sums[1],
                "outputs": sums[2],
                "downbps": sums[3],
                "upbps": sums[4],
                "perc_lost": round(100 * sums[6] / sums[5], 3) if sums[5] else 0,
                "perc_retrans": round(100 * sums[7] / sums[5], 3) if sums[5] else 0,
            }
            data.append([values[f] for f in fields])
            first = first or second
            last = second
        return {
            "start": first or start,
            "end": last or end,
            "fields": fields,
            "data": data,
            "interval": [[len(data), 1]] if data else [],
        }

    def stream_field(
        self, name: str, field: str, by_stream: dict[str, dict[str, int]] | None = None
    ) -> Any:
        """The statistics fields of ``active_streams``/``stats_streams`` (``by_stream``:
        :meth:`counts_by_stream`, when asking for many streams)."""
        if field in COUNT_KEYS:
            return self.stream_counts(name, by_stream)[field]
        if field == "clients":
            return sum(self.stream_counts(name, by_stream).values())
        acc = self.sessions.accs.get(name, StreamAcc())
        return {
            "views": acc.views,
            "viewseconds": int(acc.viewseconds),
            "upbytes": acc.up,
            "downbytes": acc.down,
            "packsent": acc.packets,
            "packloss": acc.lost,
            "packretrans": acc.retrans,
        }.get(field)

    def current_streams(self) -> set[str]:
        """Streams with a current session (active even without an input process)."""
        mono = time.monotonic()
        return {s.stream for s in self.sessions.sessions.values() if s.stream and s.current(mono)}

    def stats_names(self) -> list[str]:
        names = {s.stream for s in self.sessions.sessions.values() if s.stream}
        names |= {n for n in self.sessions.accs if n}
        return sorted(names | set(self.ctl.active_names()))


def _strs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _when(value: Any, default: int, now: int) -> int:
    if not isinstance(value, (int, float)):
        return default
    return now + int(value) if value <= 0 else int(value)
