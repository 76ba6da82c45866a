"""Independent check of what the server delivers: FFmpeg's own HLS/DASH demuxers (PyAV)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import av


@dataclass
class Decoded:
    video_pts: list[float] = field(default_factory=list)  # seconds, presentation order
    audio_pts: list[float] = field(default_factory=list)
    audio_samples: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def video_seconds(self) -> float:
        return (max(self.video_pts) - min(self.video_pts)) if self.video_pts else 0.0

    def video_gaps(self, frame_s: float) -> list[tuple[float, float]]:
        """Consecutive presentation times further apart than 1.5 frames (or equal)."""
        pts = sorted(self.video_pts)
        return [(a, b) for a, b in itertools.pairwise(pts) if not 0 < b - a < 1.5 * frame_s]

    def audio_gaps(self, rate: int) -> list[tuple[float, float]]:
        pts = self.audio_pts
        frame = 1024 / rate
        return [(a, b) for a, b in itertools.pairwise(pts) if not 0 < b - a < 1.5 * frame]


def decode(url: str, seconds: float | None = None, timeout: float = 20.0) -> Decoded:
    """Decode every video and audio frame of ``url`` (up to ``seconds`` of video)."""
    out = Decoded()
    with av.open(url, timeout=timeout) as c:
        streams = [s for s in c.streams if s.type in ("video", "audio")]
        for packet in c.demux(*streams):
            if packet.size and packet.is_corrupt:  # size 0: the end-of-stream flush packet
                out.errors.append(f"corrupt packet at {packet.pts} on {packet.stream.type}")
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                out.errors.append(f"{packet.stream.type}: {exc}")
                continue
            for frame in frames:
                if frame.pts is None or frame.time_base is None:
                    out.errors.append("frame without a timestamp")
                    continue
                t = float(frame.pts * frame.time_base)
                if packet.stream.type == "video":
                    out.video_pts.append(t)
                else:
                    out.audio_pts.append(t)
                    out.audio_samples += frame.samples
            if seconds is not None and out.video_seconds >= seconds:
                break
    return out


def decode_ffprobe(url: str, seconds: float | None = None, timeout: float = 60.0) -> Decoded:
    """Decode with the Debian ffprobe: its FFmpeg has the DASH demuxer (libxml2), PyAV's not."""
    import subprocess

    interval = ["-read_intervals", f"%+{seconds}"] if seconds else []
    proc = subprocess.run(
        ["ffprobe", "-v", "error", *interval,
         "-show_entries", "frame=media_type,pts_time,nb_samples", "-of", "csv=p=0", url],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    out = Decoded()
    out.errors = [line for line in proc.stderr.splitlines() if line.strip()]
    if proc.returncode:
        out.errors.append(f"ffprobe exit {proc.returncode}")
    for line in proc.stdout.splitlines():
        fields = line.strip().strip(",").split(",")
        if len(fields) < 2 or fields[1] in ("", "N/A"):
            continue
        if fields[0] == "video":
            out.video_pts.append(float(fields[1]))
        elif fields[0] == "audio":
            out.audio_pts.append(float(fields[1]))
            out.audio_samples += int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0
    return out
