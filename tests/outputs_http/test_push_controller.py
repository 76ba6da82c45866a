"""Pushes under a real MistController: targets matched by each output's ``push_urls``
(``/*.webm`` -> MistOutEBML writing WebM) and a controller shutdown with a live recording
running (the recording is stopped, waited for and playable; no Mist process is left)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from tests.controller.conftest import Mist, base_config, free_port
from tests.controller.conftest import mist_factory as mist_factory
from tests.live.conftest import ffmpeg_publish, stop_proc, wait_for, wait_ready

from .conftest import Source
from .media import decode, ffprobe


def _caps(program: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "outputs.standalone", program, "-j"],
        check=True,
        capture_output=True,
    ).stdout
    caps: dict[str, Any] = json.loads(out)
    return caps


def test_ebml_capabilities_list_webm_and_mkv() -> None:
    """MistServer's MistOutEBML: url_rel /$.webm, push_urls /*.mkv and /*.webm, one
    player method per container."""
    caps = _caps("MistOutEBML")
    assert caps["url_rel"] == "/$.webm"
    assert set(caps["push_urls"]) >= {"/*.mkv", "/*.webm"}
    assert set(caps["url_match"]) >= {"/$.mkv", "/$.webm"}
    methods = {m["type"] for m in caps["methods"]}
    assert methods == {"html5/video/webm", "html5/video/x-matroska"}
    video, audio = caps["codecs"][0]
    assert {"VP9", "H264"} <= set(video) and {"opus", "AAC"} <= set(audio)
    mp4 = _caps("MistOutMP4")
    assert mp4["push_urls"] == ["/*.mp4", "/*.fmp4"] and mp4["url_rel"] == "/$.mp4"


def _pushes(m: Mist) -> list[list[Any]]:
    rows: list[list[Any]] = m.api({"push_list": True})["push_list"]
    return rows


def test_push_to_webm_and_shutdown_with_recording(
    mist_factory: Callable[..., Mist], webm_source: Source, tmp_path: Path
) -> None:
    rtmp = free_port()
    cfg = base_config(0)
    cfg["config"]["protocols"] = [
        {"connector": "RTMP", "port": rtmp, "interface": "127.0.0.1", "timeout": 5},
    ]
    cfg["streams"] = {
        "rec": {"name": "rec", "source": "push://"},
        "clip": {"name": "clip", "source": str(webm_source.path)},
    }
    m = mist_factory(cfg, builtin=True)
    wait_for(lambda: m.protocol_online("RTMP") == [1], 60, "the RTMP connector")

    # /*.webm in MistOutEBML's push_urls: the controller finds the program, which
    # writes WebM (not Matroska) for a .webm target.
    webm = tmp_path / "clip_$stream.webm"
    started = m.api({"push_start": ["clip", str(webm)]})
    assert "error" not in started, started
    written = tmp_path / "clip_clip.webm"
    wait_for(lambda: written.exists() and not _pushes(m), 60, "the WebM recording to finish")
    assert b"webm" in written.read_bytes()[:64]  # EBML DocType
    got = decode(written)
    assert got.errors == 0
    assert got.video_frames == len(webm_source.of(webm_source.video.id))

    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/rec", 60)
    try:
        wait_ready("rec", 30)
        rec = tmp_path / "live.mp4"
        started = m.api({"push_start": ["rec", str(rec)]})
        assert "error" not in started, started
        rows = wait_for(lambda: _pushes(m), 10, "the push to run")
        push_pid = int(rows[0][0])
        wait_for(lambda: rec.exists() and rec.stat().st_size > 100_000, 30, "recorded media")
        assert m.proc is not None
        children = psutil.Process(m.proc.pid).children(recursive=True)
        assert push_pid in {c.pid for c in children}
        assert m.stop() == 0
        # The controller waited for its push (and its other programs): all gone, reaped.
        assert not psutil.pid_exists(push_pid)
        assert [c for c in children if c.is_running() and c.status() != "zombie"] == []
        assert f"push {push_pid} ({rec}) stopped" in m.stderr()
    finally:
        stop_proc(pub)
    probe = ffprobe(rec)
    assert probe["format"]["format_name"].startswith("mov,mp4")
    got = decode(rec)
    assert got.errors == 0 and got.video_frames >= 25  # at least a second of the stream
