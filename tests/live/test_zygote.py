"""Standalone MistOutRTMP forks its live buffers from a warm zygote (inputs.zygote): they
run as MistInBuffer, survive the zygote's death, and end with the connector."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psutil

from tests.outputs_http.media import decode

from .conftest import (
    ffmpeg_publish,
    shm_names,
    start_rtmp,
    stop_proc,
    stop_rtmp,
    unique,
    wait_for,
    wait_ready,
)


def _buffers(root: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(root).children(recursive=True) if p.name() == "MistInBuffer"]


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pid_running(pid: int) -> bool:
    try:
        return _running(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def _zygote(root: int) -> psutil.Process | None:
    for p in psutil.Process(root).children():
        try:
            if _running(p) and "inputs.zygote" in p.cmdline():
                return p
        except psutil.Error:
            continue
    return None


def _play(url: str, out: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", url, "-t", "2", "-c", "copy", "-f", "flv",
         str(out)],
        check=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_buffers_come_from_the_zygote_and_outlive_it(tmp_path: Path) -> None:
    srv = start_rtmp("--timeout", "3")
    pubs: list[subprocess.Popen[bytes]] = []
    first, second = unique("zy"), unique("zy")
    try:
        pubs.append(ffmpeg_publish(srv.url(first), 60))
        wait_ready(first)
        zygote = wait_for(lambda: _zygote(srv.proc.pid), 30, "the zygote")
        (buf,) = wait_for(lambda: _buffers(srv.proc.pid), 30, "the forked MistInBuffer")
        assert buf.ppid() == zygote.pid

        zygote.kill()  # kill -9: the running buffer and its stream carry on
        wait_for(lambda: not _running(zygote), 30, "the zygote gone")
        assert buf.is_running()
        _play(srv.url(first), tmp_path / "first.flv")
        assert decode(tmp_path / "first.flv").video_frames >= 10

        pubs.append(ffmpeg_publish(srv.url(second), 60))  # a new zygote serves the next push
        wait_ready(second)
        new_zygote = wait_for(lambda: _zygote(srv.proc.pid), 30, "a new zygote")
        assert new_zygote.pid != zygote.pid
        _play(srv.url(second), tmp_path / "second.flv")
        assert decode(tmp_path / "second.flv").video_frames >= 10
        buffers = {p.pid for p in _buffers(srv.proc.pid)} | {buf.pid}
    finally:
        for p in pubs:
            stop_proc(p)
        stop_rtmp(srv)
        srv.log.unlink(missing_ok=True)
    # the connector took its buffers (forked or orphaned by the zygote) along
    wait_for(lambda: not any(_pid_running(p) for p in buffers), 30, "buffers gone")
    wait_for(lambda: not shm_names(first) + shm_names(second), 30, "no shm leftovers")
