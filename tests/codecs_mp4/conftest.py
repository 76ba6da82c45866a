"""Test media for the MP4 codec tests, made once per session with the ffmpeg CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

VIDEO = ["-f", "lavfi", "-i", "testsrc2=s=160x120:r=25"]
AUDIO = ["-f", "lavfi", "-i", "sine=r=48000:f=440"]

CASES: dict[str, list[str]] = {
    "h264_aac.mp4": [*VIDEO, *AUDIO, "-t", "3", "-c:v", "libx264", "-bf", "2", "-g", "25", "-c:a", "aac"],
    "faststart.mp4": [*VIDEO, *AUDIO, "-t", "3", "-c:v", "libx264", "-bf", "2", "-g", "25", "-c:a", "aac", "-movflags", "+faststart"],
    "frag.mp4": [*VIDEO, *AUDIO, "-t", "3", "-c:v", "libx264", "-bf", "2", "-g", "25", "-c:a", "aac", "-movflags", "frag_keyframe+empty_moov"],
    "h264_aac.mov": [*VIDEO, *AUDIO, "-t", "3", "-c:v", "libx264", "-bf", "2", "-g", "25", "-c:a", "aac"],
    "hevc_aac.mp4": [*VIDEO, *AUDIO, "-t", "2", "-c:v", "libx265", "-x265-params", "log-level=error", "-tag:v", "hvc1", "-c:a", "aac"],
    "vp9_opus.mp4": [*VIDEO, *AUDIO, "-t", "2", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"],
    "av1.mp4": [*VIDEO, "-t", "1", "-c:v", "libsvtav1", "-preset", "12"],
    "delayed_audio.mp4": [*VIDEO, "-itsoffset", "0.5", *AUDIO, "-t", "2", "-c:v", "libx264", "-bf", "2", "-c:a", "aac", "-shortest"],
    "mp3.mp4": [*AUDIO, "-t", "1", "-c:a", "libmp3lame"],
    "ac3.mp4": [*AUDIO, "-t", "1", "-c:a", "ac3"],
    "flac.mp4": [*AUDIO, "-t", "1", "-c:a", "flac", "-strict", "-2"],
    "pcm_le.mov": [*AUDIO, "-t", "1", "-c:a", "pcm_s16le"],
    "pcm_be.mov": [*AUDIO, "-t", "1", "-c:a", "pcm_s16be"],
}  # fmt: skip


def make(path: Path, args: list[str]) -> bool:
    proc = subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(path)], capture_output=True)
    return proc.returncode == 0 and path.exists()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mp4media")
    out = {}
    for name, args in CASES.items():
        if make(root / name, args):
            out[name] = root / name
    return out


def ffprobe_packets(path: Path) -> dict[int, list[dict]]:
    """ffprobe's packets per stream index."""
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-show_packets", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
    )
    data = json.loads(proc.stdout)
    per: dict[int, list[dict]] = {s["index"]: [] for s in data["streams"]}
    for p in data.get("packets", []):
        per[p["stream_index"]].append(p)
    return per


def ffprobe_streams(path: Path) -> list[dict]:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-count_frames", "-of", "json", str(path)],
        capture_output=True,
        check=True,
    )
    return json.loads(proc.stdout)["streams"]
