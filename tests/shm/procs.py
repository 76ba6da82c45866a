"""Process bodies for the multi-process tests (importable by ``spawn`` children)."""

from __future__ import annotations

import hashlib
import random
import sys
import time
from typing import Any

from shm import StreamReader, StreamWriter
from shm.model import TrackMeta

VIDEO_FPS = 30
AUDIO_MS = 1024 * 1000 / 48_000  # one AAC frame at 48 kHz


def synthetic(seconds: int) -> list[tuple[int, int, int, bool, bytes]]:
    """Interleaved (track, dts, offset, keyframe, payload): 30 fps video, 48 kHz AAC."""
    rnd = random.Random(seconds)
    out: list[tuple[int, int, int, bool, bytes]] = []
    for i in range(seconds * VIDEO_FPS):
        key = i % 60 == 0
        size = 12_000 if key else rnd.randrange(800, 4_000)
        out.append((1, i * 1000 // VIDEO_FPS, 66 if i % 3 else 0, key, rnd.randbytes(size)))
    for i in range(int(seconds * 1000 / AUDIO_MS)):
        out.append((2, int(i * AUDIO_MS), 0, True, rnd.randbytes(rnd.randrange(200, 400))))
    out.sort(key=lambda p: (p[1], p[0]))
    return out


def digest(packets: list[tuple[int, int, int, bool, bytes]]) -> str:
    h = hashlib.sha256()
    for track, dts, off, key, data in packets:
        h.update(b"%d %d %d %d %d|" % (track, dts, off, key, len(data)))
        h.update(data)
    return h.hexdigest()


def reader_main(stream: str, total: int, ready: Any, out: Any) -> None:
    r = StreamReader(stream)
    r.seek(0)
    ready.put(r.slot)
    h = hashlib.sha256()
    n = 0
    last: dict[int, int] = {}
    ordered = True
    deadline = time.monotonic() + 100
    while n < total and time.monotonic() < deadline:
        p = r.read()
        if p is None:
            r.wait_sync(1.0)
            continue
        data = p.data
        h.update(b"%d %d %d %d %d|" % (p.track, p.dts, p.offset, p.keyframe, len(data)))
        h.update(data)
        ordered = ordered and p.dts >= last.get(-1, -1)
        last[-1] = p.dts
        n += 1
    out.put((r.slot, n, h.hexdigest(), ordered, r.skipped))
    r.close()


def writer_main(stream: str, seconds: int, speed: float, go: Any, done: Any) -> None:
    packets = synthetic(seconds)
    with StreamWriter(stream, dvr_ms=(seconds + 10) * 1000) as w:
        w.add_track(TrackMeta(1, "video", "H264", init=b"avcC", width=640, height=360, fpks=30_000))
        w.add_track(TrackMeta(2, "audio", "AAC", init=b"\x11\x90", rate=48_000, channels=2))
        done.put("ready")
        go.get(timeout=60)
        t0 = time.monotonic()
        for track, dts, off, key, data in packets:
            due = t0 + dts / 1000 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the synthetic source, not synchronisation
            w.append(track, dts, off, key, data)
        # later packets on both tracks release the last real ones held at the live edge
        end = packets[-1][1] + 1000
        w.append(1, end, 0, True, b"end")
        w.append(2, end, 0, True, b"end")
        done.put("sent")
        go.get(timeout=120)  # keep the stream up until the test has collected


def hold_writer(stream: str) -> None:
    """Take the writer lock, publish a bit, then idle until killed."""
    w = StreamWriter(stream)
    tid = w.add_track(TrackMeta(0, "video", "H264"))
    for i in range(100):
        w.append(tid, i * 40, 0, i % 25 == 0, bytes(1000))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    time.sleep(120)


if __name__ == "__main__":
    hold_writer(sys.argv[1])
