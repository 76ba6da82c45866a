"""MistServer triggers, run by the controller (reference 7.1).

``config.triggers = {NAME: [{handler, sync, streams, params, default}, ...]}``; the legacy
entry form ``[handler, sync, [streams]]`` (and a bare handler string) is accepted too. ``params``:
LIVE_BANDWIDTH's threshold in bytes/s (handlers fire only above it).

A handler is an ``http(s)://`` URL (POST of the payload, ``X-Trigger`` and friends) or an
executable (argv ``[handler, NAME]``, payload on stdin, ``MIST_*`` environment). A blocking
(``sync``) handler's answer is used: executables get SIGTERM after 10 s and SIGKILL at 14 s,
and at 15 s the configured ``default`` is used instead; a URL gets 10 s. A non-blocking
handler is started and not waited for: its ``default`` (``"true"`` unless configured) is the
answer. Answers are stripped of surrounding white space. ``allow`` ANDs the truthiness of
every handler's answer (boolean triggers); ``answer`` is the last blocking handler's
answer (rewrite triggers), see :func:`combine`.

Everything runs as asyncio tasks on the controller's loop, so a hanging handler delays
only the connection that waits for it. Per-trigger counts, total milliseconds and
failures feed the API and Prometheus (``mist_trigger_*``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.streamname import base_name
from common.triggers import is_true

TERM_AFTER_S = 10.0
KILL_AFTER_S = 14.0
HARD_LIMIT_S = 15.0
HTTP_TIMEOUT_S = 10.0
DEFAULT_ANSWER = "true"

# Trigger names MistServer's code knows (reference 7.2), for validation and docs.
KNOWN = (
    "SYSTEM_START",
    "SYSTEM_STOP",
    "OUTPUT_START",
    "OUTPUT_STOP",
    "STREAM_ADD",
    "STREAM_CONFIG",
    "STREAM_REMOVE",
    "STREAM_SOURCE",
    "STREAM_LOAD",
    "STREAM_READY",
    "STREAM_UNLOAD",
    "STREAM_PUSH",
    "STREAM_BUFFER",
    "STREAM_END",
    "LIVE_TRACK_LIST",
    "LIVE_BANDWIDTH",
    "INPUT_ABORT",
    "RTMP_PUSH_REWRITE",
    "PUSH_REWRITE",
    "PUSH_OUT_START",
    "PUSH_END",
    "RECORDING_END",
    "OUTPUT_END",
    "CONN_OPEN",
    "CONN_CLOSE",
    "CONN_PLAY",
    "CONN_STOP",
    "PLAY_REWRITE",
    "DEFAULT_STREAM",
    "USER_NEW",
    "USER_END",
)


@dataclass(frozen=True)
class Handler:
    handler: str
    sync: bool = False
    streams: tuple[str, ...] = ()
    params: str = ""
    default: str = DEFAULT_ANSWER

    @classmethod
    def from_config(cls, entry: Any) -> Handler | None:
        if isinstance(entry, str):
            return cls(entry) if entry else None
        if isinstance(entry, list) and entry and isinstance(entry[0], str) and entry[0]:
            streams = entry[2] if len(entry) > 2 and isinstance(entry[2], list) else []
            return cls(entry[0], len(entry) > 1 and bool(entry[1]), _strs(streams))
        if isinstance(entry, dict) and isinstance(entry.get("handler"), str) and entry["handler"]:
            default = entry.get("default")
            return cls(
                entry["handler"],
                bool(entry.get("sync")),
                _strs(entry.get("streams")),
                str(entry.get("params") or ""),
                default if isinstance(default, str) and default else DEFAULT_ANSWER,
            )
        return None

    def matches(self, stream: str, tags: list[str]) -> bool:
        return stream_matches(self.streams, stream, tags)


def _strs(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str) and v)
    return ()


def stream_matches(filters: tuple[str, ...], stream: str, tags: list[str]) -> bool:
    """MistServer's stream filter: empty = all; ``name``, ``!name``, ``#tag``.

    A name matches the full stream name or its base (before ``+``/space). A matching
    negation excludes; a list of only negations matches everything else.
    """
    if not filters:
        return True
    names = {stream, base_name(stream)} if stream else set()
    positive = False
    for item in filters:
        negate = item.startswith("!")
        target = item[1:] if negate else item
        hit = target[1:] in tags if target.startswith("#") else target in names
        if negate:
            if hit:
                return False
        else:
            positive = True
            if hit:
                return True
    return not positive


def _params_match(name: str, handler: Handler, payload: list[str]) -> bool:
    """``params`` checks (MistServer's per-trigger callbacks): LIVE_BANDWIDTH fires a
    handler only when the current bytes/s (payload line 2) reach its threshold."""
    if name != "LIVE_BANDWIDTH" or not handler.params.strip():
        return True
    try:
        return len(payload) > 1 and int(payload[1]) >= int(handler.params)
    except ValueError:
        return True


def parse_config(triggers: Any) -> dict[str, list[Handler]]:
    out: dict[str, list[Handler]] = {}
    if not isinstance(triggers, dict):
        return out
    for name, entries in triggers.items():
        if not isinstance(name, str):
            continue
        items = entries if isinstance(entries, list) else [entries]
        # A legacy single entry ``[url, sync, [streams]]`` is itself a list.
        if items and isinstance(items[0], str):
            items = [items]
        handlers = [h for h in (Handler.from_config(e) for e in items) if h is not None]
        if handlers:
            out[name] = handlers
    return out


@dataclass
class TriggerStats:
    count: int = 0
    ms: int = 0
    fails: int = 0

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ms": self.ms, "fails": self.fails}


@dataclass
class Outcome:
    configured: bool
    answer: str = DEFAULT_ANSWER
    allow: bool = True
    blocking: bool = False
    answers: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "configured": self.configured,
            "answer": self.answer,
            "allow": self.allow,
            "blocking": self.blocking,
        }


def combine(results: list[tuple[str, bool]]) -> Outcome:
    """Results ``(answer, was_blocking)`` of every handler → the trigger's outcome."""
    if not results:
        return Outcome(False)
    allow = all(is_true(a) for a, _ in results)
    blocking = [a for a, b in results if b]
    answer = blocking[-1] if blocking else results[-1][0]
    return Outcome(True, answer, allow, bool(blocking), [a for a, _ in results])


class TriggerService:
    def __init__(
        self,
        config: Callable[[], Any],
        tags_of: Callable[[str], list[str]],
        identity: Callable[[], tuple[str, str]],
        emit: Callable[..., None],
    ) -> None:
        self._config = config  # -> the config.triggers value
        self._tags_of = tags_of
        self._identity = identity  # -> (instance id, server name)
        self._emit = emit
        self.stats: dict[str, TriggerStats] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: Any = None  # aiohttp.ClientSession, created on the first URL handler
        self._parsed_from: Any = None
        self._parsed: dict[str, list[Handler]] = {}

    # ---- configuration ----------------------------------------------------------------------
    def handlers(self, name: str, stream: str = "") -> list[Handler]:
        raw = self._config()
        if raw is not self._parsed_from:
            self._parsed = parse_config(raw)
            self._parsed_from = raw
        found = self._parsed.get(name)
        if not found:
            return []
        tags = self._tags_of(stream) if stream else []
        return [h for h in found if h.matches(stream, tags)]

    def names(self) -> set[str]:
        """Trigger names with at least one handler (whatever their stream filters)."""
        self.handlers("")
        return set(self._parsed)

    def configured(self, name: str, stream: str = "") -> bool:
        return bool(self.handlers(name, stream))

    # ---- firing -----------------------------------------------------------------------------
    async def fire(self, name: str, payload: list[str], stream: str = "") -> Outcome:
        """Run every matching handler; blocking ones are awaited (concurrently)."""
        handlers = [h for h in self.handlers(name, stream) if _params_match(name, h, payload)]
        if not handlers:
            return Outcome(False)
        body = "\n".join(payload)
        waits: list[asyncio.Future[str]] = []
        results: list[tuple[str, bool] | None] = []
        for handler in handlers:
            task = self.spawn(self._run(name, handler, body))
            if handler.sync:
                waits.append(task)
                results.append(None)
            else:
                results.append((handler.default, False))
        answers = iter(await asyncio.gather(*waits)) if waits else iter(())
        done = [r if r is not None else (next(answers), True) for r in results]
        return combine(done)

    def fire_background(self, name: str, payload: list[str], stream: str = "") -> None:
        """Fire without waiting (for triggers whose answer the caller ignores)."""
        if self.handlers(name, stream):
            self.spawn(self.fire(name, payload, stream))

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` as a task this service keeps (and cancels on close)."""
        task = asyncio.create_task(coro, name="trigger")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, name: str, handler: Handler, body: str) -> str:
        started = time.monotonic()
        ok = False
        try:
            if handler.handler.startswith(("http://", "https://")):
                answer = await self._run_http(name, handler, body)
            else:
                answer = await self._run_exec(name, handler, body)
            ok = answer is not None
        except Exception as exc:
            self._emit("WARN", f"Trigger {name} handler {handler.handler} failed: {exc}")
            answer = None
        self.record(name, int((time.monotonic() - started) * 1000), ok)
        if answer is None:
            return handler.default
        return answer.strip()

    def record(self, name: str, ms: int, ok: bool) -> None:
        stats = self.stats.setdefault(name, TriggerStats())
        stats.count += 1
        stats.ms += ms
        if not ok:
            stats.fails += 1

    def _meta(self, name: str, handler: Handler) -> dict[str, str]:
        iid, server = self._identity()
        now = time.time()
        return {
            "uuid": str(uuid.uuid4()),
            "millis": str(int(now * 1000)),
            "date": email.utils.formatdate(now, usegmt=True),
            "pid": str(os.getpid()),
            "iid": iid,
            "name": server,
            "trigger": name,
            "default": handler.default,
            "unix": str(int(now)),
        }

    async def _run_http(self, name: str, handler: Handler, body: str) -> str | None:
        import aiohttp

        meta = self._meta(name, handler)
        headers = {
            "X-Trigger": name,
            "X-Trigger-UUID": meta["uuid"],
            "X-Trigger-UnixMillis": meta["millis"],
            "Date": meta["date"],
            "X-PID": meta["pid"],
            "X-Instance": meta["iid"],
            "X-Name": meta["name"],
            "Content-Type": "text/plain",
        }
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        try:
            async with self._session.post(
                handler.handler, data=body.encode(), headers=headers, timeout=timeout
            ) as resp:
                text = await resp.text(errors="replace")
                if resp.status >= 400:
                    self._emit("WARN", f"Trigger {name}: {handler.handler} answered {resp.status}")
                    return None
                return text
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._emit("WARN", f"Trigger {name}: {handler.handler} failed: {exc or 'timeout'}")
            return None

    async def _run_exec(self, name: str, handler: Handler, body: str) -> str | None:
        meta = self._meta(name, handler)
        env = dict(os.environ)
        env.update(
            MIST_TRIGGER=name,
            MIST_TRIG_DEF=handler.default,
            MIST_PID=meta["pid"],
            MIST_INSTANCE=meta["iid"],
            MIST_NAME=meta["name"],
            MIST_TUUID=meta["uuid"],
            MIST_TIME=meta["unix"],
            MIST_DATE=meta["date"],
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                handler.handler,
                name,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            self._emit("WARN", f"Trigger {name}: cannot run {handler.handler}: {exc.strerror}")
            return None
        talk = asyncio.create_task(proc.communicate(body.encode()), name="trigger-exec")
        done, _ = await asyncio.wait({talk}, timeout=TERM_AFTER_S)
        if not done:
            self._emit("WARN", f"Trigger {name}: {handler.handler} still running after 10 s")
            _signal(proc, signal.SIGTERM)
            done, _ = await asyncio.wait({talk}, timeout=KILL_AFTER_S - TERM_AFTER_S)
        if not done:
            _signal(proc, signal.SIGKILL)
            done, _ = await asyncio.wait({talk}, timeout=HARD_LIMIT_S - KILL_AFTER_S)
        if not done:
            talk.cancel()
            with contextlib.suppress(asyncio.CancelledError, ProcessLookupError):
                await talk
            return None
        stdout, _ = talk.result()
        if proc.returncode not in (0, None) and proc.returncode < 0:
            return None  # killed: the default applies
        return stdout.decode("utf-8", "replace")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()

    def stats_view(self) -> dict[str, dict[str, int]]:
        return {name: s.to_json() for name, s in sorted(self.stats.items())}


def _signal(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
