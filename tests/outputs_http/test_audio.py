"""Audio-only formats: WAV from PCM, MP3 frames, both decoded by PyAV."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av

from shm import StreamWriter
from shm.model import StreamState, TrackMeta

from .conftest import Server, unique
from .media import decode, ffprobe

RATE = 48000
SECONDS = 3


def _publish(name: str, track: TrackMeta, frames: list[tuple[int, bytes]]) -> StreamWriter:
    w = StreamWriter(name, live=False)
    w.add_track(track)
    w.set_index(track.id, [(dts, 0, len(data), True) for dts, data in frames])
    done = page = 0
    while done < len(frames):
        parts = w.page_parts(track.id, page)
        w.load_page(track.id, page, [frames[n][1] for n in parts])
        done, page = parts.stop, page + 1
    w.set_state(StreamState.READY)
    return w


def _sine(tmp_path: Path, args: list[str], out: str) -> Path:
    path = tmp_path / out
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={RATE}",
         "-t", str(SECONDS), "-ac", "2", *args, str(path)],
        check=True,
    )  # fmt: skip
    return path


def test_wav_from_pcm(server: Server, tmp_path: Path) -> None:
    raw = _sine(tmp_path, ["-f", "s16be", "-c:a", "pcm_s16be"], "pcm.raw").read_bytes()
    block = 1024 * 4  # 1024 stereo 16-bit samples
    frames = [(i // 4 * 1000 // RATE, raw[i : i + block]) for i in range(0, len(raw), block)]
    name = unique("pcm")
    w = _publish(name, TrackMeta(1, "audio", "PCM", rate=RATE, channels=2, size=16), frames)
    try:
        status, headers, body = server.get(f"/{name}.wav")
        assert status == 200 and headers["content-type"] == "audio/wav"
        out = tmp_path / "out.wav"
        out.write_bytes(body)
        got = decode(out)
        assert got.errors == 0
        assert got.audio_samples == len(raw) // 4
        assert body[4:8] == (len(body) - 8).to_bytes(4, "little")  # exact RIFF size (VoD)
        stream = ffprobe(out)["streams"][0]
        assert (stream["codec_name"], int(stream["sample_rate"]), stream["channels"]) == (
            "pcm_s16le",
            RATE,
            2,
        )
    finally:
        w.close()


def test_mp3_frames(server: Server, tmp_path: Path) -> None:
    src = _sine(tmp_path, ["-c:a", "libmp3lame", "-b:a", "96k"], "src.mp3")
    frames = []
    with av.open(str(src)) as c:
        for pkt in c.demux(c.streams.audio[0]):
            if pkt.size and pkt.pts is not None and pkt.time_base is not None:
                frames.append((round(float(pkt.pts * pkt.time_base) * 1000), bytes(pkt)))
    name = unique("mp3")
    w = _publish(name, TrackMeta(1, "audio", "MP3", rate=RATE, channels=2), frames)
    try:
        status, headers, body = server.get(f"/{name}.mp3")
        assert status == 200 and headers["content-type"] == "audio/mpeg"
        assert body == b"".join(data for _, data in frames)  # exactly the frames, in order
        out = tmp_path / "out.mp3"
        out.write_bytes(body)
        got = decode(out)
        assert got.errors == 0 and got.audio_frames >= len(frames) - 1
        status, _, _ = server.get(f"/{name}.flv")
        assert status == 200  # FLV carries MP3 too
        status, _, body = server.get(f"/{name}.aac")
        assert status == 415
    finally:
        w.close()
