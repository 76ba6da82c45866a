"""Independent verification of downloaded media: decode with PyAV, probe with ffprobe."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av


@dataclass
class Decoded:
    video_pts: list[int]  # ms, presentation order as decoded
    video_keys: int
    audio_frames: int
    audio_samples: int
    errors: int

    @property
    def video_frames(self) -> int:
        return len(self.video_pts)


def decode(path: Path) -> Decoded:
    """Decode every frame (errors counted, never hidden)."""
    pts: list[int] = []
    keys = audio = samples = errors = 0
    with av.open(str(path)) as c:
        streams = [*c.streams.video[:1], *c.streams.audio[:1]]
        for pkt in c.demux(streams):  # the final empty packets flush the decoders
            try:
                frames = pkt.decode()
            except av.error.FFmpegError:
                errors += 1
                continue
            for fr in frames:
                if isinstance(fr, av.VideoFrame):
                    assert fr.pts is not None and fr.time_base is not None
                    pts.append(round(float(fr.pts * fr.time_base) * 1000))
                    keys += bool(fr.key_frame)
                elif isinstance(fr, av.AudioFrame):
                    audio += 1
                    samples += fr.samples
    return Decoded(pts, keys, audio, samples, errors)


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-count_packets",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    return json.loads(out.stdout)
