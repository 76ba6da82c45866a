"""Child processes as a reconcile loop (STYLE 7).

The controller tells the supervisor what should run (:meth:`Supervisor.set_desired`:
connectors and the inputs of ``always_on`` streams) and may add on-demand inputs
(:meth:`Supervisor.start_transient`). Each :meth:`Supervisor.tick`:

1. reaps children that exited, logging why, cleaning the shared memory they leave
   behind, and putting the desired ones in BACKOFF (exit 0 of an on-demand input is
   its normal idle exit: it is simply forgotten);
2. kills stalled children: a child that has sent heartbeats and then stays silent for
   ``stall_timeout`` seconds gets SIGKILL (and then restarts as a crash);
3. stops children that are no longer desired (SIGTERM, SIGKILL after a grace period);
4. starts desired children that are missing or whose backoff has elapsed.

Backoff after consecutive failures: 0.5 s, 1 s, 2 s ... capped at 10 s; a child that
ran for :data:`STABLE_S` seconds has its failure count reset. Exit code 2 within
:data:`USAGE_WINDOW_S` of starting is a usage error (click's code for bad flags): the
child goes FATAL and is not restarted until its configuration (and so its key) changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.logbook import Logbook

STABLE_S = 10.0
USAGE_WINDOW_S = 3.0
EXIT_USAGE = 2
STOP_GRACE_S = 5.0
BACKOFF_MAX_S = 10.0


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    FATAL = "fatal"


@dataclass(frozen=True)
class Spec:
    """Something that should run. ``key`` is its identity (changes when argv changes)."""

    key: str
    kind: str  # "output" | "input"
    program: str
    argv: tuple[str, ...]
    stream: str = ""


@dataclass
class Child:
    spec: Spec
    state: State = State.STARTING
    proc: asyncio.subprocess.Process | None = None
    pid: int = 0
    started_at: float = 0.0
    failures: int = 0
    next_start: float = 0.0
    stop_sent_at: float = 0.0
    last_heartbeat: float | None = None
    transient: bool = False
    reader: asyncio.Task[None] | None = None
    last_exit: int | None = None
    desired: bool = True
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _pdeathsig() -> None:  # pragma: no cover - runs in the child before exec
    """Have the kernel SIGTERM the child if the controller dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def backoff_delay(failures: int) -> float:
    return min(BACKOFF_MAX_S, 0.5 * 2 ** max(0, failures - 1))


class Supervisor:
    def __init__(
        self,
        logbook: Logbook,
        env: Callable[[Spec], dict[str, str]],
        stall_timeout: float = 30.0,
        on_exit: Callable[[Child, int], None] | None = None,
    ) -> None:
        self.logbook = logbook
        self.env = env
        self.stall_timeout = stall_timeout
        self.on_exit = on_exit
        self.desired: dict[str, Spec] = {}
        self.children: dict[str, Child] = {}

    # ---- what should run ----------------------------------------------------------------------
    def set_desired(self, specs: list[Spec]) -> None:
        self.desired = {s.key: s for s in specs}

    def find_input(self, stream: str) -> Child | None:
        for child in self.children.values():
            if (
                child.spec.kind == "input"
                and child.spec.stream == stream
                and child.state != State.FATAL
            ):
                return child
        return None

    async def start_transient(self, spec: Spec) -> Child:
        child = Child(spec, transient=True)
        self.children[spec.key] = child
        await self._spawn(child, time.monotonic())
        return child

    def heartbeat(self, pid: int, now: float) -> bool:
        for child in self.children.values():
            if child.pid == pid and child.state in (State.STARTING, State.RUNNING):
                child.last_heartbeat = now
                child.state = State.RUNNING
                return True
        return False

    def fatal(self, key: str) -> bool:
        child = self.children.get(key)
        return child is not None and child.state == State.FATAL

    def running(self, key: str) -> bool:
        child = self.children.get(key)
        return child is not None and child.state in (State.STARTING, State.RUNNING)

    # ---- the loop -----------------------------------------------------------------------------
    async def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key, child in list(self.children.items()):
            if (
                child.proc is not None
                and child.proc.returncode is not None
                and child.state != State.BACKOFF
            ):
                await self._reaped(key, child, child.proc.returncode, now)
        for child in self.children.values():
            if (
                child.state == State.RUNNING
                and child.last_heartbeat is not None
                and now - child.last_heartbeat > self.stall_timeout
            ):
                self.logbook.emit(
                    "ERROR",
                    f"{child.spec.program} (pid {child.pid}) sent no heartbeat for {now - child.last_heartbeat:.0f} s; killing it",
                    child.spec.stream,
                )
                self._signal(child, signal.SIGKILL)
                child.last_heartbeat = None
        for key, child in list(self.children.items()):
            wanted = key in self.desired or (child.transient and child.desired)
            if not wanted:
                if child.state == State.BACKOFF or child.proc is None:
                    del self.children[key]
                elif child.state != State.STOPPING:
                    child.state = State.STOPPING
                    child.stop_sent_at = now
                    self._signal(child, signal.SIGTERM)
                elif now - child.stop_sent_at > STOP_GRACE_S:
                    self._signal(child, signal.SIGKILL)
        for key, spec in self.desired.items():
            existing = self.children.get(key)
            if existing is None:
                fresh = self.children[key] = Child(spec)
                await self._spawn(fresh, now)
            elif existing.state == State.BACKOFF and now >= existing.next_start:
                await self._spawn(existing, now)

    async def _reaped(self, key: str, child: Child, code: int, now: float) -> None:
        child.last_exit = code
        ran = now - child.started_at
        how = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        program, stream = child.spec.program, child.spec.stream
        if child.reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(child.reader, 1.0)
        if self.on_exit is not None:
            self.on_exit(child, code)
        if child.state == State.STOPPING or (child.transient and code == 0):
            self.logbook.emit("INFO", f"{program} (pid {child.pid}) stopped ({how})", stream)
            del self.children[key]
            return
        if key not in self.desired:
            self.logbook.emit(
                "WARN", f"{program} (pid {child.pid}) ended ({how}) after {ran:.1f} s", stream
            )
            del self.children[key]
            return
        if code == EXIT_USAGE and ran < USAGE_WINDOW_S:
            self.logbook.emit(
                "ERROR",
                f"{program} (pid {child.pid}) rejected its arguments (exit code 2); not restarting until its configuration changes",
                stream,
            )
            child.state = State.FATAL
            child.proc = None
            return
        child.failures = 1 if ran >= STABLE_S else child.failures + 1
        delay = backoff_delay(child.failures)
        kind = "INFO" if code == 0 else "ERROR"
        self.logbook.emit(
            kind,
            f"{program} (pid {child.pid}) ended ({how}) after {ran:.1f} s; restarting in {delay:.1f} s",
            stream,
        )
        child.state = State.BACKOFF
        child.next_start = now + delay
        child.proc = None

    async def _spawn(self, child: Child, now: float) -> None:
        spec = child.spec
        child.started_at = now
        child.last_heartbeat = None
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=self.env(spec),
                start_new_session=True,
                preexec_fn=_pdeathsig,
            )
        except OSError as exc:
            child.failures += 1
            child.state = State.BACKOFF
            child.next_start = now + backoff_delay(child.failures)
            self.logbook.emit("ERROR", f"cannot start {spec.program}: {exc}", spec.stream)
            return
        child.proc = proc
        child.pid = proc.pid
        child.state = State.STARTING
        self.logbook.emit(
            "INFO",
            f"started {' '.join([spec.program, *spec.argv[1:]])} (pid {proc.pid})",
            spec.stream,
        )
        child.reader = asyncio.create_task(
            self._read_stderr(child, proc), name=f"stderr-{spec.program}-{proc.pid}"
        )

    async def _read_stderr(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            try:
                line = await proc.stderr.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue  # an over-long line: drop it, keep reading
            if not line:
                break
            self.logbook.child_line(
                line.decode("utf-8", "replace"), child.spec.program, proc.pid, child.spec.stream
            )

    def _signal(self, child: Child, sig: signal.Signals) -> None:
        if child.proc is not None and child.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(sig)

    # ---- shutdown -----------------------------------------------------------------------------
    async def stop_all(self, grace: float = STOP_GRACE_S) -> None:
        """Stop outputs, then inputs: SIGTERM, wait, SIGKILL stragglers, reap everything."""
        self.desired = {}
        for kind in ("output", "input", None):
            group = [c for c in self.children.values() if kind is None or c.spec.kind == kind]
            for child in group:
                child.state = State.STOPPING
                self._signal(child, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in group:
                if child.proc is None:
                    continue
                left = max(0.05, deadline - time.monotonic())
                try:
                    await asyncio.wait_for(child.proc.wait(), left)
                except TimeoutError:
                    self.logbook.emit(
                        "WARN",
                        f"{child.spec.program} (pid {child.pid}) ignored SIGTERM; killing it",
                    )
                    self._signal(child, signal.SIGKILL)
                    await child.proc.wait()
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)  # its own forks, if any
            for child in group:
                if child.proc is not None and child.proc.returncode is not None:
                    await self._reaped(
                        child.spec.key, child, child.proc.returncode, time.monotonic()
                    )
                else:
                    self.children.pop(child.spec.key, None)
        self.children.clear()
