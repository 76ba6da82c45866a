"""Which analyser reads which committed fixture (shared by the golden and ffprobe tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from click.testing import CliRunner, Result

from analysers import ebml, flv, hls, mp4, ts

FIXTURES = Path(__file__).parent / "fixtures"
MAINS: dict[str, click.Command] = {
    "flv": flv.main,
    "ts": ts.main,
    "mp4": mp4.main,
    "ebml": ebml.main,
    "hls": hls.main,
}
CASES: list[tuple[str, str]] = [
    ("h264_aac.flv", "flv"),
    ("h264_aac.ts", "ts"),
    ("hevc_mp3.ts", "ts"),
    ("h264_aac.mp4", "mp4"),
    ("h264_aac_faststart.mp4", "mp4"),
    ("h264_aac_frag.mp4", "mp4"),
    ("hevc_ac3.mkv", "ebml"),
    ("vp9_opus.webm", "ebml"),
    ("hls/h264_aac.m3u8", "hls"),
]


@contextmanager
def in_fixtures() -> Iterator[None]:
    """Run with relative paths so no checkout location leaks into the output."""
    before = os.getcwd()
    os.chdir(FIXTURES)
    try:
        yield
    finally:
        os.chdir(before)


def analyse(fixture: str, analyser: str, *args: str) -> Result:
    with in_fixtures():
        return CliRunner().invoke(MAINS[analyser], [fixture, *args])
