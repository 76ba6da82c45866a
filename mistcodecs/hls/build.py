"""From segmenter spans to a media playlist: the glue an HLS/CMAF output calls per request.

The output keeps the spans (from :class:`SegmentCutter`) and parts (from
:func:`cut_parts` + :func:`assign_parts`) of a stream and asks for the playlist
of the moment. Names are the caller's (``uri``/``part_uri`` callables), so TS
(``<from>_<until>.ts``) and CMAF (``chunk_<t>.m4s``, ``chunk_<t>.<n>.m4s``) share
this code.

RFC 8216 6.2.1 forbids changing EXT-X-TARGETDURATION in a live playlist, so a live
output should pass a ``target_duration`` it keeps for the stream's lifetime (for
example the largest value :func:`target_duration` ever returned); a segment longer
than that makes ``render()`` raise instead of emitting a non-conforming playlist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime

from mistcodecs.hls.media import (
    InitSection,
    MediaPlaylist,
    Part,
    PreloadHint,
    Segment,
    ServerControl,
)
from mistcodecs.hls.segmenter import PartSpan, SegmentSpan, target_duration


def media_playlist(
    spans: Sequence[SegmentSpan],
    *,
    uri: Callable[[SegmentSpan], str],
    target_ms: int,
    target: int | None = None,
    window: int | None = None,
    ended: bool = False,
    init_uri: str | None = None,
    discontinuities: Collection[int] = (),
    discontinuity_sequence: int = 0,
    utc_offset_ms: int | None = None,
    parts: Sequence[PartSpan] = (),
    part_uri: Callable[[PartSpan], str] | None = None,
    part_target_ms: int | None = None,
    can_block_reload: bool = True,
) -> MediaPlaylist:
    """The playlist for the last ``window`` complete segments (all when None).

    ``discontinuities`` holds the MSNs that follow a publisher reconnect;
    ``discontinuity_sequence`` counts those already out of the window.
    ``utc_offset_ms`` (unix ms at media time 0) adds EXT-X-PROGRAM-DATE-TIME.
    With ``part_target_ms`` the playlist is LL-HLS: parts of listed segments, the
    open segment's parts, a PART preload hint for the next one and server control
    with PART-HOLD-BACK of 3 part targets."""
    shown = list(spans[-window:] if window else spans)
    segments: list[Segment] = []
    by_msn: dict[int, list[Part]] = {}
    ll = part_target_ms is not None and part_uri is not None
    if ll:
        assert part_uri is not None
        for p in parts:
            by_msn.setdefault(p.msn, []).append(
                Part(p.duration, part_uri(p), independent=p.independent)
            )
    fixed_target = target or target_duration(shown, target_ms)
    # rfc8216bis 6.2.2: parts more than 3 target durations from the end are dropped
    live_edge = shown[-1].end_ms - 3000 * fixed_target if shown else 0
    for i, span in enumerate(shown):
        seg = Segment(span.duration, uri(span), discontinuity=span.msn in discontinuities and i > 0)
        if utc_offset_ms is not None and (i == 0 or seg.discontinuity):
            seg.program_date_time = datetime.fromtimestamp(
                (utc_offset_ms + span.start_ms) / 1000, UTC
            )
        if i == 0 and init_uri is not None:
            seg.init = InitSection(init_uri)
        seg.parts = by_msn.get(span.msn, []) if ll and span.start_ms >= live_edge else []
        segments.append(seg)
    first_msn = shown[0].msn if shown else 0
    next_msn = shown[-1].msn + 1 if shown else 0
    pl = MediaPlaylist(
        segments=segments,
        media_sequence=first_msn,
        discontinuity_sequence=discontinuity_sequence,
        target_duration=fixed_target,
        endlist=ended,
        independent_segments=True,
    )
    if ll and part_target_ms is not None and part_uri is not None:
        part_target = part_target_ms / 1000
        pl.part_target = part_target
        pl.server_control = ServerControl(
            can_block_reload=can_block_reload,
            part_hold_back=round(3 * part_target, 3),
            hold_back=float(3 * pl.target_duration) if pl.target_duration else None,
        )
        if not ended:
            open_parts = [p for p in parts if p.msn == next_msn]
            pl.open_parts = [
                Part(p.duration, part_uri(p), independent=p.independent) for p in open_parts
            ]
            seg_start = shown[-1].end_ms if shown else 0
            start = open_parts[-1].end_ms if open_parts else seg_start
            hint = PartSpan(
                next_msn, len(open_parts), start, start + part_target_ms, False, seg_start
            )
            pl.preload_hints = [PreloadHint("PART", part_uri(hint))]
    if init_uri is not None and not shown and not ended:
        pl.preload_hints.append(PreloadHint("MAP", init_uri))
    return pl


def live_window(spans: Sequence[SegmentSpan], target: int, minimum: int = 4) -> int:
    """How many segments a live playlist keeps: at least ``minimum`` and at least
    4 target durations of media (MistServer keeps >= 4x the target duration)."""
    keep, total = 0, 0.0
    for span in reversed(spans):
        keep += 1
        total += span.duration
        if keep >= minimum and total >= 4 * target:
            break
    return keep


_URI_ATTR = re.compile(r'(URI=")([^"]*)(")')


def with_query(text: str, query: str) -> str:
    """A rendered playlist (master or media) whose every URI -- URI lines and ``URI="..."``
    attributes of EXT-X-MAP, EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-MEDIA and
    EXT-X-RENDITION-REPORT -- carries ``query`` (``"tkn=abc"``), so a player's follow-up
    requests name the same session as the playlist request did."""
    if not query:
        return text

    def add(uri: str) -> str:
        return f"{uri}{'&' if '?' in uri else '?'}{query}"

    lines = []
    for line in text.split("\n"):
        if line and not line.startswith("#"):
            line = add(line)
        elif 'URI="' in line:
            line = _URI_ATTR.sub(lambda m: m[1] + add(m[2]) + m[3], line)
        lines.append(line)
    return "\n".join(lines)
