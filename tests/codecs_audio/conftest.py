from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.codecs_ebml.media import FFMPEG


def _make(out: Path, rate: int, channels: int, codec: list[str], seconds: float = 2.0) -> Path:
    layout = "mono" if channels == 1 else "stereo"
    src = f"sine=frequency=440:sample_rate={rate},aformat=channel_layouts={layout}"
    cmd = [
        FFMPEG,
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        src,
        "-t",
        str(seconds),
        *codec,
        out.as_posix(),
    ]
    subprocess.run(cmd, check=True, timeout=60)
    return out


@pytest.fixture(scope="session")
def audio_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("audio")
    return {
        "opus": _make(base / "a.opus", 48000, 2, ["-c:a", "libopus"]),
        "vorbis": _make(base / "a.ogg", 44100, 2, ["-c:a", "libvorbis"]),
        "wav16": _make(base / "a16.wav", 44100, 2, ["-c:a", "pcm_s16le"]),
        "wav8": _make(base / "a8.wav", 8000, 1, ["-c:a", "pcm_u8"]),
        "wav24": _make(base / "a24.wav", 48000, 2, ["-c:a", "pcm_s24le"]),
        "mp3": _make(base / "a.mp3", 44100, 2, ["-c:a", "libmp3lame", "-b:a", "128k"]),
        "mp3_22k": _make(
            base / "b.mp3", 22050, 1, ["-c:a", "libmp3lame", "-b:a", "32k", "-id3v2_version", "0"]
        ),
    }
