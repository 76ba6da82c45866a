"""Helpers for input tests: make media with ffmpeg, run an input, read the bus, probe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shm import StreamNotFound, StreamReader
from shm.model import Packet, StreamState, TrackMeta

DEADLINE_S = 30.0


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def make_media(
    path: Path,
    vcodec: list[str],
    acodec: list[str],
    seconds: float = 4,
    size: str = "320x240",
    rate: int = 25,
    extra: list[str] | None = None,
) -> Path:
    """testsrc + sine through the given encoder arguments into ``path``."""
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds), *vcodec, *acodec, *(extra or []), str(path),
    )  # fmt: skip
    return path


@dataclass
class Probed:
    """ffprobe's view of one stream."""

    kind: str
    codec: str
    width: int
    height: int
    rate: int
    channels: int
    dts: list[int | None] = field(default_factory=list)  # ms, decode order
    pts: list[int | None] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    keys: list[bool] = field(default_factory=list)


def probe(path: Path) -> list[Probed]:
    """Streams (audio/video) and their packets in decode order, times in ms."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_packets", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    data = json.loads(out)
    streams: dict[int, Probed] = {}
    for s in data["streams"]:
        if s["codec_type"] in ("video", "audio"):
            streams[s["index"]] = Probed(
                s["codec_type"],
                s["codec_name"], int(s.get("width", 0)), int(s.get("height", 0)),
                int(s.get("sample_rate", 0)), int(s.get("channels", 0)),
            )  # fmt: skip

    def ms(v: Any) -> int | None:
        return None if v in (None, "N/A") else round(float(v) * 1000)

    for p in data["packets"]:
        s2 = streams.get(p["stream_index"])
        if s2 is None:
            continue
        s2.dts.append(ms(p.get("dts_time")))
        s2.pts.append(ms(p.get("pts_time")))
        s2.sizes.append(int(p["size"]))
        s2.keys.append("K" in p.get("flags", ""))
    return list(streams.values())


class InputProcess:
    """A real ``MistIn*`` program on a stream, with its stderr collected."""

    def __init__(self, module: str, stream: str, source: Path | str, *args: str) -> None:
        self.stream = stream
        env = dict(os.environ, MIST_DEBUG="4")
        env.pop("MIST_CHILD", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"inputs.{module}", "-s", stream, str(source), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self._err: str | None = None

    def wait(self, timeout: float = DEADLINE_S) -> int:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            self._err = err
            raise
        self._err = err
        return self.proc.returncode

    @property
    def stderr(self) -> str:
        if self._err is None:
            self.wait()
        return self._err or ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait()

    def reader(self, timeout: float = DEADLINE_S) -> StreamReader:
        """A reader once the stream is READY (fails if the input exits first)."""
        deadline = time.monotonic() + timeout
        reader = None
        while reader is None:
            try:
                reader = StreamReader(self.stream)
            except StreamNotFound:
                assert self.proc.poll() is None, f"input exited: {self.stderr}"
                assert time.monotonic() < deadline, "stream never appeared"
                time.sleep(0.02)
        while reader.meta.state != StreamState.READY:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                reader.close()
                raise AssertionError(f"never READY: {self.stderr}")
            reader.wait_sync(0.1)
        return reader

    def read_out(self) -> tuple[list[TrackMeta], list[Packet]]:
        """The stream's tracks and every packet, read once it is READY."""
        reader = self.reader()
        try:
            return tracks_of(reader), read_tracks(reader)
        finally:
            reader.close()

    def __enter__(self) -> InputProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def read_all(reader: StreamReader, timeout: float = DEADLINE_S) -> list[Packet]:
    """Every packet to the end of the VoD stream (payloads copied)."""
    out: list[Packet] = []
    deadline = time.monotonic() + timeout
    while not reader.at_end():
        assert time.monotonic() < deadline, f"read stalled after {len(out)} packets"
        pkt = reader.read()
        if pkt is None:
            reader.wait_sync(0.2)
            continue
        out.append(Packet(pkt.track, pkt.dts, pkt.offset, pkt.keyframe, bytes(pkt.data)))
    return out


def read_tracks(reader: StreamReader) -> list[Packet]:
    """Every packet of every track, each track read alone from its very first part
    (a combined read starts all tracks at the first video key and skips earlier audio)."""
    out: list[Packet] = []
    for t in tracks_of(reader):
        reader.select([t.id])
        reader.seek(-(1 << 40))
        out += read_all(reader)
    return out


def by_track(packets: list[Packet]) -> dict[int, list[Packet]]:
    out: dict[int, list[Packet]] = {}
    for p in packets:
        out.setdefault(p.track, []).append(p)
    return out


def tracks_of(reader: StreamReader) -> list[TrackMeta]:
    return sorted(reader.meta.tracks.values(), key=lambda t: t.id)


def wait_until(cond: Any, timeout: float = DEADLINE_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def decode_count(track: TrackMeta, packets: list[Packet]) -> tuple[int, int]:
    """(frames decoded, decode errors) for our payloads given our init -- PyAV checks
    that the AVCC/hvcC/ASC conventions hold, independently of our code."""
    import av

    names = {"H264": "h264", "HEVC": "hevc", "VP9": "vp9", "VP8": "vp8", "AV1": "libdav1d",
             "AAC": "aac", "MP3": "mp3", "opus": "opus", "AC3": "ac3", "vorbis": "vorbis",
             "FLAC": "flac", "PCM": f"pcm_s{track.size}be"}  # fmt: skip
    ctx: Any = av.CodecContext.create(names[track.codec], "r")
    if track.init:
        ctx.extradata = track.init
    if track.type == "audio" and track.codec == "PCM":
        ctx.sample_rate = track.rate
        ctx.layout = "stereo" if track.channels == 2 else "mono"
    frames = errors = 0
    for p in packets:
        pkt = av.Packet(p.data)
        pkt.pts, pkt.dts = p.pts, p.dts
        try:
            frames += len(ctx.decode(pkt))
        except av.FFmpegError:
            errors += 1
    try:
        frames += len(ctx.decode(None))
    except av.FFmpegError:
        errors += 1
    return frames, errors
