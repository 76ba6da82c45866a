"""The codec matrix: each codec the model names, in a container that carries it, read
back from the bus, compared with ffprobe and decoded by PyAV from our payloads."""

from __future__ import annotations

from array import array
from pathlib import Path

import av
import pytest

from tests.inputs.support import (
    InputProcess,
    by_track,
    decode_count,
    make_media,
    probe,
    read_tracks,
    tracks_of,
)

SMALL = {"seconds": 2, "size": "160x120"}
H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p"]
FFPROBE_NAMES = {"vp8": "VP8", "av1": "AV1", "h264": "H264", "vorbis": "vorbis", "mp3": "MP3",
                 "flac": "FLAC", "pcm_s16le": "PCM", "pcm_s16be": "PCM", "opus": "opus"}  # fmt: skip

# name: (input module, file name, video args, audio args, compare dts)
MATRIX = {
    "vp8_vorbis_webm": ("ebml", "a.webm", ["-c:v", "libvpx", "-deadline", "realtime",
                        "-cpu-used", "8", "-b:v", "200k"], ["-c:a", "libvorbis"], True),
    "av1_mp3_mp4": ("mp4", "a.mp4", ["-c:v", "libsvtav1", "-preset", "12", "-g", "25",
                    "-pix_fmt", "yuv420p"], ["-c:a", "libmp3lame"], True),
    "h264_pcm_mov": ("mp4", "a.mov", H264, ["-c:a", "pcm_s16le"], True),
    "h264_flac_mkv": ("ebml", "a.mkv", H264, ["-c:a", "flac"], False),
    "h264_mp3_flv": ("flv", "a.flv", H264, ["-c:a", "libmp3lame", "-ar", "44100"], True),
    "vp8_pcm_nut_av": ("libav", "a.nut", ["-c:v", "libvpx", "-deadline", "realtime",
                       "-b:v", "200k"], ["-c:a", "pcm_s16le"], True),
    "vorbis_ogg_av": ("libav", "a.ogg", ["-vn"], ["-c:a", "libvorbis"], False),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_codec(case: str, tmp_path: Path, stream: str) -> None:
    module, name, vargs, aargs, dts = MATRIX[case]
    path = make_media(tmp_path / name, vargs, aargs, **SMALL)  # type: ignore[arg-type]
    with InputProcess(module, stream, path) as inp:
        reader = inp.reader()
        try:
            tracks = tracks_of(reader)
            packets = by_track(read_tracks(reader))
        finally:
            reader.close()
        assert inp.stop() == 0
    assert "Traceback" not in inp.stderr and "ERROR" not in inp.stderr, inp.stderr
    probed = probe(path)
    assert len(tracks) == len(probed)
    for track in tracks:
        theirs = next(p for p in probed if p.kind == track.type)
        got = packets[track.id]
        assert track.codec == FFPROBE_NAMES[theirs.codec]
        assert len(got) == len(theirs.pts), f"{case} {track.codec}: frame count"
        pts = [p.pts for p in got]
        bad = [
            (a, b) for a, b in zip(pts, theirs.pts, strict=True) if b is not None and abs(a - b) > 1
        ]
        assert not bad, f"{case} {track.codec}: pts {bad[:5]}"
        if dts:
            d = [p.dts for p in got]
            bad = [
                (a, b)
                for a, b in zip(d, theirs.dts, strict=True)
                if b is not None and abs(a - b) > 1
            ]
            assert not bad, f"{case} {track.codec}: dts {bad[:5]}"
        decoded, errors = decode_count(track, got)
        assert errors == 0 and decoded >= len(got) - 3, f"{case} {track.codec}: {decoded} decoded"
        if track.codec == "PCM":
            assert track.size == 16
            _same_samples(path, b"".join(p.data for p in got))


def _same_samples(path: Path, ours_be: bytes) -> None:
    """Our big-endian PCM is exactly the source's little-endian samples, swapped."""
    with av.open(str(path)) as c:
        raw = b"".join(bytes(p) for p in c.demux(c.streams.audio[0]) if p.size)
    src = array("h", raw)
    src.byteswap()
    assert src.tobytes() == ours_be


def test_subrip_subtitles_through_mistinav(tmp_path: Path, stream: str) -> None:
    """Text subtitles: 4-byte big-endian cue duration, then the UTF-8 text (shm/model.py)."""
    cues = [(1000, 2500, "Hello world"), (3000, 4000, "Zweite Zeile: äöü"), (5200, 6000, "3")]

    def stamp(ms: int) -> str:
        return f"00:00:{ms // 1000:02d},{ms % 1000:03d}"

    srt = tmp_path / "subs.srt"
    srt.write_text(
        "".join(f"{i}\n{stamp(a)} --> {stamp(b)}\n{t}\n\n" for i, (a, b, t) in enumerate(cues, 1)),
        encoding="utf-8",
    )
    with InputProcess("libav", stream, srt) as inp:
        reader = inp.reader()
        try:
            (track,) = tracks_of(reader)
            packets = read_tracks(reader)
        finally:
            reader.close()
        assert inp.stop() == 0
    assert (track.type, track.codec) == ("meta", "subtitle")
    got = [(p.dts, p.dts + int.from_bytes(p.data[:4], "big"), p.data[4:].decode()) for p in packets]
    assert got == cues
