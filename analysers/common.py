"""The command line every MistAnalyser shares (reference section 9).

Flags: positional source (file, ``-`` for stdin, ``http(s)://`` URL), ``-D/--detail``,
``-V/--validate`` (paced to media time; exit 4 when data arrives more than 2 s slower
than real time), ``-T/--timeout``, ``-g/--debug``, ``--json``. Exit 0 means valid;
a one-line summary is always printed last.

A format module subclasses :class:`Analyser`: it gets chunks of bytes through
``feed`` and reports through ``emit`` (a human line plus a JSON record) and
``problem``. Media time it has seen goes to ``self.media_ms`` so validation can pace.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO, Any

import click

from common.errors import MediaError

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_ERROR = 2  # could not read the source at all
EXIT_TIMEOUT = 3
EXIT_TOO_SLOW = 4
CHUNK = 64 * 1024
TICK = 0.25  # the main loop checks -T and -V at least this often
READ_AHEAD = 4  # chunks queued ahead of the analyser
MAX_LAG_S = 2.0  # -V: media may fall this far behind the wall clock


class Analyser:
    """Base class: override ``feed`` (and ``finish``)."""

    name = "generic"

    def __init__(
        self, detail: int, as_json: bool, out: IO[str] | None = None, **options: Any
    ) -> None:
        self.detail = detail
        self.as_json = as_json
        self.out = out or sys.stdout
        self.options = options
        self.problems: list[str] = []
        self.media_ms: int | None = None  # latest media timestamp seen, for -V pacing
        self.summary: dict[str, Any] = {}

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Called once at end of input; report truncation etc."""

    def backlog(self) -> Iterator[None]:
        """Work left over from ``feed``/``finish``, one step per yield; each step may
        advance ``media_ms``, and with -V the driver paces between steps (an analyser
        that can only look at its input once it is complete, like MP4, uses this to
        play its samples out in media time)."""
        return iter(())

    def emit(self, text: str, record: dict[str, Any] | None = None, level: int = 1) -> None:
        """Print one finding if ``detail`` is at least ``level``."""
        if self.detail < level:
            return
        if self.as_json:
            self.out.write(
                json.dumps(record if record is not None else {"text": text}, default=_jsonable)
                + "\n"
            )
        else:
            self.out.write(text + "\n")

    def problem(self, text: str) -> None:
        self.problems.append(text)
        if self.as_json:
            self.out.write(json.dumps({"problem": text}) + "\n")
        else:
            self.out.write(f"PROBLEM: {text}\n")

    def summary_line(self) -> str:
        parts = [f"{k}={v}" for k, v in self.summary.items()]
        status = "valid" if not self.problems else f"{len(self.problems)} problem(s)"
        return f"{self.name}: {status}" + (" " + " ".join(parts) if parts else "")


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def output_path(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback for an output file option (``-R``): the directory it goes in must
    exist, so a bad path is a usage error (exit 2) before anything is read."""
    if value is None or value == "-":
        return value
    parent = os.path.dirname(os.path.abspath(value))
    if not os.path.isdir(parent):
        raise click.BadParameter(f"directory {parent} does not exist", param=param)
    if not os.access(parent, os.W_OK):
        raise click.BadParameter(f"directory {parent} is not writable", param=param)
    return value


def open_source(source: str, timeout: float) -> Iterator[bytes]:
    """Yield chunks from a file, stdin (``-``) or an HTTP(S) URL."""
    if source == "-":
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # replaced stdin (click's CliRunner)
            stream: IO[bytes] = sys.stdin.buffer
            while chunk := stream.read(CHUNK):
                yield chunk
            return
        # os.read on the descriptor, not sys.stdin.buffer: a reader thread left blocked
        # in it at exit holds no lock the interpreter's shutdown would need
        while chunk := os.read(fd, CHUNK):
            yield chunk
        return
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=timeout or None) as resp:
            while chunk := resp.read1(CHUNK):
                yield chunk
        return
    with open(source, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


class _Reader:
    """Pulls chunks from the source in a daemon thread so that the main loop wakes up
    every ``TICK`` seconds even while the source is stalled in a blocking read."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=READ_AHEAD)
        self._chunks = chunks
        threading.Thread(target=self._pump, name="analyser-source", daemon=True).start()

    def _pump(self) -> None:
        try:
            for chunk in self._chunks:
                self._queue.put(("data", chunk))
        except BaseException as exc:  # handed to the main thread as is
            self._queue.put(("error", exc))
        else:
            self._queue.put(("end", None))

    def get(self, wait: float) -> tuple[str, Any]:
        """("data", chunk), ("end", None), ("error", exc) or ("idle", None) after ``wait``."""
        try:
            return self._queue.get(timeout=wait)
        except queue.Empty:
            return ("idle", None)


class _Clock:
    """-T and -V bookkeeping: which exit code (if any) the run must end with now."""

    def __init__(self, analyser: Analyser, validate: bool, timeout: float) -> None:
        self.analyser = analyser
        self.validate = validate
        self.timeout = timeout
        self.started = time.monotonic()
        self.first_media: int | None = None

    def verdict(self) -> int | None:
        wall_s = time.monotonic() - self.started
        if self.timeout and wall_s > self.timeout:
            self.analyser.problem(f"timeout after {self.timeout:g} s")
            return EXIT_TIMEOUT
        lag = self.media_lag()
        if lag is not None and lag > MAX_LAG_S:
            media_s = max(0.0, wall_s - lag)
            self.analyser.problem(
                f"data arrives too slowly: {media_s:.1f} s of media in {wall_s:.1f} s"
            )
            return EXIT_TOO_SLOW
        return None

    def media_lag(self) -> float | None:
        """Seconds the media is behind the wall clock (negative: ahead), with -V."""
        media_ms = self.analyser.media_ms
        if not self.validate or media_ms is None:
            return None
        if self.first_media is None:
            self.first_media = media_ms
        return (time.monotonic() - self.started) - (media_ms - self.first_media) / 1000

    def pace(self) -> int | None:
        """With -V, wait until the wall clock catches up with the media seen so far,
        checking the timeout every tick. Returns an exit code if the run must end."""
        while True:
            if (code := self.verdict()) is not None:
                return code
            lag = self.media_lag()
            if lag is None or lag >= 0:
                return None
            time.sleep(min(-lag, TICK))


def run(analyser: Analyser, chunks: Iterator[bytes], validate: bool, timeout: float) -> int:
    """Drive an analyser over chunks; returns the exit code. The source is read in a
    thread, so -T and -V's exit 4 fire on a stalled source too."""
    clock = _Clock(analyser, validate, timeout)
    reader = _Reader(chunks)
    code: int | None = None
    try:
        while code is None:
            kind, value = reader.get(TICK)
            if kind == "error":
                raise value
            if kind == "data":
                analyser.feed(value)
            elif kind == "end":
                analyser.finish()
            code = _work_off(analyser, clock)
            if kind == "end":
                break
    except MediaError as exc:
        analyser.problem(str(exc))
    except (OSError, ValueError) as exc:
        analyser.problem(f"cannot read source: {exc}")
        print(analyser.summary_line(), file=analyser.out)
        return EXIT_ERROR
    print(analyser.summary_line(), file=analyser.out)
    if code is not None:
        return code
    return EXIT_OK if not analyser.problems else EXIT_PROBLEMS


def _work_off(analyser: Analyser, clock: _Clock) -> int | None:
    """Run the analyser's backlog, pacing between steps; the exit code if the run ends."""
    for _step in analyser.backlog():
        if (code := clock.pace()) is not None:
            return code
    return clock.pace()


def make_main(
    factory: Callable[..., Analyser],
    description: str,
    extra_options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] | None = None,
    source_chunks: Callable[[str, float, dict[str, Any]], Iterator[bytes]] | None = None,
) -> click.Command:
    """Build the click command for one analyser. ``extra_options`` are click decorators
    for format-specific flags (``-F``, ``-P``, ``-R``...); their values reach the
    factory as keyword arguments. ``source_chunks`` replaces :func:`open_source`
    (the RTMP and HLS analysers fetch differently)."""

    @click.command(help=description)
    @click.argument("source", default="-")
    @click.option("-D", "--detail", type=click.IntRange(0, 10), default=2, show_default=True)
    @click.option(
        "-V", "--validate", is_flag=True, help="Pace to media time; exit 4 if data is too slow."
    )
    @click.option(
        "-T",
        "--timeout",
        type=float,
        default=0.0,
        help="Give up after this many seconds (0: never).",
    )
    @click.option("-g", "--debug", type=click.IntRange(0, 10), default=3)
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    def command(
        source: str,
        detail: int,
        validate: bool,
        timeout: float,
        debug: int,
        as_json: bool,
        **extra: Any,
    ) -> None:
        analyser = factory(detail=detail, as_json=as_json, **extra)
        opener = source_chunks or (lambda s, t, _opts: open_source(s, t))
        try:
            chunks = opener(source, timeout, extra)
        except OSError as exc:
            click.echo(f"{analyser.name}: cannot open {source}: {exc}", err=True)
            sys.exit(EXIT_ERROR)
        sys.exit(run(analyser, chunks, validate, timeout))

    for decorate in reversed(extra_options or []):
        command = decorate(command)
    return command
