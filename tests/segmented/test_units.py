"""The pure pieces: byte-bounded LRU, segment and part boundaries, the packet window, and
TS continuity-counter alignment (segments muxed in any order play back to back)."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mistcodecs.ts import TsMuxer
from mistcodecs.ts.packets import PACKET_SIZE
from outputs.hls.tscc import PSI_PIDS, align_counters
from outputs.segments import (
    ByteCache,
    Fragment,
    PacketWindow,
    main_track,
    segment_parts,
    segment_spans,
)
from shm.model import Packet, TrackMeta


# -- cache --------------------------------------------------------------------------------
def test_cache_evicts_least_recently_used_by_bytes() -> None:
    c = ByteCache(100)
    c.put("a", b"x" * 40)
    c.put("b", b"y" * 40)
    assert c.get("a") == b"x" * 40  # a is now the most recent
    c.put("c", b"z" * 40)
    assert "b" not in c and "a" in c and "c" in c and c.size == 80
    c.put("huge", b"h" * 101)  # bigger than the cache: not kept, nothing evicted
    assert "huge" not in c and len(c) == 2
    assert c.get("b") is None and c.hits == 1 and c.misses == 1


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 60)), max_size=200))
def test_cache_size_is_exact_and_bounded(ops: list[tuple[int, int]]) -> None:
    c = ByteCache(150)
    for key, size in ops:
        c.put(key, bytes(size))
        assert c.size <= 150
        assert c.size == sum(len(c.get(k) or b"") for k in list(c._items))


# -- segments and parts -------------------------------------------------------------------
def test_main_track_prefers_video() -> None:
    tracks = {2: TrackMeta(2, "audio", "AAC"), 5: TrackMeta(5, "video", "H264"),
              3: TrackMeta(3, "video", "H264")}  # fmt: skip
    assert main_track(tracks) == 3
    assert main_track({2: tracks[2]}) == 2
    assert main_track({}) is None


def test_live_spans_wait_for_every_track() -> None:
    frags = [Fragment(7, 0, 2000), Fragment(8, 2000, 2000), Fragment(9, 4000, 0)]
    spans, open_start = segment_spans(frags, known_ms=3999)
    assert [(s.msn, s.start_ms, s.end_ms) for s in spans] == [(7, 0, 2000)]
    assert open_start == 2000  # complete on the bus, but a track has not reached 4000 yet
    spans, open_start = segment_spans(frags, known_ms=4000)
    assert [s.msn for s in spans] == [7, 8] and open_start == 4000


def test_vod_spans_run_to_the_end() -> None:
    frags = [Fragment(0, 0, 2000), Fragment(1, 2000, 1960)]
    spans, open_start = segment_spans(frags, known_ms=4000, end_ms=4000)
    assert [(s.start_ms, s.end_ms) for s in spans] == [(0, 2000), (2000, 4000)]
    assert open_start is None


frame_lists = st.lists(st.integers(1, 120), min_size=2, max_size=120).map(
    lambda steps: [sum(steps[:i]) for i in range(len(steps))]
)


@settings(max_examples=200, deadline=None)
@given(frame_lists, st.integers(100, 700), st.data())
def test_parts_tile_the_segment_and_grow_by_prefix(
    frames: list[int], part_ms: int, data: st.DataObject
) -> None:
    keys = sorted(
        data.draw(st.sets(st.sampled_from(frames[1:])) if len(frames) > 1 else st.just(set()))
    )
    end = frames[-1] + 40
    gop = data.draw(st.none() | st.integers(40, 3000))
    parts = segment_parts(3, 0, frames, keys, part_ms, end_ms=end, known_ms=end, gop_ms=gop)
    assert parts[0].start_ms == 0 and parts[-1].end_ms == end
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(parts))
    assert all(p.msn == 3 and p.index == i for i, p in enumerate(parts))
    assert parts[0].independent
    for p in parts[1:]:
        assert p.independent == (p.start_ms in keys)
        gap = max((b - a for a, b in itertools.pairwise(frames)), default=0)
        assert p.duration * 1000 <= max(part_ms, gap)
    # while the segment is open, the parts decided so far are a prefix of the final ones
    known = data.draw(st.sampled_from(frames))
    seen = [f for f in frames if f <= known]
    early = segment_parts(3, 0, seen, [k for k in keys if k <= known], part_ms,
                          end_ms=None, known_ms=known, gop_ms=gop)  # fmt: skip
    assert early == parts[: len(early)]


def test_parts_split_a_regular_gop_evenly() -> None:
    """25 fps, a keyframe every second, 334 ms part target: four parts of 200-320 ms per
    keyframe interval, never a one-frame sliver before the next keyframe (hls.js skips
    those as already buffered, then stalls on the hole)."""
    frames = list(range(0, 2000, 40))
    for known in range(40, 2040, 40):
        seen = [f for f in frames if f <= known]
        keys = [k for k in (0, 1000) if k <= known]
        parts = segment_parts(7, 0, seen, keys, 334, end_ms=None if known < 2000 else 2000,
                              known_ms=known, gop_ms=1000)  # fmt: skip
        assert all(200 <= p.duration * 1000 <= 334 for p in parts), parts
    assert len(parts) == 8 and parts[-1].end_ms == 2000
    assert [p.independent for p in parts] == [True, False, False, False, True, False, False, False]


def test_packet_window_ranges_and_pruning() -> None:
    w = PacketWindow()
    for t in range(0, 1000, 40):
        w.add(Packet(1, t, 0, t % 200 == 0, bytearray(b"v")))
    for t in range(0, 1000, 21):
        w.add(Packet(2, t, 0, True, b"a"))
    w.add(Packet(1, 10, 0, False, b"late"))  # backwards: refused
    w.first_ms = 0
    assert [p.dts for p in w.range(1, 200, 400)] == [200, 240, 280, 320, 360]
    assert isinstance(w.range(1, 0, 40)[0].data, bytes)  # copies, not views
    frames, keys = w.frames(1, 400)
    assert frames[0] == 400 and keys == [400, 600, 800]
    w.drop_before(500)
    assert not w.covers(400) and w.covers(500)
    assert w.range(2, 0, None)[0].dts == 504 and w.last_ms(1) == 960


# -- TS continuity counters ---------------------------------------------------------------
def _stream_packets(seconds: int) -> tuple[list[TrackMeta], list[Packet]]:
    rnd = random.Random(5)
    video = TrackMeta(1, "video", "H264", width=320, height=240)
    audio = TrackMeta(2, "audio", "AAC", init=bytes([0x11, 0x90]), rate=48000, channels=2)
    out: list[Packet] = []
    for i in range(seconds * 25):
        size = rnd.randint(50, 3000) if i % 25 else 9000
        nal = bytes([0x65 if i % 25 == 0 else 0x41]) + rnd.randbytes(size)
        out.append(Packet(1, i * 40, 0, i % 25 == 0, len(nal).to_bytes(4, "big") + nal))
    for i in range(seconds * 1000 * 48 // 1024):
        out.append(Packet(2, i * 1024 * 1000 // 48000, 0, True, rnd.randbytes(rnd.randint(5, 400))))
    out.sort(key=lambda p: (p.dts, p.track))
    return [video, audio], out


def _packets(ts: bytes) -> list[tuple[int, int, bool, bytes]]:
    """(pid, cc, has payload, payload bytes) of each 188-byte packet."""
    out = []
    for i in range(0, len(ts), PACKET_SIZE):
        p = ts[i : i + PACKET_SIZE]
        pid = ((p[1] & 0x1F) << 8) | p[2]
        afc = p[3] >> 4 & 3
        start = 4 + (1 + p[4] if afc & 2 else 0)
        out.append((pid, p[3] & 0xF, bool(afc & 1), p[start:] if afc & 1 else b""))
    return out


def test_segments_muxed_in_any_order_have_continuous_counters() -> None:
    tracks, packets = _stream_packets(12)
    bounds = [(0, 2000), (2000, 4000), (4000, 6000), (6000, 9000), (9000, 12000)]
    order = [3, 0, 4, 1, 2]
    raw: dict[int, bytes] = {}
    aligned: dict[int, bytes] = {}
    for n in order:  # each segment by a fresh muxer, out of order
        lo, hi = bounds[n]
        mux = TsMuxer(tracks, psi_on_keyframes=False)
        body = mux.segment_start() + b"".join(mux.packet(p) for p in packets if lo <= p.dts < hi)
        raw[n] = body
        aligned[n] = align_counters(body, n)
        assert len(aligned[n]) % PACKET_SIZE == 0
    last: dict[int, int] = {}
    for n in range(len(bounds)):
        for pid, cc, payload, _ in _packets(aligned[n]):
            if pid in last and payload:
                assert cc == (last[pid] + 1) & 0xF, (n, pid)
            last[pid] = cc
        # the elementary data of every PID is untouched, only re-split
        for pid in {p[0] for p in _packets(raw[n])} - PSI_PIDS:
            before = b"".join(q[3] for q in _packets(raw[n]) if q[0] == pid)
            after = b"".join(q[3] for q in _packets(aligned[n]) if q[0] == pid)
            assert before == after


# -- WebVTT -------------------------------------------------------------------------------
def test_webvtt_segment_escapes_and_skips_bad_cues() -> None:
    from outputs.hls import webvtt

    packets = [
        Packet(3, 61_000, 0, True, (1500).to_bytes(4, "big") + b"a --> b\r\n\r\nnext"),
        Packet(3, 62_000, 0, True, b"\x00\x01"),  # too short: left out
        Packet(3, 70_000, 0, True, (500).to_bytes(4, "big") + b"later"),
    ]
    cues = webvtt.cues(packets)
    assert [(c.start_ms, c.end_ms) for c in cues] == [(61_000, 62_500), (70_000, 70_500)]
    text = webvtt.segment(cues, 62_000, 64_000, 126_000).decode()
    assert text == (
        "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n\n"
        "00:01:01.000 --> 00:01:02.500\na -> b\nnext\n\n"
    )
    assert webvtt.timestamp(3_723_004) == "01:02:03.004"
