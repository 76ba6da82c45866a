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
import sys
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


class Analyser:
    """Base class: override ``feed`` (and ``finish``)."""

    name = "generic"

    def __init__(self, detail: int, as_json: bool, out: IO[str] | None = None, **options: Any) -> None:
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

    def emit(self, text: str, record: dict[str, Any] | None = None, level: int = 1) -> None:
        """Print one finding if ``detail`` is at least ``level``."""
        if self.detail < level:
            return
        if self.as_json:
            self.out.write(json.dumps(record if record is not None else {"text": text}, default=_jsonable) + "\n")
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


def open_source(source: str, timeout: float) -> Iterator[bytes]:
    """Yield chunks from a file, stdin (``-``) or an HTTP(S) URL."""
    if source == "-":
        stream: IO[bytes] = sys.stdin.buffer
        while chunk := stream.read1(CHUNK) if hasattr(stream, "read1") else stream.read(CHUNK):
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


def run(analyser: Analyser, chunks: Iterator[bytes], validate: bool, timeout: float) -> int:
    """Drive an analyser over chunks; returns the exit code."""
    started = time.monotonic()
    first_media: int | None = None
    try:
        for chunk in chunks:
            analyser.feed(chunk)
            if timeout and time.monotonic() - started > timeout:
                analyser.problem(f"timeout after {timeout:g} s")
                print(analyser.summary_line(), file=analyser.out)
                return EXIT_TIMEOUT
            if validate and analyser.media_ms is not None:
                if first_media is None:
                    first_media = analyser.media_ms
                media_s = (analyser.media_ms - first_media) / 1000
                wall_s = time.monotonic() - started
                if wall_s - media_s > 2.0:
                    analyser.problem(f"data arrives too slowly: {media_s:.1f} s of media in {wall_s:.1f} s")
                    print(analyser.summary_line(), file=analyser.out)
                    return EXIT_TOO_SLOW
                if media_s > wall_s:  # paced to real time
                    time.sleep(min(media_s - wall_s, 1.0))
        analyser.finish()
    except MediaError as exc:
        analyser.problem(str(exc))
    except (OSError, ValueError) as exc:
        analyser.problem(f"cannot read source: {exc}")
        print(analyser.summary_line(), file=analyser.out)
        return EXIT_ERROR
    print(analyser.summary_line(), file=analyser.out)
    return EXIT_OK if not analyser.problems else EXIT_PROBLEMS


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
    @click.option("-V", "--validate", is_flag=True, help="Pace to media time; exit 4 if data is too slow.")
    @click.option("-T", "--timeout", type=float, default=0.0, help="Give up after this many seconds (0: never).")
    @click.option("-g", "--debug", type=click.IntRange(0, 10), default=3)
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    def command(source: str, detail: int, validate: bool, timeout: float, debug: int, as_json: bool, **extra: Any) -> None:
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
