"""The controller with the real programs: a VoD stream played over HTTP, a live RTMP push.

Skipped while the programs are not written yet. Only the programs used are scanned
(``MIST_PROGRAMS``) to keep the start quick.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import urllib.request
from pathlib import Path

import av
import pytest

from controller.default_config import make_demo_clip
from tests.controller.conftest import base_config, free_port, wait_for

NEEDED = {
    "MistOutHTTP": "outputs.http.server",
    "MistInMP4": "inputs.mp4",
    "MistOutRTMP": "outputs.rtmp.server",
    "MistInBuffer": "inputs.buffer",
}


def _installed() -> bool:
    try:
        return all(importlib.util.find_spec(mod) is not None for mod in NEEDED.values())
    except ImportError:
        return False


pytestmark = [
    pytest.mark.slow,  # ~10 s: kept out of the default run's time budget
    pytest.mark.skipif(
        not _installed(), reason="the HTTP/RTMP outputs and MP4/buffer inputs are not installed yet"
    ),
]


def _fetch(url: str, limit: int = 20_000_000) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read(limit)


def test_vod_over_http_and_live_rtmp_push(mist_factory, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    make_demo_clip(clip, seconds=3)
    http_port, rtmp_port = free_port(), free_port()
    cfg = base_config(0)
    cfg["config"]["protocols"] = [
        {"connector": "HTTP", "port": http_port},
        {"connector": "RTMP", "port": rtmp_port},
    ]
    cfg["streams"] = {
        "e2evod": {"name": "e2evod", "source": str(clip)},
        "e2elive": {"name": "e2elive", "source": "push://"},
    }
    mist = mist_factory(cfg, start=False, builtin=True)
    mist.env["MIST_PROGRAMS"] = ",".join(NEEDED)
    mist.start()
    wait_for(
        lambda: mist.protocol_online("HTTP") == [1] and mist.protocol_online("RTMP") == [1],
        30,
        0.2,
        "HTTP and RTMP online",
    )
    flv = tmp_path / "vod.flv"
    flv.write_bytes(
        wait_for(
            lambda: _try(f"http://127.0.0.1:{http_port}/e2evod.flv"), 30, 0.5, "the VoD stream"
        )
    )
    with av.open(str(flv)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 75  # 3 s at 25 fps
    # live: push with ffmpeg, play the FLV while it runs
    push = subprocess.Popen(
        [
            "ffmpeg",
            "-v",
            "error",
            "-re",
            "-stream_loop",
            "3",
            "-i",
            str(clip),
            "-c",
            "copy",
            "-f",
            "flv",
            f"rtmp://127.0.0.1:{rtmp_port}/live/e2elive",
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: mist.api({"streams": 1}, "/api2")["streams"]["e2elive"]["online"] == 1,
            30,
            0.2,
            "live online",
        )
        probe = subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-read_intervals",
                "%+2",
                "-show_entries",
                "stream=codec_name",
                "-of",
                "json",
                f"http://127.0.0.1:{http_port}/e2elive.flv",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        codecs = sorted(s["codec_name"] for s in json.loads(probe.stdout)["streams"])
        assert codecs == ["aac", "h264"]
    finally:
        push.kill()
        push.wait()
    assert mist.stop() == 0


def _try(url: str) -> bytes | None:
    try:
        data = _fetch(url)
    except OSError:
        return None
    return data if len(data) > 1000 else None
