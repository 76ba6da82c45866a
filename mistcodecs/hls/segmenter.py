"""Where segments and LL-HLS parts begin and end, decided from keyframe/frame times (ms).

Every process that sees the same keyframes computes the same boundaries, so
segment names (``<from>_<until>.ts`` in ms, as MistServer) agree across
processes and reloads without coordination.

Segment rule: a segment starts on a keyframe and ends on the *last* keyframe that
keeps it within the target; when there is no keyframe in (start, start+target]
it ends on the first keyframe after that (the only case where a segment is
longer than the target, and then the playlist's target duration grows). A cut
is only decided once media time has passed start+target, so a live cutter fed a
prefix of the keyframes produces a prefix of the segments of the whole list.

Audio-only streams have no keyframes: pass every frame time (or MistServer-style
virtual keys) as a keyframe, so segments end on frame boundaries.

Part rule: a part ends on the first keyframe within (start, start+part_target],
else on the last frame within it, else on the next frame. Parts therefore never
straddle a keyframe, so every segment boundary is a part boundary and a part
that starts on a keyframe is INDEPENDENT.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from common.errors import UsageError


@dataclass(frozen=True)
class SegmentSpan:
    msn: int
    start_ms: int
    end_ms: int

    @property
    def duration(self) -> float:
        return (self.end_ms - self.start_ms) / 1000

    @property
    def name(self) -> str:
        """MistServer's segment name stem: ``<from>_<until>``."""
        return f"{self.start_ms}_{self.end_ms}"


@dataclass(frozen=True)
class PartSpan:
    msn: int  # the segment this part belongs to
    index: int  # part index within that segment
    start_ms: int
    end_ms: int
    independent: bool
    segment_start_ms: int = 0  # where the segment holding this part starts

    @property
    def duration(self) -> float:
        return (self.end_ms - self.start_ms) / 1000

    @property
    def name(self) -> str:
        """MistServer's part name stem: ``<segment start>.<index>``."""
        return f"{self.segment_start_ms}.{self.index}"


class SegmentCutter:
    """Incremental segment boundaries. Feed keyframe times in increasing order with
    :meth:`keyframe`, the media time reached with :meth:`advance`; each returns the
    segments that became complete. :meth:`finish` closes the last one (VoD)."""

    def __init__(self, target_ms: int = 1900, first_msn: int = 0) -> None:
        if target_ms <= 0:
            raise UsageError("segment target must be positive")
        self.target_ms = target_ms
        self.next_msn = first_msn
        self.start: int | None = None  # keyframe where the open segment began
        self._pending: list[int] = []  # keyframes after ``start``, not yet used as a cut
        self._known = -math.inf  # all keyframes up to this time have been fed

    def keyframe(self, time_ms: int) -> list[SegmentSpan]:
        if self.start is None:
            self.start = time_ms
            self._known = time_ms
            return []
        last = self._pending[-1] if self._pending else self.start
        if time_ms <= last:
            raise UsageError(f"keyframe at {time_ms} ms does not follow {last} ms")
        self._pending.append(time_ms)
        return self.advance(time_ms)

    def advance(self, now_ms: float) -> list[SegmentSpan]:
        self._known = max(self._known, now_ms)
        out: list[SegmentSpan] = []
        while self.start is not None and self._pending:
            limit = self.start + self.target_ms
            if self._known < limit:
                break  # a keyframe may still come inside the window
            idx = bisect.bisect_right(self._pending, limit)
            cut = self._pending[idx - 1] if idx else self._pending[0]
            out.append(self._close(cut))
        return out

    def finish(self, end_ms: int) -> list[SegmentSpan]:
        # Cut as live would, except that a remainder fitting the target stays whole.
        out = self.advance(end_ms - 1)
        if self.start is not None and end_ms > self.start:
            out.append(self._close(end_ms))
            self.start = None
        return out

    def _close(self, cut: int) -> SegmentSpan:
        assert self.start is not None
        span = SegmentSpan(self.next_msn, self.start, cut)
        self.next_msn += 1
        self.start = cut
        self._pending = [k for k in self._pending if k > cut]
        return span


def cut_segments(
    keyframes: Iterable[int], target_ms: int, end_ms: int | None = None, first_msn: int = 0
) -> list[SegmentSpan]:
    """All complete segments of a keyframe list; with ``end_ms`` (VoD) the last
    segment runs to the end of the media."""
    cutter = SegmentCutter(target_ms, first_msn)
    out: list[SegmentSpan] = []
    for key in keyframes:
        out.extend(cutter.keyframe(key))
    if end_ms is not None:
        out.extend(cutter.finish(end_ms))
    return out


def target_duration(spans: Sequence[SegmentSpan], target_ms: int) -> int:
    """EXT-X-TARGETDURATION: the configured target, grown to fit the longest segment."""
    longest = max((s.end_ms - s.start_ms for s in spans), default=0)
    return max(1, math.ceil(target_ms / 1000), math.ceil(longest / 1000))


def cut_parts(
    frames: Sequence[int],
    keyframes: Sequence[int],
    part_target_ms: int,
    end_ms: int | None = None,
    known_ms: float | None = None,
    gop_ms: int | None = None,
) -> list[tuple[int, int, bool]]:
    """Part boundaries over sorted frame times: ``(start, end, independent)``.

    ``end_ms`` closes the last part at the end of the media; otherwise only parts
    whose end is decided by ``known_ms`` (all frames up to it are in ``frames``)
    are returned.

    With ``gop_ms`` (the keyframe interval before these frames) each keyframe
    interval is expected to last that long and is split into equal parts: a 1 s GOP
    with a 334 ms target gives 4 parts of ~250 ms instead of three of 320 ms and a
    one-frame sliver before the next keyframe, which players skip as "already
    buffered" (hls.js's fragment look-up tolerance) and then stall on the hole. The
    expectation only uses keyframes before a part's start, so a part decided while
    the segment is open never changes once more frames arrive."""
    if part_target_ms <= 0:
        raise UsageError("part target must be positive")
    if not frames:
        return []
    known = known_ms if known_ms is not None else frames[-1]
    keys = set(keyframes)
    sorted_keys = sorted(keyframes)
    out: list[tuple[int, int, bool]] = []
    start = frames[0]
    while True:
        limit = start + part_target_ms
        goal = _part_goal(start, sorted_keys, part_target_ms, gop_ms) or limit
        k = bisect.bisect_right(sorted_keys, start)
        if k < len(sorted_keys) and sorted_keys[k] <= goal and sorted_keys[k] <= known:
            cut = sorted_keys[k]
        elif known < goal:
            break  # frames (or a keyframe) may still arrive inside the window
        else:
            j = bisect.bisect_right(frames, goal) - 1
            if frames[j] > start:
                cut = frames[j]
            elif (after := bisect.bisect_right(frames, start)) < len(frames):
                cut = frames[after]  # frames further apart than the part target
            else:
                break
        out.append((start, cut, start in keys))
        start = cut
    if end_ms is not None and end_ms > start:
        out.append((start, end_ms, start in keys))
    return out


def _part_goal(
    start: int, sorted_keys: Sequence[int], part_target_ms: int, gop_ms: int | None
) -> float | None:
    """Where the part from ``start`` should end to split the expected keyframe interval
    evenly (None: no expectation, cut at the part target)."""
    if not gop_ms or gop_ms <= 0:
        return None
    i = bisect.bisect_right(sorted_keys, start) - 1
    if i < 0:
        return None
    expected = sorted_keys[i] + gop_ms * (1 + (start - sorted_keys[i]) // gop_ms)
    left = expected - start
    return start + left / math.ceil(left / part_target_ms)


def assign_parts(
    segments: Sequence[SegmentSpan], parts: Iterable[tuple[int, int, bool]]
) -> list[PartSpan]:
    """Number the parts by the segment whose span holds their start; parts after
    the last segment belong to the open segment ``segments[-1].msn + 1``."""
    starts = [s.start_ms for s in segments]
    out: list[PartSpan] = []
    next_open = segments[-1].msn + 1 if segments else 0
    counts: dict[int, int] = {}
    for start, end, independent in parts:
        idx = bisect.bisect_right(starts, start) - 1
        if idx < 0:
            continue  # before the first segment: not listed
        seg = segments[idx]
        msn, seg_start = (
            (seg.msn, seg.start_ms) if start < seg.end_ms else (next_open, segments[-1].end_ms)
        )
        index = counts.get(msn, 0)
        counts[msn] = index + 1
        out.append(PartSpan(msn, index, start, end, independent, seg_start))
    return out
