"""MistUtilMETA (``shm/dump.py``) keeps the shared analyser contract: -D/-V/-T/-g/--json,
exit 0 valid / 1 problems / 2 not on the bus, one-line summary last on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from shm import StreamWriter
from shm.model import TrackMeta

RUN = [sys.executable, "-m", "shm.dump"]


def meta(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUN, *args], capture_output=True, text=True, timeout=timeout)


def _video(w: StreamWriter, n: int = 60) -> int:
    tid = w.add_track(TrackMeta(0, "video", "H264", init=b"12345", width=320, height=240))
    for i in range(n):
        w.append(tid, i * 40, 0, i % 25 == 0, bytes(200 + i))
    return tid


def test_detail_levels_and_summary_last(stream: str) -> None:
    with StreamWriter(stream) as w:
        _video(w)
        quiet, tracks, full = (
            meta(stream, "-D", "0"),
            meta(stream, "-D", "1"),
            meta(stream, "-D", "3", "-V"),
        )
    for res in (quiet, tracks, full):
        assert res.returncode == 0, res.stdout + res.stderr
        last = res.stdout.strip().splitlines()[-1]
        assert last.startswith("MistUtilMETA: valid") and f"stream={stream}" in last
        assert "tracks=1" in last
    assert len(quiet.stdout.strip().splitlines()) == 1
    assert "video H264 320x240" in tracks.stdout and "parts 0..59" not in tracks.stdout
    assert "parts 0..59" in full.stdout
    # -D 3 lists every key: 60 frames, a key every 25 -> keys at 0, 1000, 2000 ms
    assert [
        ln.split(":")[0].strip()
        for ln in full.stdout.splitlines()
        if "key " in ln and "ms, parts" in ln
    ] == [
        "key 0",
        "key 1",
        "key 2",
    ]


def test_json_carries_problems_and_summary(stream: str) -> None:
    with StreamWriter(stream) as w:
        tid = _video(w, 30)
        res = meta(stream, "--json", "-V", "-g", "4")
        w.set_error("cannot play x.mp4: no moov box")
        bad = meta(stream, "--json")
        text = meta(stream)
    assert res.returncode == 0, res.stderr
    rec = json.loads(res.stdout)
    assert rec["problems"] == [] and rec["summary"].startswith("MistUtilMETA: valid")
    assert rec["tracks"][str(tid)]["parts"] == [0, 30]
    assert bad.returncode == 1
    rec = json.loads(bad.stdout)
    assert rec["error"] == "cannot play x.mp4: no moov box"
    assert rec["problems"] == ["stream is INVALID: cannot play x.mp4: no moov box"]
    assert text.returncode == 1 and "error: cannot play x.mp4" in text.stdout
    assert text.stdout.strip().splitlines()[-1].startswith("MistUtilMETA: 1 problem(s)")


def test_missing_stream_exits_2_and_timeout_waits_for_it(stream: str) -> None:
    res = meta(stream, "--json")
    assert res.returncode == 2 and "not on the bus" in res.stderr and "Traceback" not in res.stderr
    assert res.stdout.strip().splitlines()[-1].startswith("MistUtilMETA: unreadable")
    # with -T it waits for the stream to appear
    done = threading.Event()

    def publish() -> None:
        time.sleep(0.5)
        with StreamWriter(stream) as w:
            _video(w, 5)
            done.wait(30)

    t = threading.Thread(target=publish)
    t.start()
    try:
        res = meta(stream, "-T", "20", "-D", "0")
    finally:
        done.set()
        t.join(30)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().startswith("MistUtilMETA: valid")


def test_watch_ends_after_timeout(stream: str) -> None:
    with StreamWriter(stream) as w:
        _video(w, 5)
        t0 = time.monotonic()
        res = meta(stream, "-w", "-T", "1.5", "-D", "0", "--json")
        took = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.strip().splitlines()]
    assert len(lines) >= 2 and all(x["summary"].startswith("MistUtilMETA: valid") for x in lines)
    assert took >= 1.5


def test_validate_watch_flags_a_stalled_live_stream(stream: str) -> None:
    """-V with --watch paces to media time: a live stream whose media time stands still
    is more than 2 s behind the wall clock after about 2 s -> exit 4."""
    with StreamWriter(stream) as w:
        _video(w, 5)
        res = meta(stream, "-w", "-V", "-T", "20", "-D", "0")
    assert res.returncode == 4, res.stdout + res.stderr
    lines = res.stdout.strip().splitlines()
    assert "data arrives too slowly" in lines[-2]
    assert lines[-1].startswith("MistUtilMETA: 1 problem(s)")
