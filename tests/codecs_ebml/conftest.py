from __future__ import annotations

from pathlib import Path

import pytest

from tests.codecs_ebml.media import make


@pytest.fixture(scope="session")
def ebml_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generated once per session; AV1 only when ffmpeg has an encoder for it."""
    base = tmp_path_factory.mktemp("ebml")
    files: dict[str, Path] = {}
    for name in ("vp9_opus", "vp8_vorbis", "h264_aac", "hevc_ac3", "pcm", "mp3_in_mkv"):
        files[name] = make(base / name, name)
    return files


@pytest.fixture(scope="session")
def av1_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("av1") / "av1", "av1", seconds=1.0)
