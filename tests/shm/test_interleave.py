"""Interleaving across tracks: strict decode order, and the bounded wait of live outputs.

``lag_wait_s=None`` (the default) holds a packet back while a live track that could
still deliver an earlier one is empty. With ``lag_wait_s`` a lagging track is waited for
only while its expected next packet would come first, and at most that long.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shm import StreamReader, StreamWriter
from shm.model import Packet, StreamState, TrackMeta

NEVER_S = 3600.0  # a bound no test outlives: the reader waits whenever waiting can help
BOUND_S = 0.05
AAC_MS = 21  # 1024 samples at 48 kHz in the whole-ms timestamps of RTMP
VIDEO_MS = 40

AV = tuple[StreamWriter, int, int]


@pytest.fixture
def av_stream(stream: str) -> Iterator[AV]:
    with StreamWriter(stream) as w:
        v = w.add_track(TrackMeta(0, "video", "H264", init=b"avcC"))
        a = w.add_track(TrackMeta(0, "audio", "AAC", init=b"\x11\x90", rate=48_000))
        yield w, v, a


def _drain(r: StreamReader) -> list[tuple[int, int]]:
    out = []
    while (p := r.read()) is not None:
        out.append((p.track, p.dts))
    return out


def _read_blocking(r: StreamReader, deadline_s: float = 60.0) -> Packet:
    """``read()`` until a packet comes with ``wait_sync(None)`` in between, which returns
    on its own only when the reader stops waiting for a lagging track."""
    got: list[Packet] = []

    def run() -> None:
        while (p := r.read()) is None:
            r.wait_sync(None)
        got.append(p)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(deadline_s)
    assert not th.is_alive(), "the reader kept waiting for the lagging track"
    return got[0]


def test_video_not_held_for_audio_that_sorts_after_it(stream: str, av_stream: AV) -> None:
    """A publisher interleaving by dts: the next audio frame is due after the video frame,
    so even an unbounded wait emits the video frame at once; strict order holds it."""
    w, v, a = av_stream
    r = StreamReader(stream, lag_wait_s=NEVER_S)
    strict = StreamReader(stream)
    r.seek_live()
    strict.seek_live()
    out: list[tuple[int, int]] = []
    held = 0
    next_audio = 0
    for i in range(10):
        t = i * VIDEO_MS
        while next_audio <= t:
            w.append(a, next_audio, 0, True, b"a")
            next_audio += AAC_MS
        w.append(v, t, 0, i == 0, b"v")
        got = _drain(r)
        assert (v, t) in got  # nothing held back
        out += got
        held += (v, t) not in _drain(strict)
    assert held == 9  # strict order held every frame after the first for the next audio
    assert [d for _, d in out] == sorted(d for _, d in out)
    r.close()
    strict.close()


def _late_audio_start(w: StreamWriter, v: int, a: int) -> None:
    """Audio arriving ~60 ms after the video of the same time: video 0..80, audio 0, 21."""
    for t in (0, 21):
        w.append(a, t, 0, True, b"a")
    for t in (0, 40, 80):
        w.append(v, t, 0, t == 0, b"v")


def test_lagging_audio_is_waited_for_at_most_the_bound(stream: str, av_stream: AV) -> None:
    w, v, a = av_stream
    r = StreamReader(stream, lag_wait_s=BOUND_S)
    strict = StreamReader(stream)
    r.seek_live()
    strict.seek_live()
    _late_audio_start(w, v, a)
    # v40 goes first: audio's next (42) sorts after it; v80 waits for a42, a63 ...
    assert sorted(_drain(r)) == sorted([(v, 0), (a, 0), (a, 21), (v, 40)])
    # ... but only up to the bound: wait_sync returns by then and v80 comes out
    assert _read_blocking(r).dts == 80
    # strict order still holds it (the silent track is given up only after 5 s of media)
    assert (v, 80) not in _drain(strict)
    strict.wait_sync(BOUND_S * 2)
    assert (v, 80) not in _drain(strict)
    # the late audio comes next, each track in its own order
    for t in (42, 63):
        w.append(a, t, 0, True, b"a")
    assert _drain(r) == [(a, 42), (a, 63)]
    # still behind: the same episode, no second wait
    w.append(v, 120, 0, False, b"v")
    assert _drain(r) == [(v, 120)]
    # audio catches up (a126 >= v120): the next lag is a new episode and waits again
    for t in (84, 105, 126):
        w.append(a, t, 0, True, b"a")
    w.append(v, 160, 0, False, b"v")
    assert _drain(r) == [(a, 84), (a, 105), (a, 126)]
    assert _read_blocking(r).dts == 160
    assert [d for _, d in _drain(strict)] == [40, 42, 63, 80, 84, 105, 120, 126]
    r.close()
    strict.close()


async def test_async_wait_ends_with_the_bound(stream: str, av_stream: AV) -> None:
    w, v, a = av_stream
    r = StreamReader(stream, lag_wait_s=BOUND_S)
    r.seek_live()
    _late_audio_start(w, v, a)
    assert len(_drain(r)) == 4

    async def next_packet() -> Packet:
        while (p := r.read()) is None:
            await r.wait(None)
        return p

    p = await asyncio.wait_for(next_packet(), 60)
    assert (p.track, p.dts) == (v, 80)
    r.close()


def test_vod_is_strictly_ordered_whatever_the_option(stream: str) -> None:
    with StreamWriter(stream, live=False) as w:
        v = w.add_track(TrackMeta(0, "video", "H264"))
        a = w.add_track(TrackMeta(0, "audio", "AAC"))
        w.set_index(v, [(i * VIDEO_MS, 0, 1, i % 25 == 0) for i in range(100)])
        w.set_index(a, [(i * AAC_MS, 0, 1, True) for i in range(150)])  # ends before video
        w.set_state(StreamState.READY)
        r = StreamReader(stream, lag_wait_s=0.0)
        for tid in (v, a):
            for page in r.track_page(tid).pages():
                w.load_page(tid, page.number, (b"x" for _ in w.page_parts(tid, page.number)))
        got = _drain(r)
        assert r.at_end()
        dts = [d for _, d in got]
        assert dts == sorted(dts)
        assert [d for t, d in got if t == v] == [i * VIDEO_MS for i in range(100)]
        assert [d for t, d in got if t == a] == [i * AAC_MS for i in range(150)]
        r.close()


@settings(max_examples=30, deadline=None)
@given(
    late=st.lists(st.integers(0, 150), min_size=60, max_size=60),
    reads=st.lists(st.booleans(), min_size=100, max_size=100),
)
def test_property_each_track_stays_in_order(late: list[int], reads: list[bool]) -> None:
    """Audio arriving up to 150 ms late, reads at random moments: every reader keeps
    each track's order and loses nothing; strict and unbounded readers also keep the
    order across tracks; a reader that never waits delivers everything at once."""
    name = f"ti{uuid.uuid4().hex[:10]}"
    video = [(1, i * VIDEO_MS) for i in range(40)]
    audio = []
    arrive = 0
    for i, extra in enumerate(late):
        arrive = max(arrive, i * AAC_MS + extra)  # one track's packets arrive in order
        audio.append((2, i * AAC_MS, arrive))
    arrivals = sorted([(d, t, d) for t, d in video] + [(at, t, d) for t, d, at in audio])
    with StreamWriter(name) as w:
        w.add_track(TrackMeta(0, "video", "H264"))
        w.add_track(TrackMeta(0, "audio", "AAC"))
        readers = {
            "strict": StreamReader(name),
            "never": StreamReader(name, lag_wait_s=NEVER_S),
            "zero": StreamReader(name, lag_wait_s=0.0),
        }
        got: dict[str, list[tuple[int, int]]] = {k: [] for k in readers}
        for r in readers.values():
            r.seek_live()
        for i, (_at, track, dts) in enumerate(arrivals):
            w.append(track, dts, 0, track == 2 or dts % 1000 == 0, b"p")
            if reads[i % len(reads)]:
                for k, r in readers.items():
                    got[k] += _drain(r)
        for k, r in readers.items():
            got[k] += _drain(r)
            r.close()
    for k, out in got.items():
        for track, sent in ((1, video), (2, [(t, d) for t, d, _ in audio])):
            mine = [p for p in out if p[0] == track]
            assert mine == sent[: len(mine)], k
    for k in ("strict", "never"):
        dts = [d for _, d in got[k]]
        assert dts == sorted(dts), k
    assert sorted(got["zero"]) == sorted(video + [(t, d) for t, d, _ in audio])
