"""Input lifetime: pages unloaded after the page timeout, exit when idle, clean stops,
crash leftovers, indexing progress on the bus."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from common.runtime import Runtime
from inputs.base import Options, Progress, VodInput
from inputs.index import MediaIndex
from inputs.ts import TsFormat
from shm import StreamReader
from shm import layout as L
from shm.cleanup import cleanup_dead, stream_page_names
from shm.model import StreamState
from tests.inputs.support import InputProcess, read_all, read_tracks, tracks_of, wait_until


def data_pages(stream: str) -> list[str]:
    return [n for n in stream_page_names(stream) if n.startswith("MstData")]


def test_pages_load_on_demand_and_unload_after_page_timeout(long_mp4: Path, stream: str) -> None:
    with InputProcess("mp4", stream, long_mp4, "--pagetimeout", "1", "--inputtimeout", "30") as inp:
        reader = inp.reader()
        try:
            assert data_pages(stream) == []  # nothing read yet: nothing loaded
            video = next(t for t in tracks_of(reader) if t.type == "video")
            page = reader.track_page(video.id)
            c = page.counters()
            assert c[7] - c[6] >= 2, "the long file should span several pages"
            reader.select([video.id])
            reader.seek(0)
            first = reader.read() or (reader.wait_sync(5), reader.read())[1]
            assert first is not None
            assert page.page(0).state == L.PAGE_LOADED
            packets = read_all(reader)  # walks every page
            assert len(packets) + 1 == sum(1 for _ in range(c[0], c[1]))
            # the reader sits on the last page now: every earlier one goes after ~1 s
            wait_until(
                lambda: all(page.page(n).state == L.PAGE_UNLOADED for n in range(c[6], c[7] - 1)),
                what="unused pages unloaded",
            )
            assert page.page(c[7] - 1).state == L.PAGE_LOADED
            names = data_pages(stream)
            assert len(names) == len(tracks_of(reader)) or len(names) == 1, names
        finally:
            reader.close()
        assert inp.stop() == 0
    assert "Traceback" not in inp.stderr


def test_exits_after_input_timeout_without_viewers(media: dict[str, Path], stream: str) -> None:
    with InputProcess("flv", stream, media["flv"], "--inputtimeout", "1") as inp:
        reader = inp.reader()
        read_tracks(reader)
        started = time.monotonic()
        reader.close()
        assert inp.wait(timeout=15) == 0
        assert time.monotonic() - started >= 0.9
    assert "no viewers for 1 s" in inp.stderr
    assert stream_page_names(stream) == []


def test_always_on_outlives_input_timeout_and_sigterm_is_clean(
    media: dict[str, Path], stream: str
) -> None:
    with InputProcess("ebml", stream, media["webm"], "--inputtimeout", "0", "--always_on") as inp:
        reader = inp.reader()
        try:
            read_tracks(reader)
            reader.close()
            time.sleep(0.5)  # past the input timeout: still serving
            assert inp.proc.poll() is None
            reader = StreamReader(stream)
            assert reader.meta.state == StreamState.READY
        finally:
            reader.close()
        assert inp.stop(signal.SIGTERM) == 0
    assert "stopping (SIGTERM)" in inp.stderr
    assert stream_page_names(stream) == []


def test_kill_9_leaves_pages_that_cleanup_dead_removes(media: dict[str, Path], stream: str) -> None:
    with InputProcess("mp4", stream, media["mp4"]) as inp:
        reader = inp.reader()
        read_tracks(reader)
        reader.close()
        inp.proc.kill()
        inp.proc.wait()
    assert stream_page_names(stream), "a killed input leaves its pages"
    cleanup_dead()
    assert stream_page_names(stream) == []


class _Watched(TsFormat):
    """The real TS indexer, looking at the bus each time it reports progress."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.seen: list[tuple[StreamState, int]] = []

    def build_index(self, path: str, size: int, progress: Progress) -> MediaIndex:
        def watch(done: int, total: int) -> None:
            progress(done, total)
            with StreamReader(self.stream) as r:
                m = r.meta
                self.seen.append((m.state, m.progress))

        return super().build_index(path, size, watch)


def test_indexing_progress_is_published(media_dir: Path, stream: str) -> None:
    from tests.inputs.support import make_media

    path = make_media(
        media_dir / "progress.ts", ["-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M"],
        ["-c:a", "aac"], seconds=6, size="640x360",
    )  # fmt: skip
    fmt = _Watched(stream)
    rt = Runtime("MistInTS", stream)
    opts = Options(pagetimeout=1, inputtimeout=0, cache_dir=str(media_dir / "nocache"))
    done = threading.Event()

    def run() -> None:
        try:
            assert VodInput(fmt, stream, str(path), rt, opts).run() == 0
        finally:
            done.set()

    Path(str(path) + ".dtsh").unlink(missing_ok=True)
    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    assert done.is_set()
    states = {s for s, _ in fmt.seen}
    assert states == {StreamState.BOOT}
    percents = [p for _, p in fmt.seen]
    assert percents == sorted(percents) and percents[0] < 50 <= percents[-1]
    assert len(set(percents)) > 2


@pytest.mark.parametrize("module", ["libav"])
def test_busy_stream_refused(module: str, media: dict[str, Path], stream: str) -> None:
    key = {"ebml": "mkv", "libav": "avi"}.get(module, module)
    with InputProcess("mp4", stream, media["mp4"]) as first:
        first.reader().close()
        with InputProcess(module, stream, media[key]) as second:
            assert second.wait() == 1
        assert "already written by pid" in second.stderr
        assert first.stop() == 0


def test_source_changed_while_playing_stops_the_input(
    media: dict[str, Path], tmp_path: Path, stream: str
) -> None:
    import os
    import shutil

    src = tmp_path / "clip.flv"
    shutil.copy(media["flv"], src)
    with InputProcess("flv", stream, src) as inp:
        reader = inp.reader()
        try:
            st = src.stat()
            os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
            reader.seek(0)
            reader.read()  # asks for the first page
            assert inp.wait() == 1
        finally:
            reader.close()
    assert "changed while playing" in inp.stderr
    assert stream_page_names(stream) == []
