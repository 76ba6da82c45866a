"""Standalone progressive outputs: ``MistOut<FMT> --stream <s> <target>`` writes a file.

This is how recording works (the controller's pushes run ``MistOutMP4 --stream s
/rec/s.mp4`` as MistServer does). The target may carry the usual query parameters
(``/rec/x.flv?video=1&audio=none&start=0&stop=60000``); ``-`` writes to stdout.

Crash safety: every muxed piece is written straight to the file descriptor (no
user-space buffering), so a ``kill -9`` leaves a file that ends at the last complete
piece. Live MP4 recordings are fragmented (ftyp+moov, then moof+mdat per keyframe), so
a partial file still plays; VoD MP4 is written moov-first (progressive). FLV, TS and
MKV are streamable by nature.

Each program answers ``-j`` with its capabilities: ``url_match`` (``/$.mp4``) for the
HTTP dispatcher and ``push_urls`` (``/*.mp4``) for pushes and recordings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from common import triggers
from common.capabilities import Capabilities, Setting
from common.errors import CliError, UsageError
from mistcodecs.errors import FormatError
from outputs.formats import REGISTRY, FormatSpec, FormatUnavailable, format_for_ext
from outputs.http import vod
from outputs.http.message import Request
from outputs.selectors import BadQuery, PlayOptions, parse_query
from shm.model import StreamState

STREAM_WAIT_S = 20.0


class FileSink:
    """A :class:`~outputs.http.message.Sink` writing unbuffered to a file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.written = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.written += n

    async def drain(self) -> None:
        return None

    @property
    def closed(self) -> bool:
        return False


class MediaClock:
    """Wraps a muxer to note the first and last packet times written (for the
    OUTPUT_END/RECORDING_END payload); everything else goes to the muxer."""

    def __init__(self, muxer: Any) -> None:
        self.muxer = muxer
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    def packet(self, p: Any) -> Any:
        if self.first_ms is None:
            self.first_ms = p.dts
        self.last_ms = p.dts
        return self.muxer.packet(p)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.muxer, name)


def connector_formats(spec: FormatSpec) -> list[FormatSpec]:
    """Every format the program behind ``spec`` writes, the preferred one first
    (MistOutEBML: WebM and Matroska), as MistServer describes one connector."""
    group = [s for s in REGISTRY.formats.values() if s.connector == spec.connector] or [spec]
    return sorted(group, key=lambda s: -s.priority)


def capabilities(spec: FormatSpec) -> Capabilities:
    group = connector_formats(spec)
    exts = [e for s in group for e in s.exts]
    video = sorted(set().union(*(s.video for s in group)))
    audio = sorted(set().union(*(s.audio for s in group)))
    names = "/".join(s.name.upper() for s in group)
    return Capabilities(
        name=spec.connector or spec.name.upper(),
        friendly=group[0].hrn,
        desc=f"{group[0].hrn}: serves /<stream>.{exts[0]} through MistOutHTTP and writes "
        f"{names} files (recordings) when run with --stream <s> <file>.",
        kind="connector",
        deps="HTTP",
        url_rel=f"/$.{exts[0]}",
        url_match=[f"/$.{e}" for e in exts],
        push_urls=[f"/*.{e}" for e in exts],
        settings=[
            Setting(
                "wait",
                "Seconds to wait for the stream to become available",
                "uint",
                int(STREAM_WAIT_S),
            )
        ],
        methods=[
            {"handler": "http", "type": s.source_type, "hrn": s.hrn, "priority": s.priority}
            for s in group
        ],
        extra={"codecs": [[video, audio]] if video else [[audio]]},
    )


def split_target(target: str) -> tuple[str, PlayOptions]:
    path, _, query = target.partition("?")
    from urllib.parse import parse_qsl

    try:
        return path, parse_query(dict(parse_qsl(query, keep_blank_values=True)))
    except BadQuery as exc:
        raise CliError(f"bad target parameters: {exc}", 2) from exc


async def open_stream(stream: str, timeout: float) -> Any:
    """A reader for ``stream`` once it is on the bus with tracks (asking the controller)."""
    import shm
    from common.control import NO_CONTROLLER, ensure_input_async

    asked = False
    deadline = time.monotonic() + timeout
    while True:
        try:
            reader = shm.StreamReader(stream)
        except shm.StreamNotFound:
            reader = None
        if reader is not None:
            meta = reader.meta
            if meta.tracks and meta.state in (StreamState.READY, StreamState.SHUTDOWN):
                return reader
            reader.close()
        elif not asked and os.environ.get("MIST_CONTROL") != "none":
            asked = True
            result = await ensure_input_async(stream, timeout=5.0)
            if result.get("status") == "error" and result.get("error") != NO_CONTROLLER:
                raise CliError(f"stream {stream!r} cannot start: {result.get('error')}")
        if time.monotonic() > deadline:
            raise CliError(f"stream {stream!r} is not available", 1)
        await asyncio.sleep(0.1)


async def record(
    spec: FormatSpec, stream: str, target: str, debug: int | None, wait: float = STREAM_WAIT_S
) -> int:
    """Write ``stream`` to ``target`` in ``spec``'s format; returns the bytes written."""
    from common import runtime

    rt = await runtime.start_async(f"MistOut{spec.connector or spec.name.upper()}", stream, debug)
    path, opts = split_target(target)
    reader = await open_stream(stream, wait)
    fd = -1
    sink: FileSink | None = None
    clock: MediaClock | None = None
    span: tuple[int, int] | None = None  # media times of a whole-file MP4 write
    try:
        meta = reader.meta
        try:
            tracks = spec.select(meta.tracks, opts.selectors)
        except BadQuery as exc:
            raise CliError(str(exc), 2) from exc
        if not tracks:
            raise CliError(f"stream {stream!r} has no track {spec.name.upper()} can carry", 2)
        try:
            fd = (
                sys.stdout.fileno()
                if path == "-"
                else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            )
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror}", 1) from exc
        sink = FileSink(fd)
        if spec.name == "mp4" and not meta.live:
            begin = max(min(t.firstms for t in tracks), opts.start or 0)
            end = max(t.lastms for t in tracks)
            span = (begin, end if opts.stop is None else min(end, opts.stop))
            req = Request("GET", "/", "HTTP/1.1", {})
            resp = await vod.progressive_mp4(req, reader, tracks, opts, {}, _reader, stream)
            reader = None
            if resp.stream is None:
                raise CliError(resp.body.decode().strip(), 1)
            await _until_stopped(rt, resp.stream(sink), None, sink)
        else:
            try:
                muxer = spec.build(tracks, meta.live)
            except (FormatUnavailable, FormatError, UsageError) as exc:
                raise CliError(str(exc), 2) from exc
            clock = MediaClock(muxer)
            pump = vod.stream_packets(reader, tracks, opts, clock, sink, meta.live)
            await _until_stopped(rt, pump, muxer, sink)
        rt.log.info("wrote %d bytes to %s", sink.written, path)
        return sink.written
    finally:
        if sink is not None:
            first: int | None = clock.first_ms if clock is not None else None
            last: int | None = clock.last_ms if clock is not None else None
            if span is not None and sink.written:
                first, last = span
            reason = rt.exit_reason or "end of stream"
            triggers.report_output_end(sink.written, first, last, reason)
        if reader is not None:
            reader.close()
        if fd > 2:
            os.close(fd)
        await rt.close()


def _reader(stream: str) -> Any:
    import shm

    return shm.StreamReader(stream)


async def _until_stopped(rt: Any, work: Any, muxer: Any, sink: FileSink) -> None:
    """Run ``work`` until it ends or a stop is requested; then close the file properly."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(rt.wait_stopped())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if muxer is not None:
            sink.write(muxer.end())  # flush what the muxer holds (the open fMP4 fragment)
    else:
        task.result()


def make_main(name: str) -> Callable[..., Any]:
    spec = REGISTRY.formats[name]
    caps = capabilities(spec)

    @click.command(
        name=f"MistOut{caps.name}", context_settings={"help_option_names": ["-h", "--help"]}
    )
    @caps.click_options()
    @click.option("-s", "--stream", "stream", required=True, help="Stream to write.")
    @click.argument("target", default="-")
    def main(stream: str, target: str, debug: int | None, wait: int, **_: Any) -> None:
        """Write a stream to TARGET (a file path with optional ?query, or - for stdout)."""
        chosen = spec
        ext = target.partition("?")[0].rsplit(".", 1)[-1] if "." in target else ""
        other = format_for_ext(ext)
        if other is not None and other.connector == spec.connector:
            chosen = other  # MistOutEBML writes .webm as WebM and .mkv as Matroska
        try:
            asyncio.run(record(chosen, stream, target, debug, float(wait)))
        except CliError as exc:
            click.echo(f"MistOut{caps.name}: {exc}", err=True)
            sys.exit(exc.exit_code)

    return main


mp4_main = make_main("mp4")
flv_main = make_main("flv")
ts_main = make_main("ts")
ebml_main = make_main("mkv")
wav_main = make_main("wav")
mp3_main = make_main("mp3")
aac_main = make_main("aac")
ogg_main = make_main("ogg")


def hls_main() -> None:
    """``MistOutHLS``: capabilities (``-j``); HLS itself is served inside MistOutHTTP."""
    from outputs.hls.main import hls_main as run

    run()


def cmaf_main() -> None:
    """``MistOutCMAF``: capabilities (``-j``); DASH/CMAF is served inside MistOutHTTP."""
    from outputs.hls.main import cmaf_main as run

    run()


PROGRAMS: dict[str, Callable[..., Any]] = {
    "MistOutMP4": mp4_main,
    "MistOutFLV": flv_main,
    "MistOutHTTPTS": ts_main,
    "MistOutEBML": ebml_main,
    "MistOutWAV": wav_main,
    "MistOutMP3": mp3_main,
    "MistOutAAC": aac_main,
    "MistOutOGG": ogg_main,
}

if __name__ == "__main__":
    # ``python -m outputs.standalone MistOutFLV --stream s out.flv`` (same as the console script)
    if len(sys.argv) < 2 or sys.argv[1] not in PROGRAMS:
        sys.exit(f"usage: python -m outputs.standalone {{{','.join(PROGRAMS)}}} [options]")
    program = sys.argv.pop(1)
    PROGRAMS[program](prog_name=program)
