"""The analyser's segment readers on damaged bytes: only FormatError may escape, and
damage is reported as problems rather than crashing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysers.hls import fmp4_timing, init_timescales, resolve, ts_timing
from mistcodecs.errors import FormatError


@pytest.fixture(scope="module")
def fmp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs the ffmpeg CLI")
    root = tmp_path_factory.mktemp("fmp4")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "2",
         "-pix_fmt", "yuv420p", "-c:v", "libx264", "-g", "25", "-f", "hls", "-hls_time", "1",
         "-hls_segment_type", "fmp4", "-hls_playlist_type", "vod", str(root / "index.m3u8")],
        check=True, timeout=60,
    )  # fmt: skip
    return root


def test_readers_on_good_fmp4(fmp4: Path) -> None:
    scales = init_timescales((fmp4 / "init.mp4").read_bytes())
    assert list(scales.values()) == [12800]
    timing, problems = fmp4_timing((fmp4 / "index0.m4s").read_bytes(), scales)
    assert problems == [] and timing.start_ms == 0 and timing.end_ms == 1000


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_damaged_fmp4_only_format_errors(fmp4: Path, data: st.DataObject) -> None:
    init = (fmp4 / "init.mp4").read_bytes()
    seg = (fmp4 / "index0.m4s").read_bytes()
    cut = data.draw(st.integers(0, len(init)))
    flip = data.draw(st.integers(0, len(seg) - 1))
    damaged_seg = bytearray(seg)
    damaged_seg[flip] ^= data.draw(st.integers(1, 255))
    try:
        scales = init_timescales(init[:cut])
    except FormatError:
        scales = {1: 12800}
    for candidate in (
        bytes(damaged_seg),
        seg[: data.draw(st.integers(0, len(seg)))],
        seg + b"junk",
    ):
        try:
            fmp4_timing(candidate, scales)
        except FormatError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes(blob: bytes) -> None:
    for reader in (init_timescales, lambda b: fmp4_timing(b, {1: 1000}), ts_timing):
        try:
            reader(blob)
        except FormatError:
            pass
    timing, problems = ts_timing(b"\x47" + blob)
    assert problems or timing.start_ms is not None


def test_resolve() -> None:
    assert resolve("http://h/a/b/index.m3u8", "x.ts") == "http://h/a/b/x.ts"
    assert resolve("http://h/a/b/index.m3u8", "../c/x.ts") == "http://h/a/c/x.ts"
    assert resolve("http://h/a/index.m3u8", "https://o/x.ts") == "https://o/x.ts"
    assert resolve("/srv/hls/index.m3u8", "1/x.ts") == "/srv/hls/1/x.ts"
    assert resolve("/srv/hls/index.m3u8", "/abs/x.ts") == "/abs/x.ts"
