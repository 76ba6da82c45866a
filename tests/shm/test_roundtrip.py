"""Writer -> reader round trips: live, VoD with on-demand loading, metadata, retention."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from common.errors import UsageError
from shm import StreamBusy, StreamMeta, StreamNotFound, StreamReader, StreamWriter
from shm.cleanup import stream_page_names
from shm.layout import data_name
from shm.model import StreamState, TrackMeta


def _drain(r: StreamReader) -> list[tuple[int, int, int, bool, bytes]]:
    out = []
    while (p := r.read()) is not None:
        out.append((p.track, p.dts, p.offset, p.keyframe, bytes(p.data)))
    return out


def test_unknown_stream(stream: str) -> None:
    with pytest.raises(StreamNotFound):
        StreamReader(stream)


def test_live_two_tracks_interleaved_in_decode_order(stream: str) -> None:
    with StreamWriter(stream) as w:
        v = w.add_track(TrackMeta(0, "video", "H264", init=b"avcC", width=320, height=240))
        a = w.add_track(TrackMeta(0, "audio", "AAC", init=b"\x12\x10", rate=48_000, channels=2))
        r = StreamReader(stream)
        assert isinstance(r.meta, StreamMeta) and r.meta.live
        assert r.meta.tracks[v].init == b"avcC" and r.meta.tracks[a].rate == 48_000
        r.seek(0)
        # audio arrives late: the reader must hold video back until audio catches up
        for i in range(30):
            w.append(v, i * 33, 66, i == 0, b"V%d" % i)
        got = _drain(r)
        assert [g[1] for g in got] == [0]  # nothing later than audio's start yet
        for i in range(47):
            w.append(a, i * 21, 0, True, b"A%d" % i)
        got += _drain(r)
        dts = [g[1] for g in got]
        assert dts == sorted(dts)
        assert [g for g in got if g[0] == v] == [
            (v, i * 33, 66, i == 0, b"V%d" % i) for i in range(30)
        ]
        assert [g[4] for g in got if g[0] == a][:40] == [b"A%d" % i for i in range(40)]
        assert r.meta.tracks[v].lastms == 29 * 33
        r.close()


def test_silent_track_is_given_up_after_5s(stream: str) -> None:
    with StreamWriter(stream) as w:
        v = w.add_track(TrackMeta(0, "video", "H264"))
        w.add_track(TrackMeta(0, "audio", "AAC"))
        r = StreamReader(stream)
        r.seek(0)
        for i in range(100):
            w.append(v, i * 100, 0, i % 10 == 0, b"v")
        got = _drain(r)
        # held back until the audio track had been silent for > 5 s of video time
        assert got and got[0][1] == 0 and got[-1][1] == 99 * 100
        r.close()


def test_out_of_order_packets_are_dropped_and_counted(stream: str) -> None:
    with StreamWriter(stream) as w:
        v = w.add_track(TrackMeta(0, "video", "H264"))
        r = StreamReader(stream)
        r.seek(0)
        for d in (0, 40, 20, 80):
            w.append(v, d, 0, d == 0, b"x")
        assert [p[1] for p in _drain(r)] == [0, 40, 80]
        assert r.track_page(v).dropped == 1
        r.close()


def test_metadata_changes_are_seen(stream: str) -> None:
    with StreamWriter(stream, source="push://") as w:
        v = w.add_track(TrackMeta(0, "video", "H264"))
        r = StreamReader(stream)
        v0 = r.meta.version
        assert r.meta.source == "push://"
        assert not r.refresh()
        w.update_track(v, init=b"late-init", width=1280, height=720)
        assert r.refresh()
        m = r.meta
        assert m.version > v0 and m.tracks[v].init == b"late-init" and m.tracks[v].width == 1280
        w.set_state(StreamState.READY, 128)
        assert r.meta.state == StreamState.READY and r.meta.progress == 128
        a = w.add_track(TrackMeta(7, "audio", "opus"))
        assert a == 7 and 7 in r.meta.tracks and 7 in r.selected
        w.remove_track(7)
        assert 7 not in r.meta.tracks
        with pytest.raises(UsageError):
            w.update_track(v, bogus=1)
        r.close()


def test_retention_drops_old_keys_and_unlinks_pages(stream: str) -> None:
    import shm.writer as wr

    old = wr.LIVE_PAGE_SIZE, wr.FLIP_BYTES
    wr.LIVE_PAGE_SIZE, wr.FLIP_BYTES = 1 << 20, 100_000  # flip pages often
    try:
        with StreamWriter(stream, dvr_ms=5_000) as w:
            v = w.add_track(TrackMeta(0, "video", "H264"))
            for i in range(900):  # 30 s at 30 fps, key every second
                w.append(v, i * 33, 0, i % 30 == 0, bytes(2_000))
            r = StreamReader(stream)
            page = r.track_page(v)
            pages = page.pages()
            assert pages[0].number > 0  # old pages dropped
            assert not os.path.exists("/dev/shm" + data_name(stream, v, 0))
            assert os.path.exists("/dev/shm" + data_name(stream, v, pages[0].number))
            keys = r.keys(v)
            span = r.meta.tracks[v].lastms - keys[0].time
            assert 5_000 <= span <= 5_000 + 2 * 1_990
            frags = r.fragments(v)
            assert len(frags) >= 3 and all(f.complete for f in frags[:-1])
            assert all(1_900 <= f.duration <= 2_000 for f in frags[:-1])
            assert r.meta.tracks[v].firstms == keys[0].time
            r.seek(0)
            got = _drain(r)
            assert got[0][3] and got[0][1] == keys[0].time and got[-1][1] == 899 * 33
            r.close()
    finally:
        wr.LIVE_PAGE_SIZE, wr.FLIP_BYTES = old


def _vod_parts(n_video: int) -> tuple[list[tuple[int, int, int, bool]], list[bytes]]:
    parts, payloads = [], []
    for i in range(n_video):
        size = 5_000 if i % 48 == 0 else 300 + i % 50
        parts.append((i * 40, 80 if i % 2 else 0, size, i % 48 == 0))
        payloads.append(bytes([i % 251]) * size)
    return parts, payloads


def test_vod_pages_load_on_demand(stream: str) -> None:
    parts, payloads = _vod_parts(5_000)  # 200 s at 25 fps: pages of 20..60 s
    with StreamWriter(stream, live=False) as w:
        v = w.add_track(TrackMeta(0, "video", "H264"))
        w.set_index(v, parts)
        w.set_state(StreamState.READY)
        stop = threading.Event()
        loads: list[tuple[int, int]] = []

        def input_loop() -> None:  # what a VoD input does: serve what readers want
            while not stop.is_set():
                for track, page_no in w.wanted_pages():
                    rng = w.page_parts(track, page_no)
                    w.load_page(track, page_no, (payloads[i] for i in rng))
                    loads.append((track, page_no))
                stop.wait(0.005)

        th = threading.Thread(target=input_loop, name="vod-input")
        th.start()
        try:
            r = StreamReader(stream)
            assert not r.meta.live
            pages = r.track_page(v).pages()
            assert len(pages) >= 3 and all(p.state == 0 for p in pages)
            assert all(p.last_time - p.first_time >= 19_000 for p in pages[:-1])
            got = []
            deadline = time.monotonic() + 30
            while not r.at_end() and time.monotonic() < deadline:
                p = r.read()
                if p is None:
                    r.wait_sync(1.0)
                    continue
                got.append((p.dts, p.offset, p.keyframe, bytes(p.data)))
            assert got == [(d, o, k, payloads[i]) for i, (d, o, _s, k) in enumerate(parts)]
            assert loads[0] == (v, 0)
            assert sorted(set(loads)) == [(v, p.number) for p in pages]
            # seek back into the middle: served from pages still loaded
            start = r.seek(61_000)
            assert start == max(k.time for k in r.keys(v) if k.time <= 61_000)
            p = r.read()
            assert p is not None and p.dts == start and p.keyframe
            r.close()
            assert w.unload_unused(0.0) == len(pages)
            assert not w.has_viewers()
        finally:
            stop.set()
            th.join()


def test_vod_index_grows_track_page(stream: str) -> None:
    parts = [(i * 10, 0, 10, i % 100 == 0) for i in range(20_000)]
    with StreamWriter(stream, live=False) as w:
        v = w.add_track(TrackMeta(0, "video", "H264"))
        r = StreamReader(stream)
        name0 = r.meta.tracks and r.track_page(v).seg.name
        w.set_index(v, parts)
        assert r.refresh()
        page = r.track_page(v)
        assert page.seg.name != name0 and page.parts_cap == 32_768
        assert page.counters()[:2] == (0, 20_000) and len(r.keys(v)) == 200
        r.close()


async def test_async_wait_wakes_on_publish(stream: str) -> None:
    with StreamWriter(stream) as w:
        v = w.add_track(TrackMeta(0, "video", "H264"))
        r = StreamReader(stream)
        r.seek_live()
        assert r.read() is None
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, w.append, v, 0, 0, True, b"hello")
        t0 = time.monotonic()
        await r.wait(5.0)
        assert time.monotonic() - t0 < 2.0
        p = r.read()
        assert p is not None and bytes(p.data) == b"hello"
        await r.wait(0.05)  # nothing new: returns on timeout
        assert r.read() is None
        r.close()


def test_second_writer_is_busy_and_close_leaves_nothing(stream: str) -> None:
    w = StreamWriter(stream)
    with pytest.raises(StreamBusy):
        StreamWriter(stream)
    v = w.add_track(TrackMeta(0, "video", "H264"))
    w.append(v, 0, 0, True, b"x")
    assert stream_page_names(stream)
    r = StreamReader(stream)
    w.close()
    assert stream_page_names(stream) == []
    assert r.at_end() or r.closed
    r.close()
    with StreamWriter(stream):
        pass
