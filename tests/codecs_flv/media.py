"""FLV test media made at test time (ffmpeg CLI for legacy codecs, PyAV/FFmpeg 8 for
enhanced FLV), and an independent reading of it with PyAV."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np

FPS = 25
RATE = 48000


def ffmpeg_flv(path: Path, acodec: str, seconds: float = 2.0, extra: tuple[str, ...] = ()) -> Path:
    """H264 (with B-frames, so composition offsets occur) plus the given audio codec."""
    cmd = [
        "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=160x120:rate={FPS}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
        "-c:v", "libx264", "-g", str(FPS), "-bf", "2", "-c:a", acodec, *extra, "-f", "flv", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=60)
    return path


def pyav_flv(path: Path, vcodec: str, acodec: str, seconds: float = 1.0) -> Path:
    """Enhanced FLV (HEVC/AV1/VP9, Opus) written by PyAV's FFmpeg 8."""
    out = av.open(str(path), "w", format="flv")
    v = out.add_stream(vcodec, rate=FPS)
    v.width, v.height, v.pix_fmt = 160, 120, "yuv420p"
    if vcodec != "libsvtav1":
        v.options = {"g": str(FPS)}
    if vcodec == "libx265":
        v.options = {"g": str(FPS), "x265-params": "log-level=error:bframes=2"}
    a = out.add_stream(acodec, rate=RATE)
    a.layout = "stereo"
    for i in range(int(seconds * FPS)):
        img = np.zeros((120, 160, 3), dtype=np.uint8)
        img[:, : (i * 6) % 160] = (i * 9) % 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for p in v.encode(frame):
            out.mux(p)
    size = a.frame_size or 1024
    t = 0
    while t < seconds * RATE:
        mono = (np.sin(np.arange(t, t + size) / 20) * 8000).astype(np.int16)
        samples = np.ascontiguousarray(np.stack([mono, mono], axis=1).reshape(1, -1))
        af = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        af.sample_rate = RATE
        af.pts = t
        for p in a.encode(af):
            out.mux(p)
        t += size
    for s in (v, a):
        for p in s.encode(None):
            out.mux(p)
    out.close()
    return path


def pyav_packets(path: Path) -> dict[str, list[tuple[int, int, bool]]]:
    """(dts, pts, keyframe) in ms per stream type, as FFmpeg's FLV demuxer sees them."""
    result: dict[str, list[tuple[int, int, bool]]] = {}
    with av.open(str(path)) as c:
        for p in c.demux():
            if p.size == 0 or p.dts is None:
                continue
            tb = p.time_base
            dts, pts = (
                round(p.dts * tb * 1000),
                round((p.pts if p.pts is not None else p.dts) * tb * 1000),
            )
            result.setdefault(p.stream.type, []).append((dts, pts, bool(p.is_keyframe)))
    return result


def pyav_decode(path: Path) -> dict[str, tuple[str, int, list[int]]]:
    """Codec name, decoded frame count and frame pts (ms) per stream type."""
    result: dict[str, tuple[str, int, list[int]]] = {}
    with av.open(str(path)) as c:
        for s in c.streams:
            s.thread_type = "AUTO"
        counts: dict[str, list[int]] = {}
        names = {s.type: s.codec_context.name for s in c.streams}
        for p in c.demux():
            for f in p.decode():
                counts.setdefault(p.stream.type, []).append(
                    round(f.pts * f.time_base * 1000) if f.pts is not None else -1
                )
    for kind, pts in counts.items():
        result[kind] = (names[kind], len(pts), pts)
    return result
