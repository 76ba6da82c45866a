"""The ``.dtsh`` sidecar: written once, reused, regenerated when the source changes or
the header is damaged, and kept in the cache dir when it cannot go next to the file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.inputs.support import InputProcess

LOADED = "index loaded from header"
INDEXED = "indexed "


def run_once(module: str, stream: str, path: Path, *args: str) -> str:
    """Start the input, let it publish and exit at once (no viewers); its log."""
    with InputProcess(module, stream, path, "--inputtimeout", "0", *args) as inp:
        assert inp.wait() == 0, inp.stderr
    assert "Traceback" not in inp.stderr
    assert "ready:" in inp.stderr
    return inp.stderr


@pytest.mark.parametrize(("module", "key"), [("ts", "ts"), ("libav", "avi")])
def test_header_written_and_reused(
    module: str, key: str, media: dict[str, Path], tmp_path: Path, stream: str
) -> None:
    src = tmp_path / media[key].name
    shutil.copy(media[key], src)
    log = run_once(module, stream, src)
    assert INDEXED in log and f"header written to {src}.dtsh" in log
    log = run_once(module, stream, src)
    assert LOADED in log and INDEXED not in log


@pytest.mark.parametrize(("module", "key"), [("mp4", "mp4")])
def test_header_written_reused_regenerated(
    module: str, key: str, media: dict[str, Path], tmp_path: Path, stream: str
) -> None:
    src = tmp_path / media[key].name
    shutil.copy(media[key], src)
    header = Path(str(src) + ".dtsh")
    log = run_once(module, stream, src)
    assert INDEXED in log and LOADED not in log
    assert f"header written to {header}" in log
    assert header.stat().st_size > 0

    log = run_once(module, stream, src)
    assert LOADED in log and INDEXED not in log

    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched
    log = run_once(module, stream, src)
    assert "source changed" in log and INDEXED in log

    header.write_bytes(b"\x93junk" * 10)
    log = run_once(module, stream, src)
    assert "not used" in log and INDEXED in log
    assert LOADED in run_once(module, stream, src)


def test_header_goes_to_cache_dir_when_it_cannot_sit_next_to_the_file(
    media: dict[str, Path], tmp_path: Path, stream: str
) -> None:
    src = tmp_path / "clip.mp4"
    shutil.copy(media["mp4"], src)
    Path(str(src) + ".dtsh").mkdir()  # the header's place is taken: writing there fails
    cache = tmp_path / "cache"
    log = run_once("mp4", stream, src, "--cache_dir", str(cache))
    assert "source directory not writable" in log
    cached = list(cache.glob("clip.mp4.*.dtsh"))
    assert len(cached) == 1 and str(cached[0]) in log
    log = run_once("mp4", stream, src, "--cache_dir", str(cache))
    assert f"{LOADED} {cached[0]}" in log
