"""Ring index: wrap-safe numbers, wrap-around, readers behind the tail, growth."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shm import StreamReader, StreamWriter
from shm.layout import MASK32, next_pow2, seq_lt32, unwrap32
from shm.model import TrackMeta


@given(st.integers(0, 2**62), st.integers(-(2**31) + 1, 2**31 - 1))
def test_unwrap32_recovers_nearby_numbers(ref: int, delta: int) -> None:
    value = ref + delta
    if value < 0:
        return
    assert unwrap32(ref, value & MASK32) == value


@given(st.integers(0, 2**40), st.integers(1, 2**31 - 1))
def test_seq_lt32_is_wrap_safe(a: int, delta: int) -> None:
    b = a + delta
    assert seq_lt32(a & MASK32, b & MASK32)
    assert not seq_lt32(b & MASK32, a & MASK32)
    assert not seq_lt32(a & MASK32, a & MASK32)


@given(st.integers(1, 2**20))
def test_next_pow2(n: int) -> None:
    p = next_pow2(n)
    assert p >= n and p & (p - 1) == 0 and p // 2 < n


def _payload(i: int) -> bytes:
    return i.to_bytes(4, "little") * (1 + i % 7)


def test_ring_wraps_many_times(stream: str) -> None:
    with StreamWriter(stream, dvr_ms=2_000) as w:
        tid = w.add_track(TrackMeta(0, "video", "H264"))
        r = StreamReader(stream)
        r.seek(0)
        got = []
        for i in range(20_000):  # > 4x the initial 4096-part ring
            w.append(tid, i * 10, 0, i % 25 == 0, _payload(i))
            if i % 50 == 49:
                while (p := r.read()) is not None:
                    got.append((p.dts, bytes(p.data)))
        page = r.track_page(tid)
        start, end = page.counters()[:2]
        assert end == 20_000 and end - start < page.parts_cap
        assert page.parts_cap == 4096  # retention kept it from growing
        assert r.skipped == 0
        assert [d for d, _ in got] == [i * 10 for i in range(len(got))]
        assert all(data == _payload(d // 10) for d, data in got)
        r.close()


def test_reader_behind_tail_skips_to_oldest_key(stream: str) -> None:
    with StreamWriter(stream, dvr_ms=1_000) as w:
        tid = w.add_track(TrackMeta(0, "video", "H264"))
        r = StreamReader(stream)
        r.seek(0)
        w.append(tid, 0, 0, True, b"first")
        assert r.read() is not None
        for i in range(1, 10_000):
            w.append(tid, i * 10, 0, i % 25 == 0, _payload(i))
        p = r.read()
        assert p is not None and r.skipped == 1
        assert p.keyframe and p.dts == r.keys(tid)[0].time >= 10 * 10_000 - 8_000
        rest = [p.dts]
        while (p := r.read()) is not None:
            rest.append(p.dts)
        assert rest == list(range(rest[0], 100_000, 10))
        r.close()


def test_growth_moves_reader_to_bigger_page(stream: str) -> None:
    with StreamWriter(stream, dvr_ms=1_000_000) as w:
        tid = w.add_track(TrackMeta(0, "audio", "AAC"))
        r = StreamReader(stream)
        r.seek(0)
        v0 = r.meta.version
        got = []
        for i in range(10_000):  # nothing may be dropped: the parts ring must grow
            w.append(tid, i * 21, 0, True, _payload(i))
            if i % 1000 == 999:
                while (p := r.read()) is not None:
                    got.append(p.dts)
        while (p := r.read()) is not None:
            got.append(p.dts)
        assert got == [i * 21 for i in range(10_000)]
        assert r.track_page(tid).parts_cap >= 16_384
        assert r.meta.version > v0
        assert r.track_page(tid).counters()[:2] == (0, 10_000)
        r.close()


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 40), st.booleans(), st.integers(0, 3000), st.integers(0, 30)),
        min_size=1,
        max_size=300,
    )
)
def test_property_reader_sees_writer_sequence(steps: list[tuple[int, bool, int, int]]) -> None:
    """Whatever the writer does, a reader gets an in-order suffix-consistent view."""
    import uuid

    name = f"tp{uuid.uuid4().hex[:10]}"
    with StreamWriter(name, dvr_ms=3_000, fragment_ms=500) as w:
        tid = w.add_track(TrackMeta(0, "video", "H264"))
        r = StreamReader(name)
        r.seek(0)
        sent: dict[int, bytes] = {}
        dts = 0
        got: list[int] = []
        for gap, key, size, reads in steps:
            dts += gap
            data = dts.to_bytes(8, "little") + bytes(size)
            w.append(tid, dts, 0, key, data)
            sent.setdefault(dts, data)
            for _ in range(reads):
                p = r.read()
                if p is None:
                    break
                assert bytes(p.data)[:8] == p.dts.to_bytes(8, "little")
                got.append(p.dts)
        assert got == sorted(got)
        if r.skipped == 0:
            n = len(got)
            assert got == [d for d, _ in _sent_order(steps)][:n]
        r.close()


def _sent_order(steps: list[tuple[int, bool, int, int]]) -> list[tuple[int, int]]:
    out = []
    dts = 0
    for gap, _key, size, _r in steps:
        dts += gap
        out.append((dts, size))
    return out


def test_growth_of_a_wrapped_ring_keeps_records(stream: str) -> None:
    with StreamWriter(stream, dvr_ms=2_000) as w:
        tid = w.add_track(TrackMeta(0, "video", "H264"))
        for i in range(10_000):  # wraps the 4096-slot ring; start is far from slot 0
            w.append(tid, i * 10, 0, i % 25 == 0, _payload(i))
        w.dvr_ms = 10**9  # now keep everything: the wrapped ring must grow
        r = StreamReader(stream)
        r.seek(0)
        first = r.keys(tid)[0].first_part
        for i in range(10_000, 16_000):
            w.append(tid, i * 10, 0, i % 25 == 0, _payload(i))
        page = r.track_page(tid)
        assert page.parts_cap >= 8192 and page.counters()[:2] == (first, 16_000)
        got = []
        while (p := r.read()) is not None:
            got.append((p.dts, bytes(p.data)))
        assert [d for d, _ in got] == [i * 10 for i in range(first, 16_000)]
        assert all(data == _payload(d // 10) for d, data in got)
        assert [k.time for k in r.keys(tid)] == list(range(first * 10, 160_000, 250))
        r.close()
