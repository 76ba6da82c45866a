"""The live path under a real MistController: MistOutRTMP and MistOutHTTP as its
connectors, MistInBuffer chosen for ``push://`` sources, push passwords and host
whitelists, and the push API (restream, recording with split, auto pushes)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.controller.conftest import Mist, base_config, free_port
from tests.controller.conftest import module_factory as module_factory
from tests.outputs_http.conftest import Server as HttpServer
from tests.outputs_http.media import decode

from .conftest import ffmpeg_publish, shm_names, stop_proc, stream_state, wait_for, wait_ready
from .test_e2e import check_decoded, http_capture


@pytest.fixture(scope="module")
def boot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bootrec")


@pytest.fixture(scope="module")
def mist(module_factory: Callable[..., Mist], boot_dir: Path) -> Iterator[tuple[Mist, int, int]]:
    rtmp, http = free_port(), free_port()
    cfg = base_config(0)
    cfg["config"]["protocols"] = [
        {"connector": "RTMP", "port": rtmp, "interface": "127.0.0.1", "timeout": 5},
        {"connector": "HTTP", "port": http, "interface": "127.0.0.1"},
    ]
    cfg["streams"] = {
        "live": {"name": "live", "source": "push://"},
        "sec": {"name": "sec", "source": "push://127.0.0.1@secret", "resume": 1},
        "deny": {"name": "deny", "source": "push://192.0.2.1"},
        "rec": {"name": "rec", "source": "push://"},
        "auto": {"name": "auto", "source": "push://", "resume": 1},
        "boot": {"name": "boot", "source": "push://", "resume": 1},
    }
    # an auto push already in the config file: must work without any push API call
    cfg["auto_push"] = {"bootrule": {"stream": "boot", "target": str(boot_dir / "$stream.flv")}}
    m = module_factory(cfg, args=["-g", "4"], builtin=True)

    def online() -> bool:
        states = [m.protocol_online(c) for c in ("RTMP", "HTTP")]
        return states == [[1], [1]]

    wait_for(online, 90, "RTMP and HTTP connectors")
    wait_for(lambda: _listening(rtmp) and _listening(http), 60, "connector ports")
    yield m, rtmp, http


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        return False
    return True


def _publish_fails(url: str) -> bool:
    proc = ffmpeg_publish(url, 4)
    try:
        return proc.wait(20) != 0
    finally:
        stop_proc(proc)


def _log(m: Mist) -> str:
    return json.dumps(m.api({"log": True})["log"])


def test_push_password_and_whitelist(mist: tuple[Mist, int, int], tmp_path: Path) -> None:
    m, rtmp, http = mist
    assert _publish_fails(f"rtmp://127.0.0.1:{rtmp}/wrong/sec")
    assert _publish_fails(f"rtmp://127.0.0.1:{rtmp}/live/deny")
    assert _publish_fails(f"rtmp://127.0.0.1:{rtmp}/live/nosuchstream")
    wait_for(lambda: "wrong push password" in _log(m), 30, "password refusal in the log")
    wait_for(lambda: "is not whitelisted" in _log(m), 30, "whitelist refusal in the log")
    good = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/secret/sec", 20)
    try:
        wait_ready("sec")
        active = m.api({"active_streams": True})["active_streams"]
        assert "sec" in active
        out = tmp_path / "sec.flv"
        http_capture(HttpServer(None, "127.0.0.1", http, out), "/sec.flv", 2.5, out).join(20)  # type: ignore[arg-type]
        check_decoded(decode(out), 30)
    finally:
        stop_proc(good)
    # resume is 1 s for this stream: then the buffer ends it and leaves nothing behind
    wait_for(lambda: stream_state("sec") is None and not shm_names("sec"), 30, "stream end")


def _pushes(m: Mist) -> list[Any]:
    return list(m.api({"push_list": True}).get("push_list", []))


def test_auto_push_from_config_at_boot(mist: tuple[Mist, int, int], boot_dir: Path) -> None:
    m, rtmp, _ = mist
    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/boot", 30)
    out = boot_dir / "boot.flv"
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 100_000, 30, "boot recording")
    finally:
        stop_proc(pub)
    wait_for(lambda: not _pushes(m), 20, "the recording to end with the stream")
    check_decoded(decode(out), 25)


def test_push_api_restream_and_recording(mist: tuple[Mist, int, int], tmp_path: Path) -> None:
    m, rtmp, _ = mist
    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/rec", 30)
    try:
        wait_ready("rec")
        rec = tmp_path / "rec_$stream.mkv"
        started = m.api({"push_start": ["rec", str(rec)]})
        assert "error" not in started, started
        restream = m.api(
            {"push_start": {"stream": "rec", "target": f"rtmp://127.0.0.1:{rtmp}/live/live"}}
        )
        assert "error" not in restream, restream
        rows = wait_for(lambda: len(_pushes(m)) == 2 and _pushes(m), 30, "two pushes")
        targets = sorted(r[3] for r in rows)
        assert str(tmp_path / "rec_rec.mkv") in targets
        wait_ready("live")  # the restream arrived as a publish on our own server
        out = tmp_path / "back.flv"
        viewer = subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-i", f"rtmp://127.0.0.1:{rtmp}/live/live",
             "-t", "2.5", "-c", "copy", "-y", str(out)], timeout=40,
        )  # fmt: skip
        assert viewer.returncode == 0
        check_decoded(decode(out), 30)
        time.sleep(2)
        stopped = m.api({"push_stop": [r[0] for r in rows]})["push_stop"]
        assert sorted(stopped) == sorted(r[0] for r in rows)
        wait_for(lambda: not _pushes(m), 30, "pushes to stop")
        check_decoded(decode(tmp_path / "rec_rec.mkv"), 50)
    finally:
        stop_proc(pub)


def test_auto_push_split_recording(mist: tuple[Mist, int, int], tmp_path: Path) -> None:
    m, rtmp, _ = mist
    target = str(tmp_path / "auto_$stream_$segmentCounter.ts?split=3")
    reply = m.api({"push_auto_add": {"stream": "auto", "target": target}})
    rules = reply["push_auto_add"]
    mine = [k for k in rules if k != "bootrule"]
    assert [rules[k]["target"] for k in mine] == [target]
    assert m.api({"push_auto_list": True})["push_auto_list"] == rules
    # each split counts from the recorder's first written byte: a slow start takes longer
    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/auto", 90)
    try:
        files = [tmp_path / f"auto_auto_{i}.ts" for i in range(3)]
        wait_for(lambda: files[2].exists() and files[2].stat().st_size > 50_000, 80, "3 segments")
        left = m.api({"push_auto_remove": mine})["push_auto_remove"]
        assert list(left) == ["bootrule"]
        wait_for(lambda: not _pushes(m), 30, "auto pushes to stop")
    finally:
        stop_proc(pub)
    for f in files[:2]:
        d = decode(f)
        check_decoded(d, 50)  # ~3 s each (+ up to a GOP of overlap)
    saved = json.loads(m.config.read_text())
    assert list(saved["auto_push"]) == ["bootrule"]
