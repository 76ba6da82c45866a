"""Standalone outputs (recording): MistOut<FMT> --stream s <file>, VoD and live, kill -9."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import LivePublisher, Source
from .media import decode, ffprobe

PROGRAMS = {"mp4": "MistOutMP4", "flv": "MistOutFLV", "ts": "MistOutHTTPTS", "mkv": "MistOutEBML"}


def _cmd(program: str) -> list[str]:
    if program == "MistOutHTTP":
        return [sys.executable, "-m", "outputs.http.server"]
    return [sys.executable, "-m", "outputs.standalone", program]


def _env() -> dict[str, str]:
    env = dict(os.environ, MIST_CONTROL="none")
    env.pop("MIST_CHILD", None)
    return env


@pytest.mark.parametrize("ext", sorted(PROGRAMS))
def test_vod_to_file(vod_stream: str, source: Source, tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"rec.{ext}"
    subprocess.run(
        [*_cmd(PROGRAMS[ext]), "--stream", vod_stream, str(out)], check=True, env=_env(), timeout=60
    )
    got = decode(out)
    video = source.of(source.video.id)
    assert got.errors == 0
    assert got.video_frames == len(video)
    assert got.video_keys == sum(f.keyframe for f in video)
    assert abs(got.audio_frames - len(source.of(source.audio.id))) <= 1
    if ext == "mp4":
        data = out.read_bytes()
        assert data.find(b"moov") < data.find(b"mdat")  # progressive, moov first


def test_target_query_selects_and_cuts(vod_stream: str, source: Source, tmp_path: Path) -> None:
    out = tmp_path / "cut.flv"
    subprocess.run(
        [*_cmd("MistOutFLV"), "--stream", vod_stream, f"{out}?audio=none&start=3000&stop=4960"],
        check=True,
        env=_env(),
        timeout=60,
    )
    got = decode(Path(str(out)))
    assert got.audio_frames == 0
    assert got.video_frames == sum(1 for f in source.of(source.video.id) if 3000 <= f.dts <= 4960)


def test_capabilities_json() -> None:
    caps = json.loads(
        subprocess.run([*_cmd("MistOutEBML"), "-j"], check=True, capture_output=True).stdout
    )
    assert caps["name"] == "EBML" and caps["deps"] == "HTTP"
    assert "/*.mkv" in caps["push_urls"] and "/$.mkv" in caps["url_match"]
    http = json.loads(
        subprocess.run([*_cmd("MistOutHTTP"), "-j"], check=True, capture_output=True).stdout
    )
    assert http["name"] == "HTTP" and http["port"] == 8080
    assert http["optional"]["port"]["option"] == "--port"


def test_unwritable_target_fails_cleanly(vod_stream: str, tmp_path: Path) -> None:
    r = subprocess.run(
        [*_cmd("MistOutFLV"), "--stream", vod_stream, str(tmp_path / "no" / "dir" / "x.flv")],
        env=_env(),
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert b"cannot write" in r.stderr and b"Traceback" not in r.stderr


def test_unknown_stream_fails_cleanly(tmp_path: Path) -> None:
    env = _env()
    r = subprocess.run(
        [*_cmd("MistOutFLV"), "--stream", "nosuchstream", "--wait", "1", str(tmp_path / "x.flv")],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert b"not available" in r.stderr


def test_live_recording_survives_stop(live_stream: LivePublisher, tmp_path: Path) -> None:
    """Record live MP4 (fragmented) and FLV at once; kill -9 one, SIGTERM the other."""
    stops = {"mp4": signal.SIGKILL, "flv": signal.SIGTERM}
    outs = {ext: tmp_path / f"live.{ext}" for ext in stops}
    procs = {
        ext: subprocess.Popen(
            [*_cmd(PROGRAMS[ext]), "--stream", live_stream.writer.stream, str(outs[ext])],
            env=_env(),
        )
        for ext in stops
    }
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
            not p.exists() or p.stat().st_size < 60_000 for p in outs.values()
        ):
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        for ext, proc in procs.items():
            proc.send_signal(stops[ext])
        for proc in procs.values():
            proc.wait(10)
    assert procs["flv"].returncode == 0  # SIGTERM: a clean stop
    for ext, out in outs.items():
        got = decode(out)
        assert got.errors == 0, ext
        assert got.video_frames >= 50 and got.video_keys >= 2, ext
        assert got.audio_frames >= 50, ext
        pts = sorted(got.video_pts)
        steps = [b - a for a, b in itertools.pairwise(pts)]
        assert all(0 < s <= 200 for s in steps), steps  # no repeat; the loop seam is the only gap
        probe = ffprobe(out)
        assert {s["codec_name"] for s in probe["streams"]} == {"h264", "aac"}, ext
