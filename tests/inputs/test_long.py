"""A one-hour low-bitrate MP4 (slow): index time, header reuse, seeking deep into it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.inputs.support import InputProcess, ffmpeg, tracks_of

INDEXED = re.compile(r"indexed \S+ in ([0-9.]+) s: 2 tracks, (\d+) frames")


@pytest.mark.slow
def test_one_hour_mp4(tmp_path: Path, stream: str) -> None:
    minute, hour = tmp_path / "minute.mp4", tmp_path / "hour.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x120:r=10", "-f", "lavfi", "-i", "sine=r=8000",
           "-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-g", "20", "-c:a", "aac",
           "-b:a", "8k", str(minute))  # fmt: skip
    ffmpeg("-stream_loop", "59", "-i", str(minute), "-c", "copy", "-movflags", "+faststart",
           str(hour))  # fmt: skip
    with InputProcess("mp4", stream, hour, "--inputtimeout", "0") as inp:
        assert inp.wait() == 0
    m = INDEXED.search(inp.stderr)
    assert m, inp.stderr
    print(f"one-hour MP4 indexed in {m.group(1)} s ({m.group(2)} frames)")
    assert float(m.group(1)) < 5.0

    with InputProcess("mp4", stream, hour) as inp:
        reader = inp.reader()
        try:
            video = next(t for t in tracks_of(reader) if t.type == "video")
            assert abs(video.lastms - 3_600_000) < 5_000
            keys = reader.keys(video.id)
            assert abs(len(keys) - 3600 * 10 // 20) <= 60
            target = 1_800_123
            got = reader.seek(target)
            pkt = None
            while pkt is None or pkt.track != video.id:
                pkt = reader.read()
                if pkt is None:
                    reader.wait_sync(1.0)
            assert pkt.keyframe and pkt.dts == got <= target < got + 2_100
        finally:
            reader.close()
        assert inp.stop() == 0
    assert "index loaded from header" in inp.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("module", "ext"), [("ts", "ts"), ("ebml", "mkv"), ("flv", "flv")])
def test_one_hour_sequential_formats(module: str, ext: str, tmp_path: Path, stream: str) -> None:
    """The formats indexed by one pass over the file: time printed, loose bound."""
    minute, hour = tmp_path / "minute.mp4", tmp_path / f"hour.{ext}"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x120:r=10", "-f", "lavfi", "-i", "sine=r=8000",
           "-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-g", "20", "-c:a", "aac",
           "-b:a", "8k", str(minute))  # fmt: skip
    ffmpeg("-stream_loop", "59", "-i", str(minute), "-c", "copy", str(hour))
    with InputProcess(module, stream, hour, "--inputtimeout", "0") as inp:
        assert inp.wait(timeout=110) == 0
    m = INDEXED.search(inp.stderr)
    assert m, inp.stderr
    print(f"one-hour {ext} indexed in {m.group(1)} s ({m.group(2)} frames)")
    assert float(m.group(1)) < 60.0
    assert abs(int(m.group(2)) - 64_141) < 200
