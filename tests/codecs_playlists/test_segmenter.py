"""Segment and part boundaries from keyframe lists."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from mistcodecs.hls import SegmentCutter, assign_parts, cut_parts, cut_segments, target_duration


def test_regular_gop_fits_the_target() -> None:
    keys = list(range(0, 20_000, 1000))
    spans = cut_segments(keys, 1900, end_ms=20_000)
    assert [s.duration for s in spans] == [1.0] * 20
    spans = cut_segments(keys, 2000, end_ms=20_000)
    assert [s.name for s in spans[:2]] == ["0_2000", "2000_4000"]
    assert target_duration(spans, 2000) == 2


def test_sparse_keyframes_force_a_longer_segment() -> None:
    spans = cut_segments([0, 1500, 6500, 7000], 2000, end_ms=8000)
    assert [(s.start_ms, s.end_ms) for s in spans] == [(0, 1500), (1500, 6500), (6500, 8000)]
    assert target_duration(spans, 2000) == 5
    assert [s.msn for s in spans] == [0, 1, 2]


def test_live_cutter_waits_until_media_time_passes_the_window() -> None:
    cutter = SegmentCutter(2000, first_msn=7)
    assert cutter.keyframe(0) == []
    assert cutter.keyframe(1000) == []  # a later keyframe may still fit
    assert cutter.advance(1999) == []
    closed = cutter.advance(2000)
    assert [(s.msn, s.start_ms, s.end_ms) for s in closed] == [(7, 0, 1000)]
    # no keyframe in (1000, 3000]: the segment runs to the next keyframe, longer than the target
    assert [(s.msn, s.start_ms, s.end_ms) for s in cutter.keyframe(3500)] == [(8, 1000, 3500)]
    assert cutter.keyframe(4000) == [] and cutter.keyframe(5000) == []
    assert [(s.start_ms, s.end_ms) for s in cutter.keyframe(6000)] == [(3500, 5000)]
    assert [(s.start_ms, s.end_ms) for s in cutter.finish(6500)] == [(5000, 6500)]


keyframe_lists = st.lists(st.integers(1, 5000), min_size=1, max_size=60).map(
    lambda gaps: [sum(gaps[:i]) for i in range(len(gaps) + 1)]
)


@settings(max_examples=200, deadline=None)
@given(keyframe_lists, st.integers(500, 6000))
def test_segments_cut_on_keyframes_within_target(keys: list[int], target: int) -> None:
    end = keys[-1] + 100
    spans = cut_segments(keys, target, end_ms=end)
    assert spans[0].start_ms == keys[0] and spans[-1].end_ms == end
    keyset = set(keys)
    for prev, cur in itertools.pairwise(spans):
        assert prev.end_ms == cur.start_ms and cur.msn == prev.msn + 1
    for s in spans[:-1]:
        assert s.end_ms in keyset and s.start_ms in keyset
        inside = [k for k in keys if s.start_ms < k < s.end_ms]
        if s.end_ms - s.start_ms > target:  # only when no keyframe allowed a cut in time
            assert not [k for k in inside if k - s.start_ms <= target]
    assert target_duration(spans, target) * 1000 >= max(s.end_ms - s.start_ms for s in spans)


@settings(max_examples=200, deadline=None)
@given(keyframe_lists, st.integers(500, 6000), st.data())
def test_live_prefix_gives_the_same_segments(
    keys: list[int], target: int, data: st.DataObject
) -> None:
    full = cut_segments(keys, target)
    upto = data.draw(st.integers(0, len(keys)))
    cutter = SegmentCutter(target)
    live = [s for k in keys[:upto] for s in cutter.keyframe(k)]
    assert live == full[: len(live)]
    if upto:
        # media time may pass, but not beyond the next keyframe not fed yet
        ceiling = keys[upto] - 1 if upto < len(keys) else keys[-1] + 10_000
        live += cutter.advance(data.draw(st.integers(keys[upto - 1], ceiling)))
        assert live[: len(full)] == full[: len(live)]


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 5), st.integers(20, 50), st.integers(200, 500))
def test_parts_never_straddle_keyframes(gop_s: int, frame_ms: int, part_ms: int) -> None:
    end = 12_000
    frames = list(range(0, end, frame_ms))
    keys = [f for f in frames if f % (gop_s * 1000) < frame_ms]
    segs = cut_segments(keys, 2000, end_ms=end)
    parts = assign_parts(segs, cut_parts(frames, keys, part_ms, end_ms=end))
    assert parts[0].start_ms == 0 and parts[-1].end_ms == end
    for p in parts:
        assert p.end_ms - p.start_ms <= part_ms or (
            p.end_ms == end and p.end_ms - p.start_ms <= part_ms + frame_ms
        )
        assert p.independent == (p.start_ms in keys)
        assert not [k for k in keys if p.start_ms < k < p.end_ms]
    for s in segs:
        mine = [p for p in parts if p.msn == s.msn]
        assert (
            mine[0].start_ms == s.start_ms and mine[-1].end_ms == s.end_ms and mine[0].independent
        )
        assert [p.index for p in mine] == list(range(len(mine)))


def test_live_parts_are_a_prefix() -> None:
    frames = list(range(0, 6000, 40))
    keys = [0, 2000, 4000]
    full = cut_parts(frames, keys, 500, end_ms=6000)
    for upto in (10, 37, 80, 149):
        live = cut_parts(frames[:upto], [k for k in keys if k <= frames[upto - 1]], 500)
        assert live == full[: len(live)]
        assert all(end <= frames[upto - 1] for _, end, _ in live)


def test_audio_only_frames_as_keyframes() -> None:
    # AAC at 48 kHz: 1024 samples = 21.333 ms per frame, rounded to ms as our model does
    frames = [round(i * 1024 * 1000 / 48000) for i in range(300)]
    spans = cut_segments(frames, 2000, end_ms=frames[-1] + 21)
    assert all(s.end_ms - s.start_ms <= 2000 for s in spans)
    assert all(s.end_ms in frames for s in spans[:-1])
    assert [s.msn for s in spans] == list(range(len(spans)))
    assert spans[0].end_ms >= 1980  # as close to the target as a frame boundary allows
