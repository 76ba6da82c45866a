"""Test media made at test time with the ffmpeg CLI, and ffprobe helpers to compare with."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shm.model import Packet, TrackMeta

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFPROBE = shutil.which("ffprobe") or "ffprobe"
VIDEO_IN = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25"]
SRT = "1\n00:00:00,200 --> 00:00:00,900\nHello\n\n2\n00:00:01,000 --> 00:00:01,500\nWorld\n"


def _audio_in(rate: int = 48000, channels: int = 1) -> list[str]:
    layout = "mono" if channels == 1 else "stereo"
    return [
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate={rate},aformat=channel_layouts={layout}",
    ]


def has_encoder(name: str) -> bool:
    out = subprocess.run(
        [FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    return any(line.split()[1:2] == [name] for line in out.splitlines() if line.startswith(" "))


# name -> (file suffix, ffmpeg arguments between inputs/outputs)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "vp9_opus": (
        ".webm",
        [
            *VIDEO_IN,
            *_audio_in(),
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "10",
            "-c:a",
            "libopus",
        ],
    ),
    "vp8_vorbis": (
        ".webm",
        [
            *VIDEO_IN,
            *_audio_in(44100, 2),
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-g",
            "10",
            "-c:a",
            "libvorbis",
        ],
    ),
    "h264_aac": (
        ".mkv",
        [
            *VIDEO_IN,
            *_audio_in(),
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-bf",
            "3",
            "-x264-params",
            "b-adapt=0",
            "-g",
            "12",
            "-c:a",
            "aac",
        ],
    ),
    "hevc_ac3": (
        ".mkv",
        [
            *VIDEO_IN,
            *_audio_in(48000, 2),
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=none:bframes=3",
            "-g",
            "12",
            "-c:a",
            "ac3",
        ],
    ),
    "av1": (".mkv", [*VIDEO_IN, "-c:v", "libaom-av1", "-cpu-used", "8", "-g", "10"]),
    "pcm": (".mkv", [*_audio_in(44100, 2), "-c:a", "pcm_s16le"]),
    "mp3_in_mkv": (".mkv", [*_audio_in(44100), "-c:a", "libmp3lame"]),
}


def make(path: Path, variant: str, seconds: float = 2.0) -> Path:
    suffix, args = VARIANTS[variant]
    if variant == "av1" and not has_encoder("libaom-av1"):
        pytest.skip("no AV1 encoder in ffmpeg")
    out = path.with_suffix(suffix)
    cmd = [
        FFMPEG,
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        *args,
        "-t",
        str(seconds),
        out.as_posix(),
    ]
    subprocess.run(cmd, check=True, timeout=60)
    return out


def make_subtitled(path: Path, fmt: str) -> Path:
    """H264 video with an SRT (``srt``) or WebVTT (``webvtt``) subtitle track."""
    srt = path.with_suffix(".srt")
    srt.write_text(SRT)
    out = path.with_suffix(".mkv")
    cmd = [
        FFMPEG,
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        *VIDEO_IN,
        "-i",
        srt.as_posix(),
        "-t",
        "2",
    ]
    cmd += ["-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:s", fmt, out.as_posix()]
    subprocess.run(cmd, check=True, timeout=60)
    return out


@dataclass
class ProbePacket:
    stream: int
    pts_ms: float | None
    keyframe: bool
    size: int


def probe_packets(path: Path) -> list[ProbePacket]:
    cmd = [
        FFPROBE,
        "-v",
        "error",
        "-show_packets",
        "-show_entries",
        "packet=stream_index,pts_time,flags,size",
        "-of",
        "json",
        path.as_posix(),
    ]
    data = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    out = []
    for p in data.get("packets", []):
        pts = p.get("pts_time")
        out.append(
            ProbePacket(
                int(p["stream_index"]),
                float(pts) * 1000 if pts not in (None, "N/A") else None,
                "K" in p.get("flags", ""),
                int(p["size"]),
            )
        )
    return out


def probe_streams(path: Path) -> list[dict[str, Any]]:
    cmd = [FFPROBE, "-v", "error", "-show_streams", "-of", "json", path.as_posix()]
    return list(
        json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)[
            "streams"
        ]
    )


def count_frames(path: Path) -> dict[int, int]:
    """Decoded frames per stream index (independent decoder), and no decode errors."""
    cmd = [
        FFPROBE,
        "-v",
        "error",
        "-count_frames",
        "-show_entries",
        "stream=index,nb_read_frames",
        "-of",
        "json",
        path.as_posix(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert res.stderr.strip() == "", res.stderr
    return {
        int(s["index"]): int(s.get("nb_read_frames", 0)) for s in json.loads(res.stdout)["streams"]
    }


def split(events: list[TrackMeta | Packet]) -> tuple[list[TrackMeta], dict[int, list[Packet]]]:
    tracks = [e for e in events if isinstance(e, TrackMeta)]
    packets: dict[int, list[Packet]] = {t.id: [] for t in tracks}
    for e in events:
        if isinstance(e, Packet):
            packets[e.track].append(e)
    return tracks, packets


FFPROBE_CODEC = {
    "H264": "h264",
    "HEVC": "hevc",
    "AV1": "av1",
    "VP8": "vp8",
    "VP9": "vp9",
    "AAC": "aac",
    "opus": "opus",
    "vorbis": "vorbis",
    "AC3": "ac3",
    "MP3": "mp3",
    "PCM": "pcm_s16le",
}
