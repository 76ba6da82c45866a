"""Damaged sources: a clear error line and a non-zero exit, or a served partial stream
with a warning -- never a traceback, never a hung reader."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from inputs.base import EXIT_INVALID
from tests.inputs.support import InputProcess, ffmpeg, read_tracks

ALL = ["mp4", "flv", "ts", "ebml", "libav"]
KEYS = {"mp4": "mp4", "flv": "flv", "ts": "ts", "ebml": "mkv", "libav": "avi"}


def outcome(module: str, stream: str, path: Path) -> tuple[int, str, int]:
    """(exit code, log, packets read) of one run; reads everything if it gets READY."""
    with InputProcess(module, stream, path) as inp:
        count = 0
        try:
            reader = inp.reader(timeout=20)
        except AssertionError:
            code = inp.wait()
        else:
            try:
                count = len(read_tracks(reader))
            finally:
                reader.close()
            code = inp.stop()
    assert "Traceback" not in inp.stderr, inp.stderr
    return code, inp.stderr, count


def full_count(module: str, stream: str, path: Path) -> int:
    code, _, count = outcome(module, stream, path)
    assert code == 0
    return count


def check(code: int, log: str, count: int) -> None:
    if code == 0:
        assert count > 0
        assert "WARN" in log, f"a damaged file served without a warning:\n{log}"
    else:
        assert code == EXIT_INVALID
        assert "ERROR" in log and "cannot" in log, log


@pytest.mark.parametrize("module", ALL)
def test_cut_at_60_percent(
    module: str, media: dict[str, Path], tmp_path: Path, stream: str
) -> None:
    src = media[KEYS[module]]
    cut = tmp_path / f"cut{src.suffix}"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    code, log, count = outcome(module, stream, cut)
    check(code, log, count)
    if module != "mp4":  # a moov-first MP4 keeps its index; the others lose the tail
        assert (code == 0 and "truncated" in log.lower()) or "damaged" in log.lower()


@pytest.mark.parametrize("module", ALL)
def test_bit_flips_in_the_middle(
    module: str, media: dict[str, Path], tmp_path: Path, stream: str
) -> None:
    src = media[KEYS[module]]
    data = bytearray(src.read_bytes())
    rng = random.Random(f"{module}-flips")
    lo, hi = len(data) * 4 // 10, len(data) * 6 // 10
    for _ in range(64):
        data[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
    bad = tmp_path / f"flipped{src.suffix}"
    bad.write_bytes(bytes(data))
    code, log, count = outcome(module, stream, bad)
    assert code in (0, EXIT_INVALID)
    if code == EXIT_INVALID:
        check(code, log, count)
    else:
        assert count > 0


@pytest.mark.parametrize("module", ALL)
def test_not_media(module: str, tmp_path: Path, stream: str) -> None:
    ext = {"mp4": ".mp4", "flv": ".flv", "ts": ".ts", "ebml": ".mkv", "libav": ".avi"}[module]
    text = tmp_path / f"text{ext}"
    text.write_text("this is a shopping list, not a video\n" * 200)
    code, log, _ = outcome(module, stream, text)
    assert code == EXIT_INVALID and "cannot play" in log


def test_zero_length(tmp_path: Path, stream: str) -> None:
    empty = tmp_path / "empty.ts"
    empty.write_bytes(b"")
    code, log, _ = outcome("ts", stream, empty)
    assert code == EXIT_INVALID and "is empty (0 bytes)" in log


def test_missing_source(tmp_path: Path, stream: str) -> None:
    code, log, _ = outcome("mp4", stream, tmp_path / "nope.mp4")
    assert code == EXIT_INVALID and "cannot read source" in log


def test_truncated_moov_first_mp4_serves_what_it_has(
    media: dict[str, Path], tmp_path: Path, stream: str
) -> None:
    full = full_count("mp4", stream, media["mp4"])
    cut = tmp_path / "cut.mp4"
    shutil.copy(media["mp4"], cut)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    code, log, count = outcome("mp4", stream, cut)
    assert code == 0 and 0 < count < full
    assert "past the end of the file" in log or "truncated" in log


def test_truncated_moov_last_mp4_is_an_error(
    media: dict[str, Path], tmp_path: Path, stream: str
) -> None:
    plain = tmp_path / "plain.mp4"
    ffmpeg("-i", str(media["mp4"]), "-c", "copy", str(plain))  # moov after mdat
    data = plain.read_bytes()
    plain.write_bytes(data[: len(data) * 6 // 10])
    code, log, _ = outcome("mp4", stream, plain)
    assert code == EXIT_INVALID and "no moov box" in log


@pytest.mark.parametrize("module", ALL)
def test_trailing_junk_keeps_every_frame(
    module: str, media: dict[str, Path], tmp_path: Path, stream: str
) -> None:
    src = media[KEYS[module]]
    junk = tmp_path / f"junk{src.suffix}"
    junk.write_bytes(src.read_bytes() + random.Random(module).randbytes(5000))
    full = full_count(module, stream, src)
    code, log, count = outcome(module, stream, junk)
    assert (code, count) == (0, full), log
