"""Indexing a one-hour low-bitrate file: timing printed, results checked."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from mistcodecs.mp4 import open_file
from mistcodecs.mp4.progressive import Mp4ProgressiveMuxer


@pytest.mark.slow
def test_one_hour_index_time(tmp_path: Path) -> None:
    minute = tmp_path / "minute.mp4"
    hour = tmp_path / "hour.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=5", "-f", "lavfi",
         "-i", "sine=r=8000", "-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10",
         "-c:a", "aac", "-b:a", "8k", str(minute)],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-stream_loop",
            "59",
            "-i",
            str(minute),
            "-c",
            "copy",
            str(hour),
        ],
        check=True,
    )
    started = time.perf_counter()
    demux, fh = open_file(str(hour))
    try:
        tracks = demux.tracks()
        index = {t.id: demux.sample_table(t.id) for t in tracks}
        indexed = time.perf_counter() - started
        started = time.perf_counter()
        muxer = Mp4ProgressiveMuxer(tracks, index)
        header = muxer.header()
        laid_out = time.perf_counter() - started
    finally:
        fh.close()
    samples = {t.id: len(index[t.id]) for t in tracks}
    print(json.dumps({"index_s": round(indexed, 3), "progressive_layout_s": round(laid_out, 3),
                      "samples": samples, "header_bytes": len(header), "file_bytes": hour.stat().st_size}))  # fmt: skip
    video = next(t for t in tracks if t.type == "video")
    assert abs(samples[video.id] - 3600 * 5) <= 5
    assert abs(index[video.id].duration_ms - 3_600_000) <= 5000  # loop joins add small gaps
    assert indexed < 5.0
