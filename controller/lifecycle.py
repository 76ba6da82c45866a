"""Triggers the controller fires for its own events (reference 7.2).

SYSTEM_START/SYSTEM_STOP (boot, shutdown), OUTPUT_START/OUTPUT_STOP (connector
processes), STREAM_SOURCE/STREAM_LOAD (before an input starts, via :meth:`rewrite` and
:meth:`allowed`), STREAM_ADD/CONFIG/REMOVE (API), INPUT_ABORT (input crashes),
PUSH_OUT_START/PUSH_END/OUTPUT_END/RECORDING_END (pushes) and the DEFAULT_STREAM
resolution children ask for. STREAM_BUFFER comes from the live buffer itself, except
the EMPTY of a buffer killed by a signal (``kill -9``): it had no chance to send it, so
the controller, which saw its last state go by, sends it when it reaps the process.
Stream state triggers (STREAM_READY, STREAM_BUFFER, STREAM_END) come from
:class:`controller.stats.Monitor`'s tick.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from typing import TYPE_CHECKING, Any

from common.streamname import base_name
from controller.triggers import TriggerService
from controller.version import RELEASE, VERSION

if TYPE_CHECKING:
    from controller.server import Controller


class Lifecycle:
    def __init__(self, ctl: Controller, triggers: TriggerService) -> None:
        self.ctl = ctl
        self.triggers = triggers
        self.outputs: dict[str, str] = {}  # running connector key -> its config JSON
        self.buffer_states: dict[str, str] = {}  # stream -> last STREAM_BUFFER state seen

    async def allowed(self, name: str, lines: list[str], stream: str = "") -> bool:
        """A boolean trigger: False only when a configured handler said no."""
        if not self.triggers.configured(name, stream):
            return True
        outcome = await self.triggers.fire(name, lines, stream)
        if not outcome.allow:
            self.ctl.logbook.emit("INFO", f"Trigger {name} refused ({outcome.answer!r})", stream)
        return outcome.allow

    async def rewrite(self, name: str, lines: list[str], stream: str = "") -> str | None:
        """A rewrite trigger: the last blocking answer, None when none is configured."""
        if not self.triggers.configured(name, stream):
            return None
        outcome = await self.triggers.fire(name, lines, stream)
        return outcome.answer if outcome.blocking else None

    async def system_start(self) -> bool:
        return await self.allowed("SYSTEM_START", [f"{VERSION} {RELEASE}"])

    async def system_stop(self, reason: str) -> bool:
        return await self.allowed("SYSTEM_STOP", [reason])

    def watch_outputs(self, running: dict[str, Any]) -> None:
        """OUTPUT_START/OUTPUT_STOP for connectors that started or stopped since the last call."""
        for key, conf in running.items():
            if key not in self.outputs:
                text = json.dumps({k: v for k, v in conf.items() if k != "online"})
                self.outputs[key] = text
                self.triggers.fire_background("OUTPUT_START", [text])
        for key in [k for k in self.outputs if k not in running]:
            self.triggers.fire_background("OUTPUT_STOP", [self.outputs.pop(key)])

    def buffer_state(self, payload: list[str]) -> None:
        """Note a STREAM_BUFFER a live buffer fired (name, state, ...) on its way through."""
        if len(payload) >= 2:
            self.buffer_states[payload[0]] = payload[1]

    def input_exited(self, stream: str, source: str, program: str, pid: int, code: int) -> None:
        """INPUT_ABORT for an input that exited with an error (not our SIGTERM), and
        STREAM_BUFFER EMPTY for a buffer a signal ended while it was not EMPTY (any
        other exit ran the buffer's own ``finally``, which sends it)."""
        state = self.buffer_states.pop(stream, "EMPTY")
        if code < 0 and state != "EMPTY":
            self.triggers.fire_background("STREAM_BUFFER", [stream, "EMPTY"], stream)
        if code == 0 or code == -15:
            return
        if code < 0:
            try:
                signame = signal.Signals(-code).name
            except ValueError:
                signame = f"signal {-code}"
            machine, human = signame, f"{program} was killed by {signame}"
        else:
            machine, human = f"EXIT_{code}", f"{program} exited with code {code}"
        self.triggers.fire_background(
            "INPUT_ABORT", [stream, source, program, str(pid), machine, human], stream
        )

    def push_ended(
        self,
        push_id: int,
        stream: str,
        orig_target: str,
        target: str,
        logs: list[str],
        status: dict[str, Any],
        program: str,
        started: float,
        code: int | None,
        stopped: bool,
        final: dict[str, Any] | None = None,
    ) -> None:
        """PUSH_END, OUTPUT_END and (file targets) RECORDING_END for a finished push.

        ``final`` is what the output reported before exiting (bytes written, first and
        last media ms); without it (a crash) bytes come from the file for recordings
        and the media times are 0."""
        self.triggers.fire_background(
            "PUSH_END",
            [str(push_id), stream, orig_target, target, json.dumps(logs), json.dumps(status)],
            stream,
        )
        found = re.search(r"MistOut(\w+)", program)
        connector = found.group(1) if found else ""
        path = target.partition("?")[0]
        is_file = "://" not in path
        size = 0
        if is_file:
            with contextlib.suppress(OSError):
                size = os.path.getsize(path)
        final = final or {}
        if isinstance(final.get("bytes"), int) and (final["bytes"] or not size):
            size = final["bytes"]
        first, last = final.get("media_first_ms"), final.get("media_last_ms")
        if not (isinstance(first, int) and isinstance(last, int)):
            first = last = 0
        now = time.time()
        said = final.get("reason") if isinstance(final.get("reason"), str) else ""
        if stopped:
            machine, human = "CLEAN_STOP", said or "push stopped"
        elif code == 0:
            machine, human = "CLEAN_EOF", said or "end of stream"
        else:
            machine, human = f"EXIT_{code}", f"push exited with code {code}"
        lines = [
            stream,
            target,
            connector,
            str(size),
            str(int(now - started)),
            str(int(started)),
            str(int(now)),
            str(last - first),
            str(first),
            str(last),
            machine,
            human,
        ]
        if is_file:
            self.triggers.fire_background("RECORDING_END", lines, stream)
        self.triggers.fire_background("OUTPUT_END", lines, stream)

    async def default_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        """``{"default_stream": {stream, host, connector, url}}`` -> ``{"stream": fallback}``.

        The fallback is DEFAULT_STREAM's blocking answer if configured, else
        ``config.defaultStream``; ``$stream``/``$basename``/``$wildcard`` are expanded;
        empty means no fallback."""
        stream = str(body.get("stream", ""))
        configured = self.ctl.store.data["config"].get("defaultStream")
        current = configured if isinstance(configured, str) else ""
        lines = [current, stream, str(body.get("host", "")), str(body.get("connector", ""))]
        lines.append(str(body.get("url", "")))
        answer = await self.rewrite("DEFAULT_STREAM", lines, stream)
        fallback = current if answer is None else answer
        base = base_name(stream)
        wildcard = stream[len(base) + 1 :] if len(stream) > len(base) else ""
        fallback = (
            fallback.replace("$stream", stream)
            .replace("$basename", base)
            .replace("$wildcard", wildcard)
        )
        return {"default_stream": {"stream": fallback, "rid": body.get("rid")}}
