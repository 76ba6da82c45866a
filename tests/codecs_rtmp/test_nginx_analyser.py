"""MistAnalyserRTMP against a real RTMP server (nginx with its RTMP module) fed by FFmpeg."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mistcodecs.flv import FlvDemuxer, FlvMuxer
from mistcodecs.rtmp import ConnectResult, RtmpClientConnection, Status, StreamCreated
from shm.model import Packet, TrackMeta
from tests.codecs_flv.media import ffmpeg_flv, pyav_decode

MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
pytestmark = pytest.mark.skipif(not MODULE.exists(), reason="libnginx-mod-rtmp not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"load_module {MODULE};\ndaemon off;\nmaster_process off;\n"
        f"error_log {tmp_path}/error.log info;\npid {tmp_path}/nginx.pid;\n"
        "events { worker_connections 64; }\n"
        f"rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record off; }}\n"
        f"  application rec {{ live on; record all; record_path {tmp_path}; record_unique off; }} }} }}\n"
    )
    proc = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")]
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, (tmp_path / "error.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start listening"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def publish(port: int, key: str, seconds: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
         "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", str(seconds), "-c:v", "libx264", "-g", "25",
         "-c:a", "aac", "-f", "flv", f"rtmp://127.0.0.1:{port}/live/{key}"]
    )  # fmt: skip


def analyse(url: str, *args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analysers.rtmp", url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_play_from_nginx_and_reconstruct(nginx: int, tmp_path: Path) -> None:
    pub = publish(nginx, "key", 4)
    try:
        time.sleep(0.5)  # nginx only serves a live stream once the publisher is in
        out = tmp_path / "out.flv"
        res = analyse(f"rtmp://127.0.0.1:{nginx}/live/key", "-D", "2", "-R", str(out), "-T", "30")
        assert pub.wait(30) == 0
    finally:
        pub.kill()
        pub.wait()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "handshake complete (digest)" in res.stdout
    assert "NetStream.Play.Start" in res.stdout
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("MistAnalyserRTMP: valid")
    decoded = pyav_decode(out)
    codec, count, pts = decoded["video"]
    assert codec == "h264" and 50 <= count <= 100
    assert pts == sorted(pts)
    assert decoded["audio"][0] == "aac"
    # the analyser's own counts agree with what FFmpeg decoded from the reconstruction
    assert f"video_frames={count}" in last
    d = FlvDemuxer()
    packets = [p for p in d.feed(out.read_bytes()) + d.end() if isinstance(p, Packet)]
    assert sum(p.track == 1 for p in packets) == count


def test_missing_stream_and_timeout(nginx: int) -> None:
    # nginx keeps a player of an unknown live stream waiting: -T ends it with the summary
    res = analyse(
        f"rtmp://127.0.0.1:{nginx}/live/nothing", "-T", "2", "--json", "-D", "4", timeout=20
    )
    assert res.returncode != 0
    lines = res.stdout.strip().splitlines()
    assert lines[-1].startswith("MistAnalyserRTMP: 1 problem(s)")
    records = [json.loads(line) for line in lines[:-1]]
    assert {"problem": "no media received"} in records
    assert any(r.get("message") == "CommandAMF0" for r in records)
    assert any("chunks" in r for r in records)
    assert "Traceback" not in res.stderr


def test_unreachable_server() -> None:
    res = analyse(f"rtmp://127.0.0.1:{free_port()}/live/x", "-T", "2", timeout=20)
    assert res.returncode == 2 and "cannot open" in res.stderr and "Traceback" not in res.stderr


def test_our_client_publishes_to_nginx(nginx: int, tmp_path: Path) -> None:
    """RtmpClientConnection as a publisher (push-out); nginx records what it got."""
    src = ffmpeg_flv(tmp_path / "src.flv", "aac", 2.0)
    d = FlvDemuxer()
    items = d.feed(src.read_bytes()) + d.end()
    tracks = [i for i in items if isinstance(i, TrackMeta)]
    packets = [i for i in items if isinstance(i, Packet)]
    mux = FlvMuxer(tracks)
    client = RtmpClientConnection()
    client.connect("rec", f"rtmp://127.0.0.1:{nginx}/rec")
    sock = socket.create_connection(("127.0.0.1", nginx), timeout=10)
    codes: list[str] = []
    sid = 0

    def exchange(until: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10
        while not until():
            assert time.monotonic() < deadline, codes
            sock.sendall(client.data_to_send())
            for ev in client.receive_data(sock.recv(65536)):
                if isinstance(ev, ConnectResult) and ev.ok:
                    client.create_stream()
                elif isinstance(ev, StreamCreated):
                    client.publish(ev.stream_id, "mine")
                elif isinstance(ev, Status):
                    codes.append(ev.code)
                    nonlocal sid
                    sid = ev.stream_id

    with sock:
        exchange(lambda: "NetStream.Publish.Start" in codes)
        client.send_flv_start(sid, mux)
        for p in packets:
            client.send_packet(sid, mux, p)
        client.delete_stream(sid)
        sock.sendall(client.data_to_send())
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):  # nginx closes (and finishes the recording) on our EOF
            pass
    recorded = tmp_path / "mine.flv"
    deadline = time.monotonic() + 10
    while not recorded.exists() or recorded.stat().st_size < 1000:
        assert time.monotonic() < deadline, "nginx did not record the stream"
        time.sleep(0.05)
    before, after = pyav_decode(src), pyav_decode(recorded)
    assert after["video"][0] == "h264" and after["video"][1] == before["video"][1]
    assert after["audio"][0] == "aac" and after["audio"][1] == before["audio"][1]
    assert after["video"][2] == before["video"][2]
