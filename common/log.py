"""Logging for every mistpy program, in MistServer's levels and line format.

Standalone, a program logs human lines to stderr::

    [12:00:01] WARN  MistOutRTMP[4711] live: client went away

Under the controller (env ``MIST_CHILD=1``) it writes MistServer's machine format
instead (reference 2.2), one record per line on stderr, which the controller reads
from the child's stderr pipe::

    KIND|PROGRAM|PID|FILE:LINE|STREAM|message

Newlines inside a message are escaped (``\\n``) so one record stays one line.
Debug levels are MistServer's 0..10 (``-g``): a record of kind K is shown when
``LEVELS[K] <= debug``; the default level is 4 (INFO), or ``MIST_DEBUG`` if set.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass

from common.text import is_decimal

# MistServer's kinds and their debug level (lib/defines.h); extra kinds are INFO-level.
LEVELS: dict[str, int] = {
    "FAIL": 1,
    "ERROR": 2,
    "WARN": 3,
    "INFO": 4,
    "MEDIUM": 5,
    "HIGH": 6,
    "VERYHIGH": 7,
    "EXTREME": 8,
    "INSANE": 9,
    "DONTEVEN": 10,
}
DEFAULT_DEBUG = 4
SPECIAL_KINDS = ("CONF", "AUTH", "STRM", "PUSH", "ACCS", "SESS")  # controller event kinds

# Python logging level for each Mist kind: the standard levels line up with FAIL..INFO.
_PY_LEVEL = {
    "FAIL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "INFO": logging.INFO,
    "MEDIUM": 15,
    "HIGH": logging.DEBUG,
    "VERYHIGH": 8,
    "EXTREME": 6,
    "INSANE": 4,
    "DONTEVEN": 2,
}
_KIND_OF_PY = sorted(((py, kind) for kind, py in _PY_LEVEL.items()), reverse=True)
for _kind in ("MEDIUM", "VERYHIGH", "EXTREME", "INSANE", "DONTEVEN"):
    logging.addLevelName(_PY_LEVEL[_kind], _kind)


def kind_level(kind: str) -> int:
    """The debug level at which records of ``kind`` are shown."""
    return LEVELS.get(kind, DEFAULT_DEBUG)


def py_level(debug: int) -> int:
    """The Python logging threshold that shows exactly the kinds up to ``debug``."""
    if debug <= 0:
        return logging.CRITICAL + 10
    by_level = {lvl: kind for kind, lvl in LEVELS.items()}
    return _PY_LEVEL[by_level[min(10, debug)]]


def kind_of(levelno: int) -> str:
    """The Mist kind for a Python logging level (rounding towards more severe)."""
    for py, kind in _KIND_OF_PY:
        if levelno >= py:
            return kind
    return "DONTEVEN"


def env_debug() -> int:
    """The debug level from ``MIST_DEBUG`` (set by the controller), else the default."""
    try:
        return max(0, min(10, int(os.environ.get("MIST_DEBUG", DEFAULT_DEBUG))))
    except ValueError:
        return DEFAULT_DEBUG


@dataclass(frozen=True)
class LogRecord:
    """One parsed log line (the controller's view)."""

    time: float
    kind: str
    program: str
    pid: int
    line: str  # FILE:LINE
    stream: str
    message: str

    def to_api(self) -> list[object]:
        """MistServer's API log entry ``[time, kind, msg, stream, pid, exe, line]``."""
        return [
            int(self.time),
            self.kind,
            self.message,
            self.stream,
            self.pid,
            self.program,
            self.line,
        ]


def format_machine(kind: str, program: str, pid: int, where: str, stream: str, message: str) -> str:
    """One machine-format line (without the newline)."""
    clean = message.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "")
    return f"{kind}|{program}|{pid}|{where}|{stream.replace('|', '_')}|{clean}"


def parse_machine(line: str, now: float | None = None) -> LogRecord | None:
    """Parse one machine-format line; ``None`` if it is not one (e.g. a traceback line)."""
    parts = line.rstrip("\r\n").split("|", 5)
    if len(parts) != 6 or not parts[0].isupper() or not is_decimal(parts[2]):
        return None
    kind, program, pid, where, stream, message = parts
    message = message.replace("\\n", "\n").replace("\\\\", "\\")
    return LogRecord(
        time.time() if now is None else now, kind, program, int(pid), where, stream, message
    )


class MachineFormatter(logging.Formatter):
    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        kind = getattr(record, "kind", None) or kind_of(record.levelno)
        where = f"{os.path.basename(record.pathname)}:{record.lineno}"
        stream = str(getattr(record, "stream", "") or "")
        return format_machine(kind, self.program, os.getpid(), where, stream, msg)


class HumanFormatter(logging.Formatter):
    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        kind = getattr(record, "kind", None) or kind_of(record.levelno)
        stream = getattr(record, "stream", "") or ""
        prefix = f"{stream}: " if stream else ""
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"[{stamp}] {kind:<5} {self.program}[{os.getpid()}] {prefix}{msg}"


class StreamAdapter(logging.LoggerAdapter[logging.Logger]):
    """Adds ``stream`` to every record so the controller can attribute it."""

    def process(self, msg: object, kwargs: dict) -> tuple[object, dict]:  # type: ignore[override]
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("stream", (self.extra or {}).get("stream", ""))
        kwargs["extra"] = extra
        return msg, kwargs


_configured: set[str] = set()


def get_logger(
    program: str, stream: str = "", debug: int | None = None
) -> logging.LoggerAdapter[logging.Logger]:
    """The logger of ``program`` (e.g. ``"MistOutRTMP"``), set up once per program.

    ``log.warning("...")`` etc. work as usual; ``log.log(py_level_for("HIGH"), ...)``
    reaches the finer Mist levels, ``extra={"stream": s}`` overrides the stream.
    """
    logger = logging.getLogger(f"mist.{program}")
    if program not in _configured:
        _configured.add(program)
        handler = logging.StreamHandler(sys.stderr)
        child = os.environ.get("MIST_CHILD") == "1"
        handler.setFormatter(MachineFormatter(program) if child else HumanFormatter(program))
        logger.addHandler(handler)
        logger.propagate = False
    set_debug(logger, env_debug() if debug is None else debug)
    return StreamAdapter(logger, {"stream": stream})


def set_debug(logger: logging.Logger | logging.LoggerAdapter[logging.Logger], debug: int) -> None:
    """Show kinds up to ``debug`` (0..10)."""
    target = logger.logger if isinstance(logger, logging.LoggerAdapter) else logger
    target.setLevel(py_level(debug))


def py_level_for(kind: str) -> int:
    """The Python logging level of a Mist kind, for ``log.log(py_level_for("HIGH"), ...)``."""
    return _PY_LEVEL.get(kind, _PY_LEVEL["INFO"])
