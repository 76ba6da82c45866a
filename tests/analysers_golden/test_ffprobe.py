"""Every analyser agrees with ffprobe on track count, codecs, frame counts and first/last
timestamps: on the committed fixtures and on larger files made at test time.

Facts are read from the analysers' ``--json`` lines. TS demuxing rebases the clock to
the first timestamp in the stream, so there the analyser may differ from ffprobe by one
constant offset shared by all tracks; the other containers must match as stored."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.analysers_golden.cases import CASES, FIXTURES, MAINS, analyse

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe")
CODECS = {"h264": "H264", "hevc": "HEVC", "aac": "AAC", "mp3": "MP3", "ac3": "AC3",
          "vp9": "VP9", "opus": "opus", "vp8": "VP8", "av1": "AV1"}  # fmt: skip


@dataclass
class Track:
    codec: str
    frames: int
    first_ms: float  # earliest presentation time
    last_ms: float | None  # latest presentation time (None: the analyser gives a duration)
    duration_ms: float | None = None
    frame_ms: float = 0.0  # longest packet duration (ffprobe), the tolerance for durations


def probe(path: Path) -> dict[str, Track]:
    """Per track type (video/audio), what ffprobe sees."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries",
         "stream=index,codec_name,codec_type,time_base:packet=stream_index,pts,duration",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    info = json.loads(out)
    tracks: dict[str, Track] = {}
    for s in info["streams"]:
        base = Fraction(s["time_base"]) * 1000
        pkts = [p for p in info["packets"] if p["stream_index"] == s["index"]]
        pts = [int(p["pts"]) * base for p in pkts if "pts" in p]
        durs = [int(p.get("duration", 0)) * base for p in pkts]
        tracks[s["codec_type"]] = Track(
            CODECS.get(s["codec_name"], s["codec_name"]),
            len(pkts),
            float(min(pts)),
            float(max(pts)),
            float(max(pts) - min(pts) + durs[-1]),
            float(max(durs)),
        )
    return tracks


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()[:-1]]


def facts(analyser: str, records: list[dict[str, Any]]) -> dict[str, Track]:
    """Per track type, what the analyser's JSON says."""
    tracks: dict[str, Track] = {}
    if analyser == "flv":
        for kind in ("video", "audio"):
            tags = [r for r in records if r.get("type") == kind and r.get("kind") == "frame"]
            if tags:
                pts = [r["timestamp"] + r.get("cts", 0) for r in tags]
                tracks[kind] = Track(tags[0]["codec"], len(tags), min(pts), max(pts))
    elif analyser == "ts":
        kinds = {
            r["track"]: (r["type"], r["codec"]) for r in records if "pid" in r and "track" in r
        }
        for tid, (kind, codec) in kinds.items():
            frames = [r for r in records if r.get("frame") == tid]
            pts = [r["pts"] for r in frames]
            tracks[kind] = Track(codec, len(frames), min(pts), max(pts))
    elif analyser == "mp4":
        for r in records:
            if isinstance(r.get("timeline"), dict):
                t = r["timeline"]
                tracks[t["type"]] = Track(
                    t["codec"], t["samples"], t["first_pts"], None, t["duration_ms"]
                )
    elif analyser == "ebml":
        types = {r["track"]: r["type"] for r in records if "track" in r and "type" in r}
        for r in records:
            if isinstance(r.get("timeline"), int) and r.get("frames"):
                tracks[types[r["timeline"]]] = Track(
                    r["codec"], r["frames"], r["first_ms"], r["last_ms"]
                )
    return tracks


def compare(analyser: str, mine: dict[str, Track], ref: dict[str, Track]) -> None:
    assert sorted(mine) == sorted(ref), (mine, ref)
    offsets = set()
    for kind, t in mine.items():
        r = ref[kind]
        assert t.codec == r.codec, kind
        assert t.frames == r.frames, (kind, t, r)
        shift = t.first_ms - r.first_ms
        if analyser == "ts":
            offsets.add(round(shift))
        else:
            assert abs(shift) <= 1, (kind, t, r)
        if t.last_ms is not None:
            assert r.last_ms is not None
            assert abs((t.last_ms - t.first_ms) - (r.last_ms - r.first_ms)) <= 1, (kind, t, r)
        else:
            assert t.duration_ms is not None and r.duration_ms is not None
            assert abs(t.duration_ms - r.duration_ms) <= r.frame_ms + 1, (kind, t, r)
    if offsets:  # one clock rebase for the whole stream
        assert max(offsets) - min(offsets) <= 1, offsets


@pytest.mark.parametrize(("fixture", "analyser"), [c for c in CASES if c[1] != "hls"])
def test_fixtures_agree_with_ffprobe(fixture: str, analyser: str) -> None:
    result = analyse(fixture, analyser, "--json")
    assert result.exit_code == 0, result.output
    compare(analyser, facts(analyser, lines(result.stdout)), probe(FIXTURES / fixture))


def test_hls_agrees_with_ffprobe() -> None:
    result = analyse("hls/h264_aac.m3u8", "hls", "--json")
    assert result.exit_code == 0, result.output
    timeline = next(r["timeline"] for r in lines(result.stdout) if "timeline" in r)
    segments = sorted((FIXTURES / "hls").glob("seg*.ts"))
    assert timeline["segments"] == len(segments) == 2
    joined = b"".join(p.read_bytes() for p in segments)
    ref = probe_bytes(joined)
    assert timeline["tracks"] == "+".join(sorted(t.codec for t in ref.values()))
    span = max(t.last_ms or 0 for t in ref.values()) - min(t.first_ms for t in ref.values())
    assert abs(timeline["media_s"] * 1000 - span) < 250  # segment starts vs last frame


def probe_bytes(data: bytes) -> dict[str, Track]:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries",
         "stream=index,codec_name,codec_type,time_base:packet=stream_index,pts,duration",
         "-of", "json", "-"], input=data, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    tmp = json.loads(proc.stdout)
    tracks: dict[str, Track] = {}
    for s in tmp["streams"]:
        base = Fraction(s["time_base"]) * 1000
        pts = [int(p["pts"]) * base for p in tmp["packets"] if p["stream_index"] == s["index"]]
        tracks[s["codec_type"]] = Track(
            CODECS.get(s["codec_name"], s["codec_name"]), len(pts), float(min(pts)), float(max(pts))
        )
    return tracks


# Larger files made now: 6 s at 25 fps, 160x120, so input arrives in many 64 KiB chunks.
LARGE = {
    "large.flv": (["-c:v", "libx264", "-c:a", "aac"], ["-f", "flv"], "flv"),
    "large.ts": (["-c:v", "libx264", "-c:a", "aac"], ["-f", "mpegts"], "ts"),
    "large_mp3.ts": (["-c:v", "libx264", "-bf", "0", "-c:a", "libmp3lame"], ["-f", "mpegts"], "ts"),
    "large.mp4": (["-c:v", "libx264", "-c:a", "aac"], ["-f", "mp4"], "mp4"),
    "large_frag.mp4": (
        ["-c:v", "libx264", "-c:a", "aac"],
        ["-f", "mp4", "-movflags", "+frag_keyframe+empty_moov+default_base_moof"],
        "mp4",
    ),
    "large.mkv": (["-c:v", "libx264", "-c:a", "ac3"], ["-f", "matroska"], "ebml"),
    "large.webm": (
        ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus"],
        ["-f", "webm"],
        "ebml",
    ),
}


@pytest.fixture(scope="module")
def large_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("large")


@pytest.mark.parametrize("name", sorted(LARGE))
def test_larger_files_agree_with_ffprobe(large_dir: Path, name: str) -> None:
    codecs, mux, analyser = LARGE[name]
    path = large_dir / name
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=6",
         "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000:duration=6",
         *codecs, "-g", "50", "-preset", "ultrafast", *mux, str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    assert path.stat().st_size > 64 * 1024
    result = CliRunner().invoke(MAINS[analyser], [str(path), "--json"])
    assert result.exit_code == 0, result.output
    compare(analyser, facts(analyser, lines(result.stdout)), probe(path))
