"""Media for the input tests, made once per session with the ffmpeg CLI."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shm.cleanup import stream_page_names
from tests.inputs.support import ffmpeg, make_media

X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "64k", "-ac", "2"]


@pytest.fixture
def stream() -> Iterator[str]:
    """A unique stream name; the test must leave none of its pages behind."""
    name = f"in{uuid.uuid4().hex[:10]}"
    yield name
    left = stream_page_names(name)
    for n in left:
        try:
            os.unlink(os.path.join("/dev/shm", n))
        except FileNotFoundError:
            pass
    assert not left, f"pages left behind: {left}"


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inputs_media")


@pytest.fixture(scope="session")
def mp4_file(media_dir: Path) -> Path:
    return make_media(media_dir / "h264_aac.mp4", X264, AAC, extra=["-movflags", "+faststart"])


@pytest.fixture(scope="session")
def media(media_dir: Path, mp4_file: Path) -> dict[str, Path]:
    """One file per container the inputs read."""
    d = media_dir
    files = {"mp4": mp4_file}
    files["webm"] = make_media(
        d / "vp9_opus.webm",
        ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "25",
         "-b:v", "200k"],
        ["-c:a", "libopus", "-b:a", "48k"],
        seconds=3,
    )  # fmt: skip
    files["ts"] = make_media(
        d / "hevc_aac.ts",
        ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=25:log-level=none",
         "-pix_fmt", "yuv420p"],
        AAC,
        seconds=3,
    )  # fmt: skip
    files["flv"] = make_media(d / "h264_aac.flv", X264, AAC)
    files["mkv"] = make_media(d / "h264_ac3.mkv", X264, ["-c:a", "ac3", "-b:a", "96k"])
    files["avi"] = make_media(
        d / "h264_mp3.avi", [*X264[:6], "-bf", "0", "-pix_fmt", "yuv420p"],
        ["-c:a", "libmp3lame", "-b:a", "64k"],
    )  # fmt: skip
    return files


@pytest.fixture(scope="session")
def long_mp4(media_dir: Path) -> Path:
    """150 s at a low rate: several data pages per track (pages flip after 60 s)."""
    path = media_dir / "long.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000",
        "-t", "150", "-c:v", "libx264", "-preset", "ultrafast", "-g", "20",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "16k", "-ac", "1", str(path),
    )  # fmt: skip
    return path
