"""Push-out and recording of a live RTMP stream: restream into nginx-rtmp, record to
every file format (also killed with SIGKILL mid-way), and the push target helpers."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from controller.pushes import expand, split_seconds, with_counter
from tests.codecs_rtmp.test_nginx_analyser import nginx  # noqa: F401 - fixture
from tests.outputs_http.media import decode, ffprobe

from .conftest import PY, Rtmp, standalone_env, stop_proc, wait_for
from .test_e2e import check_decoded, pyav_read

PROGRAMS = {"flv": "MistOutFLV", "mp4": "MistOutMP4", "ts": "MistOutHTTPTS", "mkv": "MistOutEBML"}


def recorder(stream: str, path: Path, *extra: str) -> subprocess.Popen[bytes]:
    program = PROGRAMS[path.suffix[1:]]
    return subprocess.Popen(
        [PY, "-m", "outputs.standalone", program, "--stream", stream, *extra, str(path)],
        env=standalone_env(),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_restream_into_nginx(rtmp: Rtmp, publisher: object, nginx: int, tmp_path: Path) -> None:  # noqa: F811
    stream, _ = publisher(30)  # type: ignore[operator]
    target = f"rtmp://127.0.0.1:{nginx}/live/restream"
    push = subprocess.Popen(
        [PY, "-m", "outputs.rtmp.server", "--stream", stream, target],
        env=standalone_env(),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)  # nginx answers "stream not found" until the push has started
        out = tmp_path / "back.mkv"
        deadline = time.monotonic() + 20
        while True:
            reader = pyav_read(target, out, 3.0)
            _, err = reader.communicate(timeout=40)
            if reader.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert reader.returncode == 0, err.decode()
        check_decoded(decode(out), 45)
        assert push.poll() is None
    finally:
        push.send_signal(signal.SIGTERM)
        assert push.wait(10) == 0


@pytest.mark.parametrize("seconds", [6, pytest.param(30, marks=pytest.mark.slow)])
def test_record_every_format(rtmp: Rtmp, publisher: object, tmp_path: Path, seconds: int) -> None:
    stream, _ = publisher(seconds + 90)  # type: ignore[operator]  # outlasts slow starts
    procs = {ext: recorder(stream, tmp_path / f"rec.{ext}") for ext in PROGRAMS}
    killed = {ext: recorder(stream, tmp_path / f"killed.{ext}") for ext in PROGRAMS}
    try:
        files = [tmp_path / f"{kind}.{ext}" for kind in ("rec", "killed") for ext in PROGRAMS]
        wait_for(lambda: all(f.exists() and f.stat().st_size > 1000 for f in files), 60, "data")
        time.sleep(seconds / 2)
        for p in killed.values():
            p.send_signal(signal.SIGKILL)
        time.sleep(seconds / 2)
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            assert p.wait(15) == 0
    finally:
        for p in [*procs.values(), *killed.values()]:
            stop_proc(p)
    for ext in PROGRAMS:
        full = tmp_path / f"rec.{ext}"
        d = decode(full)
        check_decoded(d, int(seconds * 25 * 0.8))
        streams = {s["codec_name"] for s in ffprobe(full)["streams"]}
        assert streams == {"h264", "aac"}, (ext, streams)
        partial = decode(tmp_path / f"killed.{ext}")
        check_decoded(partial, int(seconds / 2 * 25 * 0.6))


def test_push_client_refused_target_exits_nonzero(rtmp: Rtmp, publisher: object) -> None:
    """A push to an RTMP server that refuses the publish exits 1 with a clear message."""
    stream, _ = publisher(30)  # type: ignore[operator]
    other, _ = publisher(30)  # type: ignore[operator]
    push = subprocess.run(
        [PY, "-m", "outputs.rtmp.server", "--stream", stream, rtmp.url(other)],
        env=standalone_env(),
        capture_output=True,
        timeout=30,
    )
    assert push.returncode == 1
    assert b"refused" in push.stderr


def test_target_variables() -> None:
    now = time.mktime((2024, 3, 9, 7, 5, 3, 0, 0, -1))
    assert expand("/r/$stream_$datetime.mkv", "cam+one", 0, now) == (
        "/r/cam+one_2024.03.09.07.05.03.mkv"
    )
    assert expand("/r/$basename/$wildcard/$year-$month-$day_$hour$minute$second.ts", "cam+one",
                  0, now) == "/r/cam/one/2024-03-09_070503.ts"  # fmt: skip
    assert expand("$wday $yday $segmentCounter", "s", 7, now) == "6 69 7"
    assert split_seconds("/r/x.mp4?split=60&video=1") == ("/r/x.mp4?video=1", 60.0)
    assert split_seconds("/r/x.mp4") == ("/r/x.mp4", 0.0)
    assert with_counter("/r/x.mp4") == "/r/x_$segmentCounter.mp4"
    assert with_counter("/r/$datetime.mp4") == "/r/$datetime.mp4"


@pytest.mark.parametrize("ext", ["flv", pytest.param("ts", marks=pytest.mark.slow)])
def test_recorder_waits_for_the_stream(rtmp: Rtmp, tmp_path: Path, ext: str) -> None:
    """A recording started before the publisher still gets the stream once it is live."""
    from .conftest import ffmpeg_publish, unique

    stream = unique("late")
    out = tmp_path / f"late.{ext}"
    # a loaded machine may take well over the default 20 s to get the publisher's
    # stream READY (a MistInBuffer to start): the recorder waits 90 s
    rec = recorder(stream, out, "--wait", "90")
    try:
        time.sleep(0.5)
        pub = ffmpeg_publish(rtmp.url(stream), 60)  # stopped once the data is there
        wait_for(lambda: out.exists() and out.stat().st_size > 100_000, 90, "recording data")
        stop_proc(pub)
    finally:
        stop_proc(rec)
    check_decoded(decode(out), 25)
