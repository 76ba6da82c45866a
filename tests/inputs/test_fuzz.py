"""Damaged files through each format's indexer and loader, in process: only our error
types may escape (the engine turns them into one log line), and whatever indexes must
load back with the sizes the index promised."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import MediaError
from inputs.base import VodFormat
from inputs.ebml import EbmlFormat
from inputs.flv import FlvFormat
from inputs.libav import AvFormat
from inputs.mp4 import Mp4Format
from inputs.ts import TsFormat
from tests.inputs.support import make_media

FORMATS: dict[str, tuple[type[VodFormat], str, list[str], list[str]]] = {
    "mp4": (Mp4Format, "f.mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-g", "5"],
            ["-c:a", "aac", "-movflags", "+faststart"]),
    "flv": (FlvFormat, "f.flv", ["-c:v", "libx264", "-preset", "ultrafast", "-g", "5"],
            ["-c:a", "aac"]),
    "ts": (TsFormat, "f.ts", ["-c:v", "libx264", "-preset", "ultrafast", "-g", "5"],
           ["-c:a", "aac"]),
    "ebml": (EbmlFormat, "f.webm", ["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "100k"],
             ["-c:a", "libopus"]),
    "libav": (AvFormat, "f.avi", ["-c:v", "libx264", "-preset", "ultrafast", "-g", "5"],
              ["-c:a", "libmp3lame"]),
}  # fmt: skip
_cache: dict[str, bytes] = {}


def source(key: str) -> bytes:
    if key not in _cache:
        _, name, v, a = FORMATS[key]
        with tempfile.TemporaryDirectory() as d:
            path = make_media(Path(d) / name, v, a, seconds=1, size="96x64")
            _cache[key] = path.read_bytes()
    return _cache[key]


def exercise(fmt: VodFormat, path: Path) -> None:
    try:
        index = fmt.build_index(str(path), path.stat().st_size, lambda _d, _t: None)
    except MediaError:
        return
    try:
        loader = fmt.open_loader(str(path), index)
    except MediaError:
        return
    try:
        for meta, frames in index.track_frames():
            try:
                payloads = loader.load(meta.id, frames, 0, len(frames))
            except (MediaError, OSError):
                continue
            assert len(payloads) == len(frames)
    finally:
        loader.close()


@pytest.mark.parametrize("key", sorted(FORMATS))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_files(key: str, data: st.DataObject) -> None:
    raw = bytearray(source(key))
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 7)),
                               max_size=8), label="flips")  # fmt: skip
    for pos, bit in flips:
        raw[pos] ^= 1 << bit
    fmt_cls, name, _, _ = FORMATS[key]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(bytes(raw[:cut]))
        exercise(fmt_cls(), path)
