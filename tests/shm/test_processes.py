"""Several processes: exclusive writer, kill -9 recovery, cleanup, 20 readers."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pytest

from shm import StreamBusy, StreamReader, StreamWriter
from shm.cleanup import cleanup_dead, cleanup_stream, list_streams, stream_page_names, writer_alive
from shm.model import TrackMeta
from shm.users import UserPage

from . import procs


def _start_holder(stream: str) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-m", "tests.shm.procs", stream], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    return p


def _kill9(p: subprocess.Popen[str]) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    if p.stdout:
        p.stdout.close()


def test_busy_then_reclaimed_after_kill9(stream: str) -> None:
    p = _start_holder(stream)
    try:
        assert writer_alive(stream)
        with pytest.raises(StreamBusy):
            StreamWriter(stream)
        r = StreamReader(stream)
        assert len(r.keys(1)) == 4
        assert cleanup_stream(stream) == 0  # alive writer: untouched
    finally:
        _kill9(p)
    assert not writer_alive(stream)
    with StreamWriter(stream) as w:  # the kernel dropped the lock: reclaim
        assert r.refresh() is False or r.closed
        assert r.closed  # the old reader learns its stream is gone
        tid = w.add_track(TrackMeta(0, "audio", "AAC"))
        w.append(tid, 0, 0, True, b"new")
        r2 = StreamReader(stream)
        r2.seek(0)
        p2 = r2.read()
        assert p2 is not None and bytes(p2.data) == b"new"
        r2.close()
    r.close()


def test_cleanup_dead_removes_dead_writer_pages(stream: str) -> None:
    p = _start_holder(stream)
    assert stream in list_streams()
    _kill9(p)
    assert stream_page_names(stream)
    assert cleanup_dead() >= 5
    assert stream_page_names(stream) == []
    assert stream not in list_streams()


def test_mistutilmeta_cli(stream: str) -> None:
    with StreamWriter(stream) as w:
        tid = w.add_track(TrackMeta(0, "video", "H264", init=b"12345", width=640, height=360))
        for i in range(60):
            w.append(tid, i * 40, 0, i % 25 == 0, bytes(500))
        r = StreamReader(stream)
        run = [sys.executable, "-m", "shm.dump"]
        out = subprocess.run([*run, stream, "--json"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        snap = json.loads(out.stdout)
        t = snap["tracks"][str(tid)]
        assert t["codec"] == "H264" and t["init_size"] == 5 and t["lastms"] == 59 * 40
        assert t["parts"] == [0, 60] and t["keys"] == [0, 3]
        assert snap["readers"][0]["pid"] == os.getpid()
        text = subprocess.run([*run, stream], capture_output=True, text=True, timeout=30).stdout
        assert "video H264 640x360" in text and "parts 0..59" in text
        listing = subprocess.run(
            [*run, "--list"], capture_output=True, text=True, timeout=30
        ).stdout
        assert stream in listing.split()
        r.close()
    bad = subprocess.run([*run, stream], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "not on the bus" in bad.stderr
    assert bad.stdout.strip().splitlines()[-1].startswith("MistUtilMETA: unreadable")


def _fan_out(stream: str, readers: int, seconds: int, speed: float, kill_one: bool) -> None:
    ctx = mp.get_context("spawn")
    go, done, ready, out = ctx.Queue(), ctx.Queue(), ctx.Queue(), ctx.Queue()
    packets = procs.synthetic(seconds)
    want = procs.digest(packets)
    writer = ctx.Process(target=procs.writer_main, args=(stream, seconds, speed, go, done))
    writer.start()
    assert done.get(timeout=60) == "ready"
    rs = [
        ctx.Process(target=procs.reader_main, args=(stream, len(packets), ready, out))
        for _ in range(readers)
    ]
    for p in rs:
        p.start()
    slots = [ready.get(timeout=60) for _ in rs]
    assert len(set(slots)) == readers
    go.put(1)
    victim = rs[0]
    if kill_one:
        time.sleep(seconds / speed / 2)
        os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
        victim.join(10)
    assert done.get(timeout=120) == "sent"
    results = [out.get(timeout=120) for _ in range(readers - kill_one)]
    for slot, n, digest, ordered, skipped in results:
        assert (n, digest, ordered, skipped) == (len(packets), want, True, 0), f"reader slot {slot}"
    if kill_one:  # the writer frees the dead reader's slot by itself
        from shm import layout
        from shm.segment import Segment

        seg = Segment.open(layout.user_name(stream))
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pids = {s.pid for s in UserPage(seg).slots()}
                if victim.pid not in pids:
                    break
                time.sleep(0.05)
            assert victim.pid not in pids
        finally:
            seg.close()
    go.put(1)
    writer.join(30)
    for p in rs:
        p.join(10)
    assert writer.exitcode == 0


def test_fan_out_20_readers_one_killed(stream: str) -> None:
    """60 s of 30 fps video + 48 kHz AAC, pushed at 20x, to 20 reader processes."""
    _fan_out(stream, readers=20, seconds=60, speed=20.0, kill_one=True)


@pytest.mark.slow
def test_fan_out_20_readers_real_time(stream: str) -> None:
    _fan_out(stream, readers=20, seconds=60, speed=1.0, kill_one=True)
