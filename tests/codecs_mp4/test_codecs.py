"""RFC 6381 codec strings for the tracks of generated files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mistcodecs.mp4 import Mp4Demuxer, buffer_reader
from mistcodecs.mp4.codecs import av1_codec_string, codec_string, vp9_codec_string

EXPECTED = {
    "h264_aac.mp4": [r"avc1\.64[0-9a-f]{4}", r"mp4a\.40\.2"],
    "hevc_aac.mp4": [r"hvc1\.1\.6\.L\d+(\.[0-9A-F]+)*", r"mp4a\.40\.2"],
    "vp9_opus.mp4": [r"vp09\.00\.\d\d\.08", "Opus"],
    "av1.mp4": [r"av01\.0\.\d\dM\.08"],
    "mp3.mp4": [r"mp4a\.6B"],
    "ac3.mp4": ["ac-3"],
    "flac.mp4": ["fLaC"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_codec_strings(media: dict[str, Path], name: str) -> None:
    if name not in media:
        pytest.skip("encoder missing")
    data = media[name].read_bytes()
    demux = Mp4Demuxer(buffer_reader(data), len(data))
    strings = [codec_string(t) for t in demux.tracks()]
    assert len(strings) == len(EXPECTED[name])
    for got, pattern in zip(strings, EXPECTED[name], strict=True):
        assert re.fullmatch(pattern, got), (got, pattern)


def test_av1_and_vp9_fields() -> None:
    assert av1_codec_string(bytes([0x81, 0x08, 0x0C, 0x00])) == "av01.0.08M.08"
    assert av1_codec_string(bytes([0x81, 0x4D, 0xC0, 0x00])) == "av01.2.13H.10"
    assert vp9_codec_string(bytes([1, 0, 0, 0, 2, 31, 0xA2, 1])) == "vp09.02.31.10"
