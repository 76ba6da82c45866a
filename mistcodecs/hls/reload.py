"""LL-HLS delivery directives: blocking playlist reload and delta updates (rfc8216bis 6.2.5).

Theory of operation: the HTTP output parses the query with
:func:`parse_directives` (a bad value is a 400), then, each time the stream's
playlist state changes, asks :func:`decide` whether to answer now, keep waiting,
or answer 400. It waits at most :func:`block_timeout` seconds and then answers
503, as the spec suggests. Nothing here knows about sockets or clocks.

Rules (rfc8216bis 6.2.5.2):
* ``_HLS_msn=M`` holds the request until the playlist has a complete segment M
  (or later); with ``_HLS_part=N`` until part N of segment M (or anything later)
  is listed. A part index past the final part of a complete segment M means
  part 0 of segment M+1.
* ``_HLS_part`` without ``_HLS_msn`` is a 400.
* M more than two past the last complete segment's MSN is a 400; N more than
  the Advance Part Limit (3, or 3 / PART-TARGET when that is below one second)
  past the last part of the open segment M is a 400.
* A playlist that has ended (EXT-X-ENDLIST) ignores the directives.
* ``_HLS_skip=YES`` / ``v2`` asks for a delta update, served when CAN-SKIP-UNTIL
  is advertised and the playlist has not ended; other values are a 400.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import parse_qs

from common.text import is_decimal
from mistcodecs.errors import FormatError
from mistcodecs.hls.media import MediaPlaylist

BLOCK_TIMEOUT_TARGETS = 3  # wait at most this many target durations, then 503


class Outcome(enum.Enum):
    ANSWER = "answer"
    WAIT = "wait"
    BAD_REQUEST = "bad_request"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str = ""
    skip: str | None = None  # "YES" / "v2" when a delta update is to be served

    @property
    def status(self) -> int | None:
        """The HTTP status to send now (None while waiting)."""
        return {Outcome.ANSWER: 200, Outcome.BAD_REQUEST: 400}.get(self.outcome)


class BadDirective(FormatError):
    """The query holds delivery directives a server must answer with 400."""


@dataclass(frozen=True)
class Directives:
    msn: int | None = None
    part: int | None = None
    skip: str | None = None


def _directive_int(values: list[str], name: str) -> int:
    if len(values) != 1 or not is_decimal(values[0]):
        raise BadDirective(f"{name} must be one non-negative decimal integer, got {values!r}")
    return int(values[0])


def parse_directives(query: str | Mapping[str, str]) -> Directives:
    """Read ``_HLS_msn``/``_HLS_part``/``_HLS_skip`` from a query string or mapping."""
    if isinstance(query, str):
        parsed = parse_qs(query.lstrip("?"), keep_blank_values=True)
    else:
        parsed = {k: [v] for k, v in query.items()}
    msn = _directive_int(parsed["_HLS_msn"], "_HLS_msn") if "_HLS_msn" in parsed else None
    part = _directive_int(parsed["_HLS_part"], "_HLS_part") if "_HLS_part" in parsed else None
    if part is not None and msn is None:
        raise BadDirective("_HLS_part without _HLS_msn")
    skip = None
    if "_HLS_skip" in parsed:
        values = parsed["_HLS_skip"]
        if len(values) != 1 or values[0] not in ("YES", "v2"):
            raise BadDirective(f"_HLS_skip must be YES or v2, got {values!r}")
        skip = values[0]
    return Directives(msn, part, skip)


@dataclass(frozen=True)
class PlaylistState:
    """What the decision needs to know about the playlist as it is right now."""

    next_msn: int  # MSN of the segment in progress (last complete one + 1)
    open_parts: int  # parts of segment ``next_msn`` already published
    part_target: float | None
    target_duration: int
    ended: bool = False
    can_skip: bool = False
    last_segment_parts: int | None = None  # parts of the last complete segment (LL-HLS)

    @classmethod
    def of(cls, pl: MediaPlaylist) -> PlaylistState:
        control = pl.server_control
        return cls(
            next_msn=pl.next_msn,
            open_parts=len(pl.open_parts),
            part_target=pl.part_target,
            target_duration=pl.target_duration or pl.needed_target_duration(),
            ended=pl.endlist,
            can_skip=control is not None and control.can_skip_until is not None,
            last_segment_parts=len(pl.segments[-1].parts)
            if pl.segments and pl.part_target is not None
            else None,
        )


def advance_part_limit(part_target: float | None) -> int:
    if part_target is None or part_target >= 1:
        return 3
    return math.ceil(3 / part_target)


def decide(state: PlaylistState, directives: Directives) -> Decision:
    ended = state.ended
    skip = directives.skip if state.can_skip and not ended else None
    if ended or directives.msn is None:  # directives are ignored once the playlist ended
        return Decision(
            Outcome.ANSWER, "playlist ended" if ended else "no blocking requested", skip
        )
    msn, part = directives.msn, directives.part
    last_msn = state.next_msn - 1
    if msn > last_msn + 2:
        return Decision(
            Outcome.BAD_REQUEST, f"_HLS_msn={msn} is more than 2 past the last segment {last_msn}"
        )
    last_parts = state.last_segment_parts
    if part is not None and msn == last_msn and last_parts is not None and part >= last_parts:
        msn, part = msn + 1, 0  # past the final part of a complete segment: part 0 of the next
    if part is not None and msn > last_msn:
        # parts between the last published one and the one asked for
        ahead = part - (state.open_parts - 1) if msn == state.next_msn else part + 1
        if ahead > advance_part_limit(state.part_target):
            return Decision(
                Outcome.BAD_REQUEST,
                f"_HLS_part={part} of segment {msn} is too far past the last part",
            )
    if msn <= last_msn:
        return Decision(Outcome.ANSWER, f"segment {msn} is complete", skip)
    if part is not None and msn == state.next_msn and part < state.open_parts:
        return Decision(Outcome.ANSWER, f"part {part} of segment {msn} is published", skip)
    return Decision(
        Outcome.WAIT, f"waiting for segment {msn}" + (f" part {part}" if part is not None else "")
    )


def block_timeout(target_duration: float) -> float:
    """Seconds to hold a blocking request before answering 503."""
    return BLOCK_TIMEOUT_TARGETS * target_duration


def delta_update(pl: MediaPlaylist) -> MediaPlaylist:
    """The playlist with the segments older than the Skip Boundary (CAN-SKIP-UNTIL
    before the end) replaced by EXT-X-SKIP (rfc8216bis 4.4.5.2 / 6.2.5.1)."""
    control = pl.server_control
    if control is None or control.can_skip_until is None or pl.skipped_segments:
        return pl
    boundary = pl.duration - control.can_skip_until
    start = 0.0
    skipped = 0
    for seg in pl.segments:
        if start + seg.duration > boundary:
            break
        start += seg.duration
        skipped += 1
    if skipped == 0:
        return pl
    kept = list(pl.segments[skipped:])
    first = kept[0] if kept else None
    # The EXT-X-MAP and date of the first kept segment must survive the cut.
    if first is not None and first.init is None:
        current = next((s.init for s in reversed(pl.segments[:skipped]) if s.init), None)
        kept[0] = replace(first, init=current)
    return replace(pl, segments=kept, skipped_segments=skipped)
