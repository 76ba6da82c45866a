"""Live playlists built from the segmenter as media time advances: every snapshot
conforms, successive snapshots obey the reload rules, and blocking requests made
against one snapshot are answered by a later one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.errors import UsageError
from mistcodecs.hls import (
    Outcome,
    PartSpan,
    PlaylistState,
    SegmentCutter,
    SegmentSpan,
    assign_parts,
    check_media_playlist,
    check_update,
    cut_parts,
    decide,
    live_window,
    media_playlist,
    parse_directives,
    parse_master_playlist,
    parse_media_playlist,
    with_query,
)

FRAME = 40  # 25 fps
GOP = 1000


def seg_uri(s: SegmentSpan) -> str:
    return f"chunk_{s.start_ms}.m4s"


def part_uri(p: PartSpan) -> str:
    return f"chunk_{p.name}.m4s"


def snapshot(now: int, cutter_state: dict[str, object], target_ms: int = 2000) -> str:
    frames = list(range(0, now + 1, FRAME))
    keys = [f for f in frames if f % GOP == 0]
    cutter = SegmentCutter(target_ms)
    spans = [s for k in keys for s in cutter.keyframe(k)] + cutter.advance(now)
    parts = assign_parts(spans, cut_parts(frames, keys, 500, known_ms=now))
    pl = media_playlist(
        spans,
        uri=seg_uri,
        target_ms=target_ms,
        target=2,
        window=live_window(spans, 2),
        init_uri="init.mp4",
        utc_offset_ms=1_700_000_000_000,
        parts=parts,
        part_uri=part_uri,
        part_target_ms=500,
    )
    cutter_state["spans"] = spans
    return pl.render()


def test_live_snapshots_conform_and_follow_the_rules() -> None:
    state: dict[str, object] = {}
    previous = None
    outcomes: set[Outcome] = set()
    for now in range(2000, 30_000, 170):
        text = snapshot(now, state)
        pl = parse_media_playlist(text)
        assert check_media_playlist(pl) == []
        assert pl.segments[0].init is not None
        assert pl.segments[0].program_date_time is not None
        assert pl.segments[0].program_date_time > datetime(2023, 1, 1, tzinfo=UTC)
        assert len(pl.preload_hints) == 1 and pl.preload_hints[0].type == "PART"
        end = pl.duration
        for seg in pl.segments:  # parts only near the live edge (3 target durations)
            assert bool(seg.parts) == (end <= 6.0 + 1e-9)
            end -= seg.duration
        assert pl.duration >= 8 or pl.first_msn == 0  # at least 4 target durations once available
        if previous is not None:
            assert check_update(previous, pl) == []
            # what a client asks after reading the previous playlist is answered now or soon
            ask = parse_directives(
                f"_HLS_msn={previous.next_msn}&_HLS_part={len(previous.open_parts)}"
            )
            decision = decide(PlaylistState.of(pl), ask)
            assert decision.outcome in (Outcome.ANSWER, Outcome.WAIT)
            outcomes.add(decision.outcome)
            if decision.outcome is Outcome.ANSWER:
                assert pl.next_msn > previous.next_msn or len(pl.open_parts) > len(
                    previous.open_parts
                )
        previous = pl
    assert outcomes == {Outcome.ANSWER, Outcome.WAIT}


def test_preload_hint_names_the_next_part() -> None:
    state: dict[str, object] = {}
    pl = parse_media_playlist(snapshot(4300, state))
    spans = state["spans"]
    assert isinstance(spans, list)
    # 2 s segments 0-2000 and 2000-4000 are complete; parts of the open one are 480 ms
    assert [s.uri for s in pl.segments] == ["chunk_0.m4s", "chunk_2000.m4s"]
    assert [p.uri for p in pl.open_parts] == []  # 4000..4480 is not complete at 4300
    assert pl.preload_hints[0].uri == "chunk_4000.0.m4s"
    pl = parse_media_playlist(snapshot(4500, state))
    assert [p.uri for p in pl.open_parts] == ["chunk_4000.0.m4s"] and pl.open_parts[0].independent
    assert pl.preload_hints[0].uri == "chunk_4000.1.m4s"


def test_fixed_target_refuses_a_longer_segment() -> None:
    spans = [SegmentSpan(0, 0, 2000), SegmentSpan(1, 2000, 5000)]
    with pytest.raises(UsageError, match="target duration"):
        media_playlist(spans, uri=seg_uri, target_ms=2000, target=2).render()
    assert (
        media_playlist(spans, uri=seg_uri, target_ms=2000).render().count("#EXT-X-TARGETDURATION:3")
        == 1
    )


def test_vod_playlist_and_discontinuity() -> None:
    spans = [SegmentSpan(i, i * 2000, i * 2000 + 2000) for i in range(5)]
    pl = media_playlist(
        spans,
        uri=lambda s: f"{s.name}.ts",
        target_ms=2000,
        ended=True,
        discontinuities={3},
        utc_offset_ms=0,
    )
    back = parse_media_playlist(pl.render())
    assert back.endlist and [s.discontinuity for s in back.segments] == [
        False,
        False,
        False,
        True,
        False,
    ]
    assert back.segments[3].program_date_time == datetime.fromtimestamp(6, UTC)
    assert back.segments[0].uri == "0_2000.ts"


def test_with_query_reaches_every_uri() -> None:
    """Every URI of a rendered LL-HLS playlist and of a master playlist gets the query
    (``&`` after an existing one); tags without a URI and the playlist's rules stay."""
    spans = [SegmentSpan(n, n * 2000, n * 2000 + 2000) for n in range(4)]
    parts = assign_parts(spans, cut_parts(list(range(0, 8600, FRAME)), list(range(0, 9000, GOP)),
                                          500, known_ms=8600, gop_ms=GOP))  # fmt: skip
    pl = media_playlist(spans, uri=seg_uri, target_ms=2000, init_uri="init.m4s?x=1",
                        parts=parts, part_uri=part_uri, part_target_ms=500)  # fmt: skip
    text = with_query(pl.render(), "tkn=a%2Fb")
    back = parse_media_playlist(text)
    uris = [s.uri for s in back.segments] + [p.uri for s in back.segments for p in s.parts]
    uris += [p.uri for p in back.open_parts] + [h.uri for h in back.preload_hints]
    assert back.open_parts and back.preload_hints and back.segments[0].init is not None
    assert all(u.endswith(".m4s?tkn=a%2Fb") for u in uris)
    assert back.segments[0].init.uri == "init.m4s?x=1&tkn=a%2Fb"
    assert check_media_playlist(back) == [] and with_query(text, "") == text
    master = '#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="x",URI="2/i.m3u8"\n'
    master += '#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO="a"\n1/i.m3u8\n'
    parsed = parse_master_playlist(with_query(master, "sid=7"))
    assert [v.uri for v in parsed.variants] == ["1/i.m3u8?sid=7"]
    assert [r.uri for r in parsed.renditions] == ["2/i.m3u8?sid=7"]
