"""Pushes and recordings (reference 10): ``push_start``/``push_list``/``push_stop`` and
the auto-push rules (``push_auto_add``/``push_auto_remove``/``push_auto_list``, stored in
the config as ``auto_push``).

A push is one child process, ``MistOut<X> --stream <s> <target>``: the connector whose
capability ``push_urls`` matches the target (``rtmp://*`` -> MistOutRTMP, ``/*.mp4`` ->
MistOutMP4, ...). Targets expand MistServer's variables (:func:`expand`): ``$stream``,
``$basename``, ``$wildcard``, ``$datetime``, ``$year``... ``$segmentCounter``.

``?split=<s>`` (file targets): once a recorder has been writing its file for ``split``
seconds a new recorder is started on a freshly expanded file name, and the previous one
is stopped (SIGTERM: it writes its trailer) one second after the new one's file has
data -- the files overlap by up to a GOP instead of leaving a gap, since each recorder
starts on a keyframe. Both times count from a recorder's first written byte, not from
its spawn, so a recorder slow to start (a loaded machine) neither loses its share nor
leaves a gap. A target without variables gets ``_$segmentCounter`` before its extension.

Auto pushes start when a matching stream becomes READY (checked every second; ``stream``
is an exact name or ``base+`` for every wildcard stream of ``base``), and are restarted
with back-off (1, 2, 4 ... 10 s) when they exit while the stream is still live.

Wiring: :data:`COMMANDS` goes into ``controller.api.COMMANDS``; the manager attaches to
the controller on first use (:func:`manager`), or at boot via :func:`attach`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from common.streamname import base_name, sanitize
from controller.inputs import matches

if TYPE_CHECKING:
    from controller.server import Controller

TICK_S = 1.0
FINAL_WAIT_S = 1.0  # after a push exits, how long its final report may take to arrive
STOP_GRACE_S = 10.0  # a recording's time to finish its file on shutdown
SPLIT_OVERLAP_S = 1.0
BACKOFF_MAX_S = 10.0
LOG_LINES = 10
READY = 4


def expand(target: str, stream: str, counter: int = 0, now: float | None = None) -> str:
    """MistServer's push target variables (``Util::streamVariables`` + strftime names)."""
    t = time.localtime(now if now is not None else time.time())
    base = base_name(stream)
    wildcard = stream[len(base) + 1 :] if len(stream) > len(base) else ""
    values = {
        "$datetime": time.strftime("%Y.%m.%d.%H.%M.%S", t),
        "$segmentCounter": str(counter),
        "$pluswildcard": f"+{wildcard}" if wildcard else "",
        "$basename": base,
        "$wildcard": wildcard,
        "$stream": stream,
        "$year": time.strftime("%Y", t),
        "$month": time.strftime("%m", t),
        "$day": time.strftime("%d", t),
        "$hour": time.strftime("%H", t),
        "$minute": time.strftime("%M", t),
        "$second": time.strftime("%S", t),
        "$wday": str(t.tm_wday + 1 if t.tm_wday < 6 else 0),  # MistServer: Sunday = 0
        "$yday": str(t.tm_yday),
        "$week": time.strftime("%V", t),
    }
    for name in sorted(values, key=len, reverse=True):  # $datetime before $day etc.
        target = target.replace(name, values[name])
    return target


def split_seconds(target: str) -> tuple[str, float]:
    """(target without ``split=``, split seconds or 0)."""
    path, sep, query = target.partition("?")
    if not sep:
        return target, 0.0
    keep, split = [], 0.0
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if key == "split":
            try:
                split = max(0.0, float(value))
            except ValueError:
                split = 0.0
        elif item:
            keep.append(item)
    return path + ("?" + "&".join(keep) if keep else ""), split


def with_counter(target: str) -> str:
    """Make sure successive split files get distinct names."""
    path, sep, query = target.partition("?")
    if "$" in path:
        return target
    stem, dot, ext = path.rpartition(".")
    path = f"{stem}_$segmentCounter.{ext}" if dot else f"{path}_$segmentCounter"
    return path + sep + query


@dataclass
class Push:
    id: int
    stream: str
    orig_target: str
    target: str
    argv: list[str]
    proc: asyncio.subprocess.Process
    auto_id: str = ""
    started: float = field(default_factory=time.time)
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    exit_code: int | None = None
    stopping: bool = False
    split_s: float = 0.0
    counter: int = 0
    writing_since: float | None = None  # wall time its file first had data (split pushes)
    successor: int = 0  # split: the push that takes over; this one stops once that writes
    reader: asyncio.Task[None] | None = None
    # what the output reported just before exiting (bytes, media times), see
    # ``common.triggers.report_output_end``; PUSH_END & co wait up to FINAL_WAIT_S for it
    final: dict[str, Any] | None = None
    exited_at: float = 0.0
    reported: bool = False

    def row(self) -> list[Any]:
        status = {
            "state": "running" if self.exit_code is None else f"exited {self.exit_code}",
            "active_seconds": int(time.time() - self.started),
        }
        return [self.id, self.stream, self.orig_target, self.target, list(self.logs), status]


class PushManager:
    """Runs pushes as child processes and applies the auto-push rules."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.pushes: dict[int, Push] = {}
        self.retry_at: dict[tuple[str, str], float] = {}  # (auto id, stream) -> next start
        self.failures: dict[tuple[str, str], int] = {}
        self.task: asyncio.Task[None] | None = None

    # ---- config -------------------------------------------------------------------------
    @property
    def auto(self) -> dict[str, dict[str, Any]]:
        data = self.ctl.store.data
        rules = data.get("auto_push")
        if not isinstance(rules, dict):
            rules = data["auto_push"] = {}
        return rules

    # ---- starting / stopping ------------------------------------------------------------
    def program_for(self, target: str) -> list[str] | str:
        """argv prefix of the connector that pushes to ``target``, or why there is none."""
        path = target.partition("?")[0]
        for short, capa in sorted(self.ctl.caps.by_group().get("connectors", {}).items()):
            patterns = capa.get("push_urls") or []
            if any(isinstance(p, str) and matches(p, path) for p in patterns):
                found = self.ctl.caps.connector(short)
                if found is not None:
                    return list(found[0].argv)
        return f"no connector can push to {target!r}"

    async def start(
        self, stream: str, target: str, auto_id: str = "", counter: int = 0
    ) -> Push | str:
        stream = sanitize(stream)
        if not stream or not target:
            return "push_start needs a stream and a target"
        plain, split = split_seconds(target)
        if split:
            plain = with_counter(plain)
        resolved = expand(plain, stream, counter)
        rewritten = await self.ctl.monitor.events.rewrite(
            "PUSH_OUT_START", [stream, resolved], stream
        )
        if rewritten is not None:
            if not rewritten:
                return "PUSH_OUT_START trigger refused the push"
            resolved = rewritten
        argv = self.program_for(resolved)
        if isinstance(argv, str):
            return argv
        cmd = [*argv, "--stream", stream, resolved]
        from controller.supervisor import _pdeathsig

        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=self.ctl.base_env(),
                start_new_session=True,
                preexec_fn=_pdeathsig,
            )
        except OSError as exc:
            return f"cannot start the push: {exc}"
        push = Push(proc.pid, stream, target, resolved, cmd, proc, auto_id, split_s=split)
        push.counter = counter
        push.reader = asyncio.get_running_loop().create_task(
            self._read_logs(push), name=f"push-log-{proc.pid}"
        )
        self.pushes[push.id] = push
        self.ctl.logbook.emit("INFO", f"push {push.id} started: {stream} -> {resolved}", stream)
        self.ensure_running()
        return push

    async def _read_logs(self, push: Push) -> None:
        """Keep the last lines for ``push_list`` and pass them on to the controller's log."""
        assert push.proc.stderr is not None
        program = push.argv[0].rsplit("/", 1)[-1]
        with contextlib.suppress(Exception):
            async for raw in push.proc.stderr:
                line = raw.decode(errors="replace").rstrip()
                if line:
                    push.logs.append(line.rsplit("|", 1)[-1])
                    self.ctl.logbook.child_line(line, program, push.proc.pid, push.stream)

    def stop(self, ids: list[int]) -> list[int]:
        stopped = []
        for i in ids:
            push = self.pushes.get(i)
            if push is not None and push.exit_code is None:
                push.stopping = True
                with contextlib.suppress(ProcessLookupError):
                    push.proc.send_signal(signal.SIGTERM)
                stopped.append(i)
        return stopped

    def status_update(self, body: dict[str, Any]) -> None:
        """``push_status_update {id, status}`` from a push's own process."""
        pid = body.get("id")
        push = self.pushes.get(pid) if isinstance(pid, int) else None
        status = body.get("status")
        if push is not None and isinstance(status, dict):
            push.final = status

    def list(self) -> list[list[Any]]:
        return [p.row() for p in self.pushes.values() if p.exit_code is None]

    # ---- the loop -----------------------------------------------------------------------
    def ensure_running(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="pushes")

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # the next tick tries again
                self.ctl.logbook.emit("ERROR", f"push check failed: {type(exc).__name__}: {exc}")
            await asyncio.sleep(TICK_S)

    async def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for push in list(self.pushes.values()):
            code = push.proc.returncode
            if code is not None and push.exit_code is None:
                push.exit_code = code
                push.exited_at = now
            if push.exit_code is not None:
                if not push.reported and (
                    push.final is not None or now - push.exited_at >= FINAL_WAIT_S
                ):
                    push.reported = True
                    self._exited(push, now)
                if push.reported and (push.reader is None or push.reader.done()):
                    del self.pushes[push.id]
                continue
            if push.split_s or push.successor:
                self._check_writing(push)
        for push in list(self.pushes.values()):
            if push.exit_code is not None or push.stopping:
                continue
            if push.successor:
                self._retire(push)
            elif push.split_s and _writing_for(push) >= push.split_s:
                await self._rotate(push)
        await self._auto(now)

    @staticmethod
    def _check_writing(push: Push) -> None:
        if push.writing_since is not None:
            return
        path = push.target.partition("?")[0]
        if not path.startswith("/"):  # not a local file: count from the spawn
            push.writing_since = push.started
            return
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if st.st_size > 0 and st.st_mtime >= push.started - 1.0:  # not an old file
                push.writing_since = time.time()

    def _retire(self, push: Push) -> None:
        """Stop a rotated-out recorder once its successor has written for the overlap
        (or has failed: then nothing would take over anyway)."""
        nxt = self.pushes.get(push.successor)
        if nxt is None or nxt.exit_code is not None or _writing_for(nxt) >= SPLIT_OVERLAP_S:
            self.stop([push.id])

    def _exited(self, push: Push, now: float) -> None:
        how = "stopped" if push.stopping else f"exited with {push.exit_code}"
        self.ctl.monitor.events.push_ended(
            push.id,
            push.stream,
            push.orig_target,
            push.target,
            list(push.logs),
            push.row()[5],
            " ".join(push.argv),
            push.started,
            push.exit_code,
            push.stopping,
            push.final,
        )
        self.ctl.logbook.emit("INFO", f"push {push.id} ({push.target}) {how}", push.stream)
        if push.auto_id and not push.stopping:
            key = (push.auto_id, push.stream)
            n = self.failures.get(key, 0) + 1 if push.exit_code else 0
            self.failures[key] = n
            self.retry_at[key] = now + min(BACKOFF_MAX_S, 2 ** max(0, n - 1))

    async def _rotate(self, push: Push) -> None:
        nxt = await self.start(push.stream, push.orig_target, push.auto_id, push.counter + 1)
        if isinstance(nxt, str):
            self.ctl.logbook.emit("ERROR", f"split of push {push.id}: {nxt}", push.stream)
            push.split_s = 0.0
            return
        push.split_s = 0.0  # the new one carries the rotation on
        push.successor = nxt.id  # stopped by :meth:`_retire` once ``nxt`` writes

    async def _auto(self, now: float) -> None:
        rules = self.auto
        if not rules:
            return
        live = [s for s in self.ctl.active_names() if self.ctl.stream_state(s) == READY]
        running = {(p.auto_id, p.stream) for p in self.pushes.values() if p.exit_code is None}
        for rule_id, rule in rules.items():
            pattern = str(rule.get("stream", ""))
            target = str(rule.get("target", ""))
            for stream in live:
                if not _stream_matches(pattern, stream) or (rule_id, stream) in running:
                    continue
                if self.retry_at.get((rule_id, stream), 0.0) > now:
                    continue
                result = await self.start(stream, target, rule_id)
                if isinstance(result, str):
                    self.ctl.logbook.emit("ERROR", f"auto push {rule_id}: {result}", stream)
                    self.retry_at[(rule_id, stream)] = now + BACKOFF_MAX_S

    async def close(self, grace: float = STOP_GRACE_S) -> None:
        """Stop the loop and every push, and wait for them: a recording gets SIGTERM and
        time to finish its file before the inputs go away; one that hangs is killed."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        running = [p for p in self.pushes.values() if p.exit_code is None]
        self.stop([p.id for p in running])
        waits = [asyncio.ensure_future(p.proc.wait()) for p in running]
        if waits:
            await asyncio.wait(waits, timeout=grace)
        for push, wait in zip(running, waits, strict=True):
            if not wait.done():
                self.ctl.logbook.emit(
                    "WARN", f"push {push.id} ignored SIGTERM: killed", push.stream
                )
                with contextlib.suppress(ProcessLookupError):
                    push.proc.kill()
            push.exit_code = await wait
            push.exited_at = time.monotonic()
        # the outputs' final reports (bytes, media times) come through the API meanwhile
        deadline = time.monotonic() + FINAL_WAIT_S
        while time.monotonic() < deadline and any(
            p.final is None and not p.reported for p in self.pushes.values()
        ):
            await asyncio.sleep(0.05)
        for push in list(self.pushes.values()):
            if not push.reported:
                push.reported = True
                self._exited(push, time.monotonic())
            if push.reader is not None:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(push.reader, 2.0)
        self.pushes.clear()


def _writing_for(push: Push) -> float:
    """Seconds since the push's file first had data (-1: nothing written yet)."""
    return -1.0 if push.writing_since is None else time.time() - push.writing_since


def _stream_matches(pattern: str, stream: str) -> bool:
    if pattern.endswith("+"):
        return stream.startswith(pattern)
    return pattern == stream


def rule_id(rule: dict[str, Any]) -> str:
    """MistServer keys ``auto_push`` entries by the md5 of the entry's JSON."""
    return hashlib.md5(json.dumps(rule, sort_keys=True).encode()).hexdigest()


def attach(ctl: Controller) -> PushManager:
    """The controller's push manager (created on first use) with its loop running."""
    mgr: PushManager | None = getattr(ctl, "push_manager", None)
    if mgr is None:
        mgr = PushManager(ctl)
        ctl.push_manager = mgr  # type: ignore[attr-defined]
    mgr.ensure_running()
    return mgr


manager = attach


# ---- API commands: (ctl, argument, ctx) -> (response value or None, config changed?) ------


def _api_error(message: str) -> Exception:
    from controller.api import ApiError

    return ApiError(message)


def _pair(arg: Any, what: str) -> tuple[str, str]:
    if isinstance(arg, list) and len(arg) >= 2:
        return str(arg[0]), str(arg[1])
    if isinstance(arg, dict) and "stream" in arg and "target" in arg:
        return str(arg["stream"]), str(arg["target"])
    raise _api_error(f"{what} needs [stream, target] or {{stream, target}}")


async def push_start(ctl: Controller, arg: Any, _ctx: Any) -> tuple[Any, bool]:
    stream, target = _pair(arg, "push_start")
    mgr = attach(ctl)
    pattern = sanitize(stream) if not stream.endswith("+") else stream
    streams = (
        [s for s in ctl.active_names() if _stream_matches(pattern, s)]
        if stream.endswith("+")
        else [pattern]
    )
    started = []
    for s in streams:
        result = await mgr.start(s, target)
        if isinstance(result, str):
            raise _api_error(result)
        started.append(result.row())
    return (started[0] if len(started) == 1 else started), False


def push_list(ctl: Controller, _arg: Any, _ctx: Any) -> tuple[Any, bool]:
    return attach(ctl).list(), False


def push_stop(ctl: Controller, arg: Any, _ctx: Any) -> tuple[Any, bool]:
    mgr = attach(ctl)
    items = arg if isinstance(arg, list) else [arg]
    ids: list[int] = []
    for item in items:
        number = isinstance(item, int | float) and not isinstance(item, bool)
        if number or (isinstance(item, str) and item.isdigit()):
            ids.append(int(item))
        elif isinstance(item, str):  # a stream name stops all its pushes
            ids += [p.id for p in mgr.pushes.values() if p.stream == sanitize(item)]
    return mgr.stop(ids), False


def push_auto_add(ctl: Controller, arg: Any, _ctx: Any) -> tuple[Any, bool]:
    stream, target = _pair(arg, "push_auto_add")
    rule: dict[str, Any] = dict(arg) if isinstance(arg, dict) else {}
    rule.update({"stream": stream, "target": target})
    mgr = attach(ctl)
    mgr.auto[rule_id(rule)] = rule
    return mgr.auto, True


def push_auto_remove(ctl: Controller, arg: Any, _ctx: Any) -> tuple[Any, bool]:
    """Argument: a rule id, a list of ids, or a ``[stream, target]`` pair."""
    mgr = attach(ctl)
    rules = mgr.auto
    pair = (
        isinstance(arg, list)
        and len(arg) == 2
        and all(isinstance(x, str) for x in arg)
        and arg[0] not in rules
    )
    if pair:
        ids = [k for k, r in rules.items() if [r.get("stream"), r.get("target")] == arg]
    else:
        ids = [str(x) for x in (arg if isinstance(arg, list) else [arg])]
    removed = [k for k in ids if rules.pop(k, None) is not None]
    # pushes started by removed rules stop too
    mgr.stop([p.id for p in mgr.pushes.values() if p.auto_id and p.auto_id not in rules])
    return rules, bool(removed)


def push_auto_list(ctl: Controller, _arg: Any, _ctx: Any) -> tuple[Any, bool]:
    return attach(ctl).auto, False


COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("push_start", push_start),
    ("push_list", push_list),
    ("push_stop", push_stop),
    ("push_auto_add", push_auto_add),
    ("push_auto_remove", push_auto_remove),
    ("push_auto_list", push_auto_list),
)
