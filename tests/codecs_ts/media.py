"""Test media made at run time with the ffmpeg CLI, and reference readings via PyAV."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import av

from mistcodecs.ts import TsDemuxer
from shm.model import Packet, TrackMeta

VARIANTS: dict[str, list[str]] = {
    "h264_aac": ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                 "-c:v", "libx264", "-g", "12", "-bf", "2", "-c:a", "aac", "-ac", "2"],
    "hevc_aac": ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                 "-c:v", "libx265", "-x265-params", "log-level=none", "-g", "15", "-c:a", "aac"],
    "h264_mp3": ["-f", "lavfi", "-i", "testsrc2=size=176x144:rate=25", "-f", "lavfi", "-i", "sine=sample_rate=44100",
                 "-c:v", "libx264", "-vf", "crop=170:138:0:0", "-c:a", "libmp3lame"],
    "h264_ac3": ["-f", "lavfi", "-i", "testsrc2=size=176x144:rate=25", "-f", "lavfi", "-i", "sine=sample_rate=48000",
                 "-c:v", "libx264", "-c:a", "ac3", "-ac", "2"],
    "h264_opus": ["-f", "lavfi", "-i", "testsrc2=size=176x144:rate=25", "-f", "lavfi", "-i", "sine=sample_rate=48000",
                  "-c:v", "libx264", "-c:a", "libopus", "-ac", "2"],
    "h264_eac3": ["-f", "lavfi", "-i", "testsrc2=size=176x144:rate=25", "-f", "lavfi", "-i", "sine=sample_rate=44100",
                  "-c:v", "libx264", "-c:a", "eac3", "-ac", "2"],
}  # fmt: skip


def make_ts(path: Path, variant: str, seconds: float = 2.0, extra: list[str] | None = None) -> Path:
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        *VARIANTS[variant],
        "-t",
        str(seconds),
        *(extra or []),
        "-f",
        "mpegts",
        str(path),
    ]
    subprocess.run(cmd, check=True, timeout=60)
    return path


@dataclass
class RefStream:
    codec: str
    width: int = 0
    height: int = 0
    rate: int = 0
    channels: int = 0
    pts: list[int] = field(default_factory=list)  # 90 kHz, as in the file
    dts: list[int] = field(default_factory=list)
    keys: list[bool] = field(default_factory=list)


def reference(path: Path) -> list[RefStream]:
    """Streams and packets as FFmpeg's demuxer (with its parsers) sees them."""
    out: list[RefStream] = []
    with av.open(str(path)) as container:
        for s in container.streams:
            cc = s.codec_context
            ref = RefStream(cc.name)
            if s.type == "video":
                ref.width, ref.height = cc.width, cc.height
            elif s.type == "audio":
                ref.rate, ref.channels = cc.sample_rate, cc.channels
            out.append(ref)
        for pkt in container.demux():
            if pkt.size == 0 or pkt.pts is None:
                continue
            ref = out[pkt.stream.index]
            ref.pts.append(pkt.pts)
            ref.dts.append(pkt.dts if pkt.dts is not None else pkt.pts)
            ref.keys.append(bool(pkt.is_keyframe))
    return out


def demux_all(
    data: bytes, chunks: list[int] | None = None
) -> tuple[TsDemuxer, list[TrackMeta], dict[int, list[Packet]]]:
    demuxer = TsDemuxer()
    events: list[TrackMeta | Packet] = []
    if chunks is None:
        events += demuxer.feed(data)
    else:
        pos = 0
        for size in chunks:
            events += demuxer.feed(data[pos : pos + size])
            pos += size
        events += demuxer.feed(data[pos:])
    events += demuxer.end()
    tracks: dict[int, TrackMeta] = {}
    packets: dict[int, list[Packet]] = {}
    for ev in events:
        if isinstance(ev, TrackMeta):
            tracks[ev.id] = ev
        else:
            assert ev.track in tracks, "a packet came before its track was announced"
            packets.setdefault(ev.track, []).append(ev)
    return demuxer, [tracks[k] for k in sorted(tracks)], packets


CODEC_NAMES = {
    "h264": "H264",
    "hevc": "HEVC",
    "aac": "AAC",
    "mp3": "MP3",
    "mp3float": "MP3",
    "ac3": "AC3",
    "eac3": "EAC3",
    "opus": "opus",
    "libopus": "opus",
}
