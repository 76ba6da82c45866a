from __future__ import annotations

from pathlib import Path

import pytest

from tests.codecs_flv.media import ffmpeg_flv, pyav_flv


@pytest.fixture(scope="session")
def flv_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("flv")
    return {
        "h264_aac": ffmpeg_flv(d / "h264_aac.flv", "aac"),
        "h264_mp3": ffmpeg_flv(d / "h264_mp3.flv", "libmp3lame"),
        "hevc_aac": pyav_flv(d / "hevc_aac.flv", "libx265", "aac"),
        "vp9_opus": pyav_flv(d / "vp9_opus.flv", "libvpx-vp9", "libopus"),
        "av1_opus": pyav_flv(d / "av1_opus.flv", "libsvtav1", "libopus"),
    }
