"""The shared VoD input engine: index a file once, publish it, load pages on demand.

A format module provides a :class:`VodFormat`: ``build_index`` turns a file into a
:class:`~inputs.index.MediaIndex` (tracks + one row per frame with where to read it),
``open_loader`` returns a :class:`FrameLoader` that re-reads a range of frames by
position. :class:`VodInput` does the rest, the same for every format:

1. take the stream's writer lock (state INIT), then BOOT with the indexing progress;
2. use the sidecar header (``<file>.dtsh``, or one in the cache dir when the source
   directory is read-only) if it still matches the source's size and mtime, else
   index and write it;
3. publish the tracks and the full index (``StreamWriter.set_index``), state READY;
4. every 250 ms (MistServer's ``INPUT_USER_INTERVAL``), and within 20 ms of a reader
   starting to wait, load the pages readers want (the one they are on and the next),
   unload pages unused for ``pagetimeout`` seconds, and stop after ``inputtimeout``
   seconds without viewers.

Failures (unreadable, empty, unknown or damaged source) are one ERROR line, state
INVALID and exit code :data:`EXIT_INVALID`; a file cut short still plays the frames
it holds, with a warning per problem found.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from common import control, triggers
from common.errors import MediaError
from common.runtime import Runtime
from inputs.index import MediaIndex, TrackIndex, header_candidates, load_header, save_header
from mistcodecs.errors import Truncated
from shm import StreamBusy, StreamWriter
from shm.layout import OFF_EPOCH
from shm.model import AUDIO_CODECS, META_CODECS, VIDEO_CODECS, StreamState

EXIT_OK = 0
EXIT_FAILED = 1  # busy stream, source changed under us: worth a restart
EXIT_INVALID = 2  # the source cannot be played (MistServer's INPUT_ABORT code)
POLL_S = 0.02  # how often the readers' wait epoch is glanced at
MARK_END = OFF_EPOCH + 4  # user page: slot high-water mark (u32), then the wait epoch
SCAN_S = 0.25  # full scan of viewers' wants (MistServer's INPUT_USER_INTERVAL)
MERGE_GAP = 64 * 1024  # frames closer than this are read with one pread
MAX_READ = 16 * 1024 * 1024
ERROR_GRACE_S = 5.0  # a failed input keeps its error on the bus this long at most

KNOWN_CODECS = VIDEO_CODECS | AUDIO_CODECS | META_CODECS
Progress = Callable[[int, int], None]  # (done, total) bytes; raises Interrupted to stop


class Interrupted(Exception):
    """A stop was requested while indexing."""


class SourceError(MediaError):
    """The source cannot be used; the message is shown to the user as is."""


class FrameLoader:
    """Re-reads frames of a track by the positions recorded in its index."""

    def load(self, track: int, frames: TrackIndex, start: int, stop: int) -> Sequence[Any]:
        """Payloads of frames ``start..stop-1`` of ``track`` (the format's track id)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class PositionLoader(FrameLoader):
    """Frames stored whole at ``pos`` (``rsize`` bytes): coalesced ``pread`` calls and an
    optional per-frame ``transform(track, data, aux, pos)`` (byte swaps, block headers...)."""

    def __init__(
        self, path: str, transform: Callable[[int, memoryview, int, int], Any] | None = None
    ) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.transform = transform

    def load(self, track: int, frames: TrackIndex, start: int, stop: int) -> list[Any]:
        order = sorted(range(start, stop), key=frames.pos.__getitem__)
        out: list[Any] = [b""] * (stop - start)
        i = 0
        while i < len(order):
            first = order[i]
            lo = frames.pos[first]
            hi = lo + frames.rsize[first]
            j = i + 1
            while j < len(order):
                n = order[j]
                p = frames.pos[n]
                if p - hi > MERGE_GAP or max(hi, p + frames.rsize[n]) - lo > MAX_READ:
                    break
                hi = max(hi, p + frames.rsize[n])
                j += 1
            buf = os.pread(self.fd, hi - lo, lo)
            if len(buf) < hi - lo:
                raise Truncated(f"file ends at byte {lo + len(buf)}, frame data runs to {hi}")
            view = memoryview(buf)
            for n in order[i:j]:
                a = frames.pos[n] - lo
                data: Any = view[a : a + frames.rsize[n]]
                if self.transform is not None:
                    try:
                        data = self.transform(track, data, frames.aux[n], frames.pos[n])
                    except MediaError:
                        data = b""  # one damaged frame; the engine reports and pads it
                out[n - start] = data
            i = j
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class VodFormat:
    """What a file format contributes (see the module docstring)."""

    name: ClassVar[str] = ""

    def build_index(self, path: str, size: int, progress: Progress) -> MediaIndex:
        raise NotImplementedError

    def open_loader(self, path: str, index: MediaIndex) -> FrameLoader:
        return PositionLoader(path)


def feed_file(
    path: str,
    size: int,
    progress: Progress,
    feed: Callable[[bytes, int], None],
    chunk: int = 256 * 1024,
) -> None:
    """Stream a file through ``feed(data, position)`` with progress reports."""
    done = 0
    with open(path, "rb") as fh:
        while True:
            data = fh.read(chunk)
            if not data:
                break
            feed(data, done)
            done += len(data)
            progress(min(done, size), size)


@dataclass
class Options:
    pagetimeout: float = 15.0
    inputtimeout: float = 30.0
    always_on: bool = False
    cache_dir: str | None = None


class VodInput:
    """One run of a VoD input for ``stream`` from the file ``source``."""

    def __init__(
        self, fmt: VodFormat, stream: str, source: str, rt: Runtime, opts: Options
    ) -> None:
        self.fmt = fmt
        self.stream = stream
        self.source = source
        self.rt = rt
        self.log = rt.log
        self.opts = opts
        self.writer: StreamWriter | None = None
        self.index: MediaIndex | None = None
        self._progress = -1
        self._stat: os.stat_result | None = None
        self._tracks_by_fmt: dict[int, int] = {}  # format track id -> writer track id
        self._left_out: list[str] = []

    # -- top level ------------------------------------------------------------------
    def run(self) -> int:
        try:
            self.writer = StreamWriter(self.stream, live=False, source=self.source)
        except StreamBusy as exc:
            self.log.error("%s", exc)
            return EXIT_FAILED
        try:
            return self._run(self.writer)
        finally:
            self.writer.close()

    def _fail(self, writer: StreamWriter, message: str) -> int:
        self.log.error("%s", message)
        # publish the reason and keep the stream up until a viewer (or the controller)
        # has read it, or ERROR_GRACE_S: exiting at once would take the reason along
        writer.set_error(message)
        writer.linger(ERROR_GRACE_S, self.rt.stopping)
        return EXIT_INVALID

    def _run(self, writer: StreamWriter) -> int:
        writer.set_state(StreamState.BOOT, 0)
        try:
            self._stat = os.stat(self.source)
            if not os.path.isfile(self.source):
                raise SourceError(f"source {self.source} is not a regular file")
            if self._stat.st_size == 0:
                raise SourceError(f"source {self.source} is empty (0 bytes)")
            with open(self.source, "rb"):
                pass
            index = self._get_index(self._stat)
        except Interrupted:
            self.log.info("stopped while indexing (%s)", self.rt.exit_reason)
            return EXIT_OK
        except OSError as exc:
            return self._fail(writer, f"cannot read source {self.source}: {exc.strerror or exc}")
        except MediaError as exc:
            return self._fail(writer, f"cannot play {self.source}: {exc}")
        except Exception as exc:  # a demuxer bug on damaged data must not become a traceback
            self.log.debug("indexing failed", exc_info=True)
            return self._fail(
                writer, f"cannot play {self.source}: {type(exc).__name__}: {exc} (damaged file?)"
            )
        self.index = index
        for warning in index.warnings:
            self.log.warning("%s: %s", self.source, warning)
        tracks = self._publish(writer, index)
        if not tracks:
            why = "; ".join(self._left_out) or "no tracks"
            return self._fail(writer, f"cannot play {self.source}: no playable track ({why})")
        try:
            loader = self.fmt.open_loader(self.source, index)
        except (OSError, MediaError) as exc:
            return self._fail(writer, f"cannot play {self.source}: {exc}")
        writer.set_state(StreamState.READY, 100)
        self.log.info(
            "ready: %s",
            ", ".join(f"{t.codec} ({len(index.frames[t.id])} frames)" for t in index.tracks
                      if t.id in self._tracks_by_fmt),
        )  # fmt: skip
        try:
            return self._serve(writer, tracks, loader)
        finally:
            loader.close()

    # -- index ----------------------------------------------------------------------
    def _report(self, done: int, total: int) -> None:
        if self.rt.stopping.is_set():
            raise Interrupted
        pct = min(99, done * 100 // max(1, total))
        if pct != self._progress and self.writer is not None:
            self._progress = pct
            self.writer.set_state(StreamState.BOOT, pct)

    def _get_index(self, st: os.stat_result) -> MediaIndex:
        places = header_candidates(self.source, self.opts.cache_dir)
        for place in places:
            started = time.monotonic()
            index, why = load_header(place, self.fmt.name, st.st_size, st.st_mtime_ns)
            if index is not None:
                took = time.monotonic() - started
                self.log.info("index loaded from header %s in %.3f s", place, took)
                return index
            if why != "no header":
                self.log.info("header %s not used: %s; indexing again", place, why)
        started = time.monotonic()
        index = self.fmt.build_index(self.source, st.st_size, self._report)
        for meta, idx in index.track_frames():
            moved = idx.make_monotonic()
            if moved:
                index.warnings.append(
                    f"track {meta.id}: {moved} decode time(s) went backwards, clamped"
                )
        frames = sum(len(i) for i in index.frames.values())
        self.log.info(
            "indexed %s in %.3f s: %d tracks, %d frames",
            self.source,
            time.monotonic() - started,
            len(index.tracks),
            frames,
        )
        self._save(places, index, st)
        return index

    def _save(self, places: list[Path], index: MediaIndex, st: os.stat_result) -> None:
        try:
            save_header(places[0], index, st.st_size, st.st_mtime_ns)
            self.log.info("header written to %s", places[0])
            return
        except OSError as exc:
            reason = exc.strerror or str(exc)
        try:
            save_header(places[1], index, st.st_size, st.st_mtime_ns)
            self.log.info(
                "source directory not writable (%s); header cached in %s", reason, places[1]
            )
        except OSError as exc:
            self.log.warning("could not write a header anywhere: %s", exc.strerror or exc)

    # -- publishing -----------------------------------------------------------------
    def _publish(
        self, writer: StreamWriter, index: MediaIndex
    ) -> dict[int, tuple[int, TrackIndex]]:
        """Add tracks and set their indexes; writer track id -> (format track id, index)."""
        out: dict[int, tuple[int, TrackIndex]] = {}
        self._tracks_by_fmt.clear()
        self._left_out = []
        for meta, idx in index.track_frames():
            problem = ""
            if meta.codec not in KNOWN_CODECS:
                problem = f"track {meta.id}: unsupported codec {meta.codec}"
            elif not len(idx):
                problem = f"track {meta.id} ({meta.codec}) has no frames"
            if problem:
                self.log.warning("%s: %s, left out", self.source, problem)
                self._left_out.append(problem)
                continue
            if meta.type == "video" and any(idx.offset):
                meta.extra["bframes"] = 1  # MistServer's meta flag (json_ "bframes")
            if meta.type == "video" and not meta.fpks and len(idx) > 1:
                span = idx.dts[-1] - idx.dts[0]
                if span > 0:
                    meta.fpks = (len(idx) - 1) * 1_000_000 // span
            tid = writer.add_track(meta)
            writer.set_index(tid, idx.parts())
            out[tid] = (meta.id, idx)
            self._tracks_by_fmt[meta.id] = tid
        return out

    # -- serving --------------------------------------------------------------------
    def _serve(
        self, writer: StreamWriter, tracks: dict[int, tuple[int, TrackIndex]], loader: FrameLoader
    ) -> int:
        writer.last_viewer_time = time.monotonic()
        stopping = self.rt.stopping
        users = writer.users.view
        seen = b""
        next_scan = 0.0
        while not stopping.is_set():
            # A reader that needs a page not loaded yet blocks, and before blocking it
            # stores a new wait epoch (and a new reader may raise the slot high-water
            # mark): glancing at those 8 bytes is enough to react within POLL_S.
            now = time.monotonic()
            mark = bytes(users[0:MARK_END])
            if mark == seen and now < next_scan:
                stopping.wait(POLL_S)
                continue
            seen, next_scan = mark, now + SCAN_S
            for tid, page in writer.wanted_pages():
                if stopping.is_set():
                    break
                code = self._load(writer, tracks, loader, tid, page)
                if code is not None:
                    return code
                next_scan = now + POLL_S  # a fast reader (a download) wants the next soon
            writer.unload_unused(self.opts.pagetimeout)
            idle = time.monotonic() - writer.last_viewer_time
            if (
                not writer.has_viewers()
                and not self.opts.always_on
                and idle > self.opts.inputtimeout
            ):
                why = f"no viewers for {self.opts.inputtimeout:.0f}s"
                kind = self.rt.program.removeprefix("MistIn")
                if not control.under_controller() or triggers.unload_allowed(
                    self.stream, kind, why
                ):
                    self.log.info("no viewers for %.0f s; stopping", self.opts.inputtimeout)
                    return EXIT_OK
                writer.last_viewer_time = time.monotonic()  # STREAM_UNLOAD: stay loaded
        self.log.info("stopping (%s)", self.rt.exit_reason or "stop requested")
        return EXIT_OK

    def _load(
        self,
        writer: StreamWriter,
        tracks: dict[int, tuple[int, TrackIndex]],
        loader: FrameLoader,
        tid: int,
        page: int,
    ) -> int | None:
        """Load one page; an exit code if the input must stop."""
        fmt_tid, idx = tracks[tid]
        parts = writer.page_parts(tid, page)
        started = time.monotonic()
        if self._source_changed():  # one stat per page: never mix two versions of a file
            self.log.error("source %s changed while playing; restarting", self.source)
            return EXIT_FAILED
        try:
            payloads = list(loader.load(fmt_tid, idx, parts.start, parts.stop))
            problem = ""
        except (OSError, MediaError) as exc:
            payloads, problem = [], str(exc)
        except Exception as exc:  # a demuxer bug on damaged data: pad the page, keep serving
            self.log.debug("page load failed", exc_info=True)
            payloads, problem = [], f"{type(exc).__name__}: {exc}"
        bad = 0
        if len(payloads) != len(parts):
            payloads = [b""] * len(parts)
            problem = problem or "loader returned the wrong number of frames"
        for i, n in enumerate(parts):
            if len(payloads[i]) != idx.size[n]:
                payloads[i] = bytes(idx.size[n])
                bad += 1
        if bad:
            self.log.error(
                "track %d page %d: %d of %d frames unreadable (%s); sent as zeros",
                tid, page, bad, len(parts), problem or "size differs from the index",
            )  # fmt: skip
        writer.load_page(tid, page, payloads)
        self.log.debug(
            "loaded track %d page %d (%d frames) in %.1f ms",
            tid, page, len(parts), (time.monotonic() - started) * 1000,
        )  # fmt: skip
        return None

    def _source_changed(self) -> bool:
        try:
            st = os.stat(self.source)
        except OSError:
            return True
        old = self._stat
        return old is None or (st.st_size, st.st_mtime_ns) != (old.st_size, old.st_mtime_ns)
