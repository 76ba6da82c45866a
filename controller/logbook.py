"""The controller's log: every line from itself and its children, kept, shown and filed.

Keeps the last :data:`KEEP` records for the ``log`` API command (which returns the
last 100 as ``[time, kind, msg, stream, pid, exe, line]``), prints records up to the
``-g`` level on stderr (colour-coded by kind when stderr is a TTY) or appends them to
the ``-L`` log file instead.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from common.log import LogRecord, kind_level, kind_of, parse_machine

KEEP = 1000
API_LINES = 100

_COLOURS = {
    "FAIL": "\033[1;31m",
    "ERROR": "\033[31m",
    "WARN": "\033[33m",
    "INFO": "\033[32m",
    "AUTH": "\033[35m",
    "CONF": "\033[36m",
}
_RESET = "\033[0m"
_TRACE = re.compile(r"^(Traceback|\w*(Error|Exception)\b)")


class Logbook:
    """Collects :class:`LogRecord` s and prints the visible ones."""

    def __init__(
        self, debug: int = 4, out: TextIO | None = None, colour: bool | None = None
    ) -> None:
        self.debug = debug
        self.records: deque[LogRecord] = deque(maxlen=KEEP)
        self.out = out or sys.stderr
        self.colour = self.out.isatty() if colour is None else colour
        self.count = 0  # total records, for metrics
        self.listeners: list[Callable[[LogRecord], None]] = []  # e.g. WebSocket clients

    def open_file(self, path: str) -> None:
        """Append to ``path`` instead of stderr (``-L``)."""
        self.out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as we do
        self.colour = False

    def add(self, record: LogRecord) -> None:
        self.records.append(record)
        self.count += 1
        for listener in list(self.listeners):
            listener(record)
        if kind_level(record.kind) <= self.debug:
            self._print(record)

    def emit(
        self, kind: str, message: str, stream: str = "", program: str = "MistController"
    ) -> None:
        """A record of the controller's own."""
        frame = sys._getframe(1)
        where = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
        self.add(LogRecord(time.time(), kind, program, os.getpid(), where, stream, message))

    def child_line(self, line: str, program: str, pid: int, stream: str) -> None:
        """One stderr line of a child: machine format if it is one, else plain text."""
        text = line.rstrip("\r\n")
        if not text:
            return
        record = parse_machine(text)
        if record is None:
            kind = "ERROR" if _TRACE.match(text) else "INFO"
            record = LogRecord(time.time(), kind, program, pid, "", stream, text)
        self.add(record)

    def api_lines(self, count: int = API_LINES) -> list[list[object]]:
        return [r.to_api() for r in list(self.records)[-count:]]

    def clear(self) -> None:
        self.records.clear()

    def _print(self, r: LogRecord) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.time))
        stream = f" {r.stream}:" if r.stream else ""
        kind = r.kind
        if self.colour and kind in _COLOURS:
            kind = f"{_COLOURS[kind]}{kind}{_RESET}"
        try:
            self.out.write(f"[{stamp}] {kind} {r.program}[{r.pid}]{stream} {r.message}\n")
            self.out.flush()
        except (OSError, ValueError):
            pass


class LogbookHandler(logging.Handler):
    """Routes Python logging (aiohttp, asyncio) of the controller into its logbook."""

    def __init__(self, logbook: Logbook) -> None:
        super().__init__(logging.WARNING)
        self.logbook = logbook

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + logging.Formatter().formatException(record.exc_info)
        where = f"{os.path.basename(record.pathname)}:{record.lineno}"
        self.logbook.add(
            LogRecord(
                record.created,
                kind_of(record.levelno),
                "MistController",
                os.getpid(),
                where,
                "",
                msg,
            )
        )

    @classmethod
    def install(cls, logbook: Logbook, names: tuple[str, ...] = ("aiohttp", "asyncio")) -> None:
        for name in names:
            logger = logging.getLogger(name)
            logger.handlers = [cls(logbook)]
            logger.propagate = False
