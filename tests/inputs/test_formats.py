"""Every input against ffprobe: read the whole stream from the bus (pages load on
demand) and compare tracks and packets with the source's packets; seeking."""

from __future__ import annotations

from pathlib import Path

import pytest

from shm.model import Packet, TrackMeta
from tests.inputs.support import (
    InputProcess,
    Probed,
    by_track,
    decode_count,
    probe,
    read_all,
    tracks_of,
)

CODECS = {"h264": "H264", "hevc": "HEVC", "vp9": "VP9", "aac": "AAC", "opus": "opus",
          "ac3": "AC3", "mp3": "MP3"}  # fmt: skip

# (input module, media key, payload sizes comparable, container stores dts)
CASES = [
    ("mp4", "mp4", True, True),
    ("flv", "flv", True, True),
    ("ts", "ts", False, True),  # TS carries Annex B: sizes differ after AVCC conversion
    ("ebml", "webm", True, True),
    ("ebml", "mkv", True, False),  # Matroska stores pts only; dts is rebuilt differently
    ("libav", "avi", False, True),  # AVI H264 is Annex B
    ("libav", "webm", True, True),
]


def _pair(tracks: list[TrackMeta], probed: list[Probed]) -> list[tuple[TrackMeta, Probed]]:
    out = []
    for kind in ("video", "audio"):
        ours = [t for t in tracks if t.type == kind]
        theirs = [p for p in probed if p.kind == kind]
        assert len(ours) == len(theirs), f"{kind}: {len(ours)} tracks, ffprobe {len(theirs)}"
        out += list(zip(ours, theirs, strict=True))
    return out


def _close(a: list[int], b: list[int | None], what: str) -> None:
    diffs = [(i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True))
             if y is not None and abs(x - y) > 1]  # fmt: skip
    assert not diffs, f"{what} differ from ffprobe (index, ours, ffprobe): {diffs[:5]}"


def compare(packets: list[Packet], tracks: list[TrackMeta], probed: list[Probed],
            sizes: bool, dts: bool, shift: bool) -> None:  # fmt: skip
    ours = by_track(packets)
    base_ours = min(p.dts for p in packets) if shift else 0
    base_theirs = min(d for p in probed for d in p.dts if d is not None) if shift else 0
    for track, theirs in _pair(tracks, probed):
        got = ours.get(track.id, [])
        assert track.codec == CODECS[theirs.codec]
        assert len(got) == len(theirs.sizes), f"{track.codec}: frame count"
        if track.type == "video":
            assert (track.width, track.height) == (theirs.width, theirs.height)
            assert [p.keyframe for p in got] == theirs.keys, f"{track.codec}: keyframes"
        else:
            assert track.rate == theirs.rate and track.channels == theirs.channels
        pts = [p.pts - base_ours for p in got]
        _close(pts, [None if v is None else v - base_theirs for v in theirs.pts], "pts")
        if dts:
            d = [p.dts - base_ours for p in got]
            _close(d, [None if v is None else v - base_theirs for v in theirs.dts], "dts")
        if track.codec in ("H264", "HEVC", "AAC", "MP3", "AC3", "VP9"):
            decoded, errors = decode_count(track, got)
            assert errors == 0 and decoded >= len(got) - 2, f"{track.codec}: PyAV decoding"
        if sizes or track.type == "audio":
            adts = 7 if shift and track.codec == "AAC" else 0  # TS keeps ADTS headers
            assert [len(p.data) + adts for p in got] == theirs.sizes, f"{track.codec}: sizes"


@pytest.mark.parametrize(("module", "key", "sizes", "dts"), CASES)
def test_input_matches_ffprobe(
    module: str, key: str, sizes: bool, dts: bool, media: dict[str, Path], stream: str
) -> None:
    path = media[key]
    with InputProcess(module, stream, path, "--inputtimeout", "1") as inp:
        tracks, packets = inp.read_out()
        assert inp.wait() == 0
    assert "Traceback" not in inp.stderr and "ERROR" not in inp.stderr, inp.stderr
    compare(packets, tracks, probe(path), sizes, dts, shift=key == "ts")


@pytest.mark.parametrize(("module", "key"), [("mp4", "mp4"), ("ts", "ts")])
def test_seek_starts_at_keyframe_before(
    module: str, key: str, media: dict[str, Path], stream: str
) -> None:
    with InputProcess(module, stream, media[key], "--inputtimeout", "1") as inp:
        reader = inp.reader()
        try:
            video = next(t for t in tracks_of(reader) if t.type == "video")
            everything = by_track(read_all(reader))[video.id]
            keys = [p.dts for p in everything if p.keyframe]
            assert len(keys) >= 2
            target = keys[1] + 500
            got = reader.seek(target)
            first = next(p for p in read_all(reader) if p.track == video.id)
        finally:
            reader.close()
        inp.stop()
    assert got == keys[1] == first.dts
    assert first.keyframe
