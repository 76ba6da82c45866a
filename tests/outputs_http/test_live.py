"""Live fan-out over the real MistOutHTTP: shared bytes, slow viewers, hostile clients."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from pathlib import Path

from .conftest import LivePublisher, Server, Source
from .media import decode


class Viewer(threading.Thread):
    """A raw-socket HTTP client that records what it receives and when."""

    def __init__(
        self, server: Server, path: str, rate: float | None = None, duration: float = 6.0
    ) -> None:
        super().__init__(daemon=True)
        self.server, self.path, self.rate, self.duration = server, path, rate, duration
        self.head = b""
        self.body = bytearray()
        self.error: BaseException | None = None
        self.started = 0.0

    def run(self) -> None:
        try:
            with socket.create_connection((self.server.host, self.server.port), timeout=10) as s:
                if self.rate is not None:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
                s.sendall(
                    f"GET {self.path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                )
                self.started = time.monotonic()
                buf = bytearray()
                while time.monotonic() - self.started < self.duration:
                    chunk = s.recv(4096 if self.rate else 65536)
                    if not chunk:
                        break
                    buf += chunk
                    if self.rate is not None:  # read at ``rate`` bytes per second
                        time.sleep(len(chunk) / self.rate)
                head, _, body = bytes(buf).partition(b"\r\n\r\n")
                self.head, self.body = head, bytearray(body)
        except BaseException as exc:  # reported by the test
            self.error = exc


def _flv_tags(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, timestamp, whole tag) of every complete tag after the FLV header."""
    out = []
    pos = 13
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        if pos + 11 + size + 4 > len(data):
            break
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        out.append((data[pos], ts, data[pos : pos + 11 + size + 4]))
        pos += 11 + size + 4
    return out


def test_many_viewers_get_identical_bytes_and_slow_one_is_skipped(
    server: Server, live_stream: LivePublisher, source: Source, tmp_path: Path
) -> None:
    path = f"/{live_stream.writer.stream}.flv"
    # The slow viewer reads at 10 % of the stream's rate; the test server treats a viewer
    # with more than 16 KiB queued as slow (--max_buffer 16).
    rate = sum(len(f.data) for f in source.frames) / (source.frames[-1].dts / 1000)
    slow = Viewer(server, path, rate=rate / 10, duration=7.0)
    slow.start()
    viewers = [Viewer(server, path, duration=6.0) for _ in range(20)]
    for v in viewers:
        v.start()
    for v in [*viewers, slow]:
        v.join(20)
        assert v.error is None, v.error
    assert all(v.head.startswith(b"HTTP/1.1 200") for v in viewers)
    tag_lists = [_flv_tags(bytes(v.body)) for v in viewers]
    # Each viewer starts with metadata + sequence headers, then a coded video keyframe.
    for tags in tag_lists:
        assert tags[0][0] == 18  # onMetaData
        first_video = next(raw for ty, _, raw in tags if ty == 9 and raw[12] == 1)
        assert first_video[11] == 0x17, "first coded video frame must be a keyframe"
    # After the latest common start point all viewers received the very same tags.
    common_start = max(
        min(ts for ty, ts, _ in tags if ty == 9 and _[12] == 1) for tags in tag_lists
    )
    suffixes = [[raw for ty, ts, raw in tags if ts >= common_start + 500] for tags in tag_lists]
    shortest = min(len(s) for s in suffixes)
    assert shortest > 50
    for s in suffixes[1:]:
        assert s[:shortest] == suffixes[0][:shortest]
    # Real time: in 6 s every fast viewer got at least ~4.5 s of media.
    for tags in tag_lists:
        stamps = [ts for ty, ts, _ in tags if ty == 9]
        assert stamps[-1] - stamps[0] >= 4500, (stamps[0], stamps[-1])
    # The throttled viewer got far less than everyone else but a valid stream start.
    assert slow.head.startswith(b"HTTP/1.1 200")
    assert len(slow.body) < min(len(v.body) for v in viewers) // 2
    # A fast viewer's capture decodes as a clean H264/AAC stream.
    out = tmp_path / "live.flv"
    out.write_bytes(bytes(viewers[0].body))
    got = decode(out)
    assert got.errors == 0
    assert got.video_frames >= 100 and got.video_keys >= 4


def test_live_formats_decode(server: Server, live_stream: LivePublisher, tmp_path: Path) -> None:
    viewers = {
        ext: Viewer(server, f"/{live_stream.writer.stream}.{ext}", duration=3.5)
        for ext in ("ts", "mp4", "mkv", "webm", "aac")
    }
    for v in viewers.values():
        v.start()
    for ext, v in viewers.items():
        v.join(20)
        assert v.error is None
        if ext == "webm":  # H264/AAC cannot be WebM
            assert v.head.startswith(b"HTTP/1.1 415")
            continue
        assert v.head.startswith(b"HTTP/1.1 200"), ext
        out = tmp_path / f"live.{ext}"
        out.write_bytes(bytes(v.body))
        got = decode(out)
        assert got.errors == 0, ext
        assert got.audio_frames > 50, ext
        if ext == "aac":
            continue
        assert got.video_frames >= 50 and got.video_keys >= 2, ext
        pts = sorted(got.video_pts)
        assert all(b > a for a, b in itertools.pairwise(pts)), ext


def test_hostile_clients_do_not_disturb_viewers(
    server: Server, live_stream: LivePublisher, tmp_path: Path
) -> None:
    path = f"/{live_stream.writer.stream}.ts"
    watcher = Viewer(server, path, duration=5.0)
    watcher.start()
    answers: dict[str, bytes] = {}

    def talk(name: str, data: bytes, wait: float = 5.0) -> None:
        with socket.create_connection((server.host, server.port), timeout=wait) as s:
            s.sendall(data)
            buf = b""
            try:
                while chunk := s.recv(4096):
                    buf += chunk
            except (TimeoutError, ConnectionResetError):
                pass
            answers[name] = buf

    talk("garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not http at all\r\n\r\n")
    talk("huge", b"GET /x.flv HTTP/1.1\r\n" + b"X-Pad: " + b"z" * 40_000 + b"\r\n\r\n")
    t0 = time.monotonic()
    talk("slowloris", b"GET /x.flv HTTP/1.1\r\nHost: a\r\nX-Slow:")  # never finishes the head
    slow_s = time.monotonic() - t0
    assert answers["garbage"].startswith(b"HTTP/1.1 400")
    assert answers["huge"].startswith(b"HTTP/1.1 431")
    assert answers["slowloris"].startswith(b"HTTP/1.1 408")
    assert 1.5 <= slow_s <= 4.5  # the test server runs with --header_timeout 2
    watcher.join(20)
    assert watcher.error is None
    out = tmp_path / "watcher.ts"
    out.write_bytes(bytes(watcher.body))
    got = decode(out)  # kept streaming in real time all along
    assert got.errors == 0
    assert max(got.video_pts) - min(got.video_pts) >= 3800


def test_keep_alive_and_options(server: Server, live_stream: LivePublisher) -> None:
    name = live_stream.writer.stream
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(
            f"OPTIONS /{name}.flv HTTP/1.1\r\nHost: a\r\nOrigin: http://x\r\n\r\n"
            f"GET /json_{name}.js HTTP/1.1\r\nHost: a\r\n\r\n".encode()
        )
        buf = b""
        deadline = time.monotonic() + 5
        while buf.count(b"HTTP/1.1 ") < 2 or not buf.rstrip().endswith(b"}"):
            buf += s.recv(65536)
            assert time.monotonic() < deadline
    first, _, rest = buf.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 204")
    assert b"Access-Control-Allow-Origin: *" in first
    assert b"Connection: keep-alive" in first
    assert b'"type":"live"' in rest


def test_live_start_behind_edge(server: Server, live_stream: LivePublisher) -> None:
    deadline = time.monotonic() + 10
    while live_stream.last_dts < 3200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    edge = live_stream.last_dts
    v = Viewer(server, f"/{live_stream.writer.stream}.flv?start=-2000", duration=1.5)
    v.start()
    v.join(20)
    assert v.error is None and v.head.startswith(b"HTTP/1.1 200")
    video = [ts for ty, ts, raw in _flv_tags(bytes(v.body)) if ty == 9 and raw[12] == 1]
    assert edge - 3500 <= video[0] <= edge - 1500  # the keyframe >= 2 s behind the edge
    assert video[-1] >= edge  # then caught up with the live edge
