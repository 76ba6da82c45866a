"""Triggers from the inputs themselves: STREAM_BUFFER, LIVE_BANDWIDTH, STREAM_UNLOAD.

The real MistController runs MistOutRTMP/MistOutHTTP; ffmpeg publishes (and is paused
with SIGSTOP to starve the buffer), an HTTP fetch loads a VoD input; the handlers are a
real shell script and a real HTTP server. Payloads are asserted line by line
(reference 7.2).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.controller.conftest import Mist, base_config, free_port
from tests.controller.conftest import module_factory as module_factory
from tests.live.conftest import ffmpeg_publish, stop_proc, wait_for, wait_ready
from tests.outputs_http.media import decode
from tests.triggers.handlers import HttpHandler, ScriptHandler, encode_clip
from tests.triggers.test_outputs import _listening, http_get
from tests.triggers.test_outputs import handler as handler  # module-scoped fixtures
from tests.triggers.test_outputs import script as script

PROGRAMS = ("MistOutRTMP", "MistOutHTTP", "MistInBuffer", "MistInMP4")
NEVER_BPS = 10**12  # a LIVE_BANDWIDTH threshold no test stream reaches
LIMIT_BPS = 1000


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode_clip(tmp_path_factory.mktemp("media") / "clip.mp4", "160x120", 2)


@pytest.fixture(scope="module")
def mist(
    module_factory: Callable[..., Mist], handler: HttpHandler, script: ScriptHandler, clip: Path
) -> Iterator[tuple[Mist, int, int]]:
    rtmp, http = free_port(), free_port()
    url = f"http://127.0.0.1:{handler.port}/hook"
    sh = str(script.path)
    cfg = base_config(0)
    cfg["config"]["protocols"] = [
        {"connector": "RTMP", "port": rtmp, "interface": "127.0.0.1"},
        {"connector": "HTTP", "port": http, "interface": "127.0.0.1"},
    ]
    cfg["config"]["triggers"] = {
        "STREAM_BUFFER": [
            {"handler": sh, "sync": False, "streams": ["health"]},
            {"handler": url, "sync": False, "streams": ["crashed"]},
        ],
        "LIVE_BANDWIDTH": [
            {"handler": sh, "sync": True, "streams": ["health"], "params": str(LIMIT_BPS)},
            {"handler": url, "sync": True, "streams": ["health"], "params": str(NEVER_BPS)},
            {"handler": url, "sync": True, "streams": ["capped"], "params": str(LIMIT_BPS)},
        ],
        "STREAM_UNLOAD": [{"handler": sh, "sync": True, "streams": ["clip", "comeback"]}],
    }
    cfg["streams"] = {
        "health": {"name": "health", "source": "push://", "resume": 0},
        "capped": {"name": "capped", "source": "push://", "resume": 0},
        "crashed": {"name": "crashed", "source": "push://", "resume": 0},
        "comeback": {"name": "comeback", "source": "push://", "resume": 1},
        "clip": {"name": "clip", "source": str(clip), "inputtimeout": 1},
    }
    handler.answers["LIVE_BANDWIDTH"] = "false"  # only "capped" reaches the HTTP handler
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIST_PROGRAMS", ",".join(PROGRAMS))
        m = module_factory(cfg, builtin=True)
    wait_for(lambda: [m.protocol_online(c) for c in ("RTMP", "HTTP")] == [[1], [1]], 60, "outputs")
    wait_for(lambda: _listening(rtmp) and _listening(http), 20, "connector ports")
    yield m, rtmp, http


def _states(script: ScriptHandler) -> list[str]:
    return [c.payload[1] for c in script.calls("STREAM_BUFFER")]


def _tracks(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["codec"]: v for k, v in details.items() if k != "issues"}


def test_stream_buffer_states_and_live_bandwidth(
    mist: tuple[Mist, int, int], script: ScriptHandler, handler: HttpHandler
) -> None:
    _, rtmp, _ = mist
    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/health", 60)
    try:
        wait_ready("health", 30)
        # FULL once every track holds 3 fragments, with the buffer's health JSON.
        (full, *_) = wait_for(lambda: script.calls("STREAM_BUFFER"), 30, "STREAM_BUFFER FULL")
        assert full.payload[:2] == ["health", "FULL"] and len(full.payload) == 3
        details = json.loads(full.payload[2])
        assert "issues" not in details, details
        tracks = _tracks(details)
        assert sorted(tracks) == ["AAC", "H264"]
        video, audio = tracks["H264"], tracks["AAC"]
        assert (video["width"], video["height"], video["fpks"]) == (320, 240, 25000)
        # ffmpeg: -g 25 at 25 fps, so every complete key is 1 s of 25 frames of 40 ms
        assert video["keys"] == {
            "ms_min": 1000, "ms_max": 1000, "frame_ms_min": 40, "frame_ms_max": 40,
            "frames_min": 25, "frames_max": 25,
        }  # fmt: skip
        assert video["kbits"] > 0 and audio["kbits"] > 0
        assert (audio["rate"], audio["channels"]) == (44100, 1)
        assert 2047 <= audio["keys"]["ms_min"] <= audio["keys"]["ms_max"] < 2200
        assert 20 <= audio["keys"]["frame_ms_min"] <= audio["keys"]["frame_ms_max"] <= 24

        # The publisher stalls (SIGSTOP keeps its connection open): DRY, then RECOVER.
        os.kill(pub.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: "DRY" in _states(script), 20, "STREAM_BUFFER DRY")
        finally:
            os.kill(pub.pid, signal.SIGCONT)
        (dry,) = [c for c in script.calls("STREAM_BUFFER") if c.payload[1] == "DRY"][:1]
        assert dry.payload[0] == "health" and len(dry.payload) == 3
        assert "no data for" in json.loads(dry.payload[2])["issues"]
        wait_for(lambda: "RECOVER" in _states(script), 20, "STREAM_BUFFER RECOVER")
        recover = next(c for c in script.calls("STREAM_BUFFER") if c.payload[1] == "RECOVER")
        assert recover.payload[0] == "health" and len(recover.payload) == 3
        assert "issues" not in json.loads(recover.payload[2])
        assert sorted(_tracks(json.loads(recover.payload[2]))) == ["AAC", "H264"]
    finally:
        stop_proc(pub)
    wait_for(lambda: "EMPTY" in _states(script), 20, "STREAM_BUFFER EMPTY")
    (empty,) = [c for c in script.calls("STREAM_BUFFER") if c.payload[1] == "EMPTY"]
    assert empty.payload == ["health", "EMPTY"]
    states = _states(script)
    assert states[0] == "FULL" and states[-1] == "EMPTY"
    # DRY and RECOVER alternate (a loaded machine may add a pair of its own)
    middle = states[1:-1]
    assert middle and middle == ["DRY", "RECOVER"] * (len(middle) // 2), states

    # LIVE_BANDWIDTH: name and the stream's bytes/s, to the handler whose threshold it
    # reached; the handler with the unreachable threshold was never asked.
    calls = script.calls("LIVE_BANDWIDTH")
    assert calls, "LIVE_BANDWIDTH never fired"
    for call in calls:
        assert call.payload[0] == "health" and len(call.payload) == 2
        assert call.payload[1].isdigit() and LIMIT_BPS <= int(call.payload[1]) < 10_000_000
    assert not [c for c in handler.calls("LIVE_BANDWIDTH") if c.body.startswith("health\n")]


def test_killed_buffer_gets_stream_buffer_empty_from_the_controller(
    mist: tuple[Mist, int, int], handler: HttpHandler
) -> None:
    """A ``kill -9``'d MistInBuffer cannot say EMPTY: the controller, which saw it go
    FULL, sends STREAM_BUFFER EMPTY (name; EMPTY) when it reaps the process."""
    m, rtmp, _ = mist

    def states() -> list[list[str]]:
        bodies = [c.body.split("\n") for c in handler.calls("STREAM_BUFFER")]
        return [lines for lines in bodies if lines[0] == "crashed"]

    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/crashed", 60)
    try:
        wait_ready("crashed", 30)
        wait_for(lambda: [s for s in states() if s[1] == "FULL"], 30, "STREAM_BUFFER FULL")
        buffers = [
            p
            for p in psutil.Process(m.proc.pid).children(recursive=True)
            if "MistInBuffer" in " ".join(p.cmdline()) and "crashed" in p.cmdline()
        ]
        assert len(buffers) == 1, buffers
        buffers[0].send_signal(signal.SIGKILL)
        wait_for(lambda: [s for s in states() if s[1] == "EMPTY"], 20, "STREAM_BUFFER EMPTY")
    finally:
        stop_proc(pub)
    seen = states()
    first_empty = next(i for i, s in enumerate(seen) if s[1] == "EMPTY")
    assert seen[first_empty] == ["crashed", "EMPTY"]
    assert [s[1] for s in seen[:first_empty]] == ["FULL"]  # a steady publisher: no DRY
    assert handler.calls("STREAM_BUFFER")[0].headers["X-Trigger"] == "STREAM_BUFFER"


def test_live_bandwidth_false_stops_the_buffer(
    mist: tuple[Mist, int, int], handler: HttpHandler
) -> None:
    m, rtmp, _ = mist
    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/capped", 60)
    try:
        wait_ready("capped", 30)
        calls = wait_for(lambda: handler.calls("LIVE_BANDWIDTH"), 30, "LIVE_BANDWIDTH")
        name, bps = calls[0].body.split("\n")
        assert name == "capped" and int(bps) >= LIMIT_BPS
        assert calls[0].headers["X-Trigger"] == "LIVE_BANDWIDTH"
        # "false": the buffer shuts down and the publisher is cut off long before 60 s
        wait_for(lambda: pub.poll() is not None, 30, "the publisher to be cut off")
        wait_for(
            lambda: "capped" not in m.api({"active_streams": True})["active_streams"],
            20,
            "the stream to end",
        )
    finally:
        stop_proc(pub)


def test_stream_unload_vod_and_buffer(
    mist: tuple[Mist, int, int], script: ScriptHandler, tmp_path: Path
) -> None:
    m, rtmp, http = mist

    def active() -> list[str]:
        return list(m.api({"active_streams": True})["active_streams"])

    # A VoD input idle for its inputtimeout (1 s) asks; "false" keeps it loaded.
    script.answer("STREAM_UNLOAD", "false")
    status, body = http_get(http, "/clip.flv", 10_000_000)
    assert status == 200
    (tmp_path / "clip.flv").write_bytes(body)
    assert decode(tmp_path / "clip.flv").video_frames >= 45
    wait_for(lambda: len(script.calls("STREAM_UNLOAD")) >= 2, 30, "two STREAM_UNLOAD asks")
    assert "clip" in active()
    script.answer("STREAM_UNLOAD", "true")
    wait_for(lambda: "clip" not in active(), 30, "the VoD input to unload")
    asked = [c.payload for c in script.calls("STREAM_UNLOAD")]
    assert asked[0] == ["clip", "MP4", "cancelableno viewers for 1s"]
    assert all(a == asked[0] for a in asked)

    # The buffer whose publisher does not come back within ``resume`` asks too.
    script.answer("STREAM_UNLOAD", "false")
    before = len(script.calls("STREAM_UNLOAD"))
    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/comeback", 2)
    try:
        wait_ready("comeback", 30)
        assert pub.wait(30) == 0
    finally:
        stop_proc(pub)
    wait_for(lambda: len(script.calls("STREAM_UNLOAD")) >= before + 2, 30, "buffer asks")
    assert "comeback" in active()
    script.answer("STREAM_UNLOAD", "true")
    wait_for(lambda: "comeback" not in active(), 30, "the buffer to unload")
    asked = [c.payload for c in script.calls("STREAM_UNLOAD")[before:]]
    assert asked[0] == ["comeback", "Buffer", "cancelablepublisher did not come back within 1s"]
    assert all(a == asked[0] for a in asked)
