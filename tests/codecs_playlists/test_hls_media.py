"""Media playlist rendering, parsing and the spec's numeric rules."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import UsageError
from mistcodecs.errors import FormatError
from mistcodecs.hls import (
    ByteRange,
    InitSection,
    MediaPlaylist,
    Part,
    PreloadHint,
    RenditionReport,
    Segment,
    ServerControl,
    check_media_playlist,
    check_update,
    parse_media_playlist,
)


def ll_playlist() -> MediaPlaylist:
    """A live LL-HLS playlist: 3 complete segments of 4 parts and 2 open parts."""
    segs = []
    for n in range(3):
        parts = [Part(0.5, f"chunk_{n * 2000}.{i}.m4s", independent=i == 0) for i in range(4)]
        segs.append(Segment(2.0, f"chunk_{n * 2000}.m4s", parts=parts))
    segs[0].init = InitSection("init.mp4")
    segs[0].program_date_time = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    return MediaPlaylist(
        segments=segs,
        media_sequence=10,
        part_target=0.5,
        server_control=ServerControl(
            can_block_reload=True, part_hold_back=1.5, hold_back=6.0, can_skip_until=12.0
        ),
        open_parts=[Part(0.5, "chunk_6000.0.m4s", independent=True), Part(0.5, "chunk_6000.1.m4s")],
        preload_hints=[PreloadHint("PART", "chunk_6000.2.m4s")],
        rendition_reports=[RenditionReport("../2/index.m3u8", last_msn=12, last_part=1)],
    )


def test_ll_round_trip() -> None:
    pl = ll_playlist()
    text = pl.render()
    assert "#EXT-X-TARGETDURATION:2\n" in text
    assert "#EXT-X-VERSION:6\n" in text  # EXT-X-MAP needs 6
    assert (
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,HOLD-BACK=6.0,PART-HOLD-BACK=1.5"
        in text
    )
    assert '#EXT-X-PART:DURATION=0.5,URI="chunk_0.0.m4s",INDEPENDENT=YES' in text
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="chunk_6000.2.m4s"' in text
    assert "#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:04:05.678Z" in text
    back = parse_media_playlist(text)
    assert back == pl.__class__(**{**pl.__dict__, "version": 6, "target_duration": 2})
    assert back.next_msn == 13 and back.last_msn == 12
    assert check_media_playlist(back) == []
    assert back.render() == text


def test_vod_round_trip_with_byteranges_and_discontinuity() -> None:
    segs = [
        Segment(1.5, "all.ts", byterange=ByteRange(1000, 0)),
        Segment(2.25, "all.ts", byterange=ByteRange(2000)),
        Segment(0.04, "b.ts", discontinuity=True, title="after reconnect"),
    ]
    pl = MediaPlaylist(segments=segs, playlist_type="VOD", endlist=True, independent_segments=True)
    text = pl.render()
    assert (
        "#EXT-X-VERSION:4" in text
        and "#EXTINF:2.250," in text
        and "#EXT-X-TARGETDURATION:3" in text
    )
    back = parse_media_playlist(text)
    assert [s.byterange for s in back.segments] == [ByteRange(1000, 0), ByteRange(2000), None]
    assert back.segments[2].discontinuity and back.segments[2].title == "after reconnect"
    assert back.endlist and back.playlist_type == "VOD" and back.independent_segments


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target_duration": 1}, "target duration"),
        ({"version": 3}, "version"),
        ({"part_target": 0.4}, "part target"),
        ({"server_control": ServerControl(part_hold_back=1.0)}, "PART-HOLD-BACK"),
        ({"server_control": ServerControl(part_hold_back=1.5, hold_back=5.0)}, "HOLD-BACK"),
        (
            {"server_control": ServerControl(part_hold_back=1.5, can_skip_until=6.0)},
            "CAN-SKIP-UNTIL",
        ),
        ({"server_control": None}, "PART-HOLD-BACK"),
        ({"endlist": True}, "ended"),
        ({"playlist_type": "LIVE"}, "VOD nor EVENT"),
        ({"media_sequence": -1}, "negative"),
        (
            {"skipped_segments": 2, "server_control": ServerControl(part_hold_back=1.5)},
            "CAN-SKIP-UNTIL",
        ),
    ],
)
def test_inconsistent_data_is_refused(change: dict[str, object], message: str) -> None:
    pl = ll_playlist()
    for key, value in change.items():
        setattr(pl, key, value)
    with pytest.raises(UsageError, match=message):
        pl.render()


def test_vod_needs_endlist() -> None:
    with pytest.raises(UsageError, match="ENDLIST"):
        MediaPlaylist(segments=[Segment(1.0, "a.ts")], playlist_type="VOD").render()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("#EXTINF:1,\na.ts\n", "line 1"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:abc,\na.ts\n", "line 3: EXTINF duration"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\na.ts\n", "line 3: segment URI"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:x\n", "line 2"),
        ("#EXTM3U\n#EXTINF:1,\na.ts\n", "TARGETDURATION"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1,\n", "without a segment URI"),
        (
            '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:URI="a"\n',
            "line 3: EXT-X-PART lacks the required DURATION",
        ),
        (
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=MAYBE\n",
            "line 3",
        ),
        ('#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="a",URI="b"\n', "twice"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "master"),
        ('#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PRELOAD-HINT:TYPE=X,URI="a"\n', "line 3"),
        (
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:yesterday\n",
            "line 3: bad date-time",
        ),
    ],
)
def test_parse_errors_name_the_line(text: str, where: str) -> None:
    with pytest.raises(FormatError, match=where):
        parse_media_playlist(text)


def test_checker_reports_rule_violations() -> None:
    text = (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.5\n"
        '#EXT-X-SERVER-CONTROL:PART-HOLD-BACK=0.6\n#EXT-X-MAP:URI="i.mp4"\n'
        '#EXT-X-PART:DURATION=0.7,URI="p0"\n#EXTINF:2.6,\na.m4s\n'
    )
    problems = check_media_playlist(parse_media_playlist(text))
    assert any("exceeds target duration 2" in p for p in problems)
    assert any("PART-TARGET" in p and "p0" in p for p in problems)
    assert any("less than twice" in p for p in problems)
    assert any("EXT-X-VERSION 3" in p for p in problems)
    assert any("parts add up" in p for p in problems)


def test_update_rules() -> None:
    old = MediaPlaylist(
        segments=[Segment(2, f"{i}.ts", discontinuity=i == 1) for i in range(4)], media_sequence=5
    )
    good = MediaPlaylist(
        segments=[Segment(2, f"{i}.ts", discontinuity=i == 1) for i in range(2, 6)],
        media_sequence=7,
        discontinuity_sequence=1,
    )
    old.target_duration = good.target_duration = 2
    assert check_update(old, good) == []
    bad = MediaPlaylist(
        segments=[Segment(2, "x.ts"), Segment(2, "y.ts")], media_sequence=4, target_duration=3
    )
    problems = check_update(old, bad)
    assert any("went back" in p for p in problems)
    assert any("lost segments" in p for p in problems)
    assert any("changed between reloads" in p for p in problems)
    assert any("target duration changed" in p for p in problems)
    event = MediaPlaylist(
        segments=old.segments[1:], media_sequence=6, discontinuity_sequence=0, playlist_type="EVENT"
    )
    event.target_duration = 2
    assert any("type EVENT" in p for p in check_update(old, event))
    short = MediaPlaylist(
        segments=[Segment(2, "2.ts"), Segment(2, "3.ts")],
        media_sequence=7,
        discontinuity_sequence=1,
    )
    short.target_duration = 2
    assert any("< 3 target durations" in p for p in check_update(old, short))
    no_disc = MediaPlaylist(segments=good.segments, media_sequence=7, target_duration=2)
    assert any("discontinuity sequence is 0" in p for p in check_update(old, no_disc))


# -- property tests --------------------------------------------------------------------
durations = st.lists(st.integers(min_value=1, max_value=12_000), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(durations, st.integers(min_value=0, max_value=2**40), st.booleans())
def test_render_parse_properties(ms: list[int], seq: int, ended: bool) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    segs = [Segment(d / 1000, f"{i}.ts") for i, d in enumerate(ms)]
    segs[0].program_date_time = start + timedelta(milliseconds=ms[0])
    pl = MediaPlaylist(segments=segs, media_sequence=seq, endlist=ended)
    back = parse_media_playlist(pl.render())
    assert back.target_duration == max(1, math.ceil(max(ms) / 1000))
    assert all(round(s.duration) <= back.target_duration for s in back.segments)
    assert [round(s.duration * 1000) for s in back.segments] == ms
    assert back.first_msn == seq and back.next_msn == seq + len(ms)
    assert check_media_playlist(back) == []
    # a later window of the same stream: sequence numbers only grow; dropping the first
    # segment is fine while 3 target durations remain
    later = MediaPlaylist(segments=[*segs[1:], Segment(1.0, "new.ts")], media_sequence=seq + 1)
    later.target_duration = back.target_duration
    expected = []
    if ended:
        expected = ["playlist changed after EXT-X-ENDLIST"]
    elif later.duration < 3 * back.target_duration - 0.0005:
        expected = [
            f"segments were removed although only {later.duration:.3f} s (< 3 target durations) remain"
        ]
    assert check_update(back, parse_media_playlist(later.render())) == expected


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0.1, max_value=2.0), st.floats(min_value=0.0, max_value=10.0))
def test_part_hold_back_rule(part_target: float, hold_back: float) -> None:
    part_target = round(part_target, 3)
    pl = MediaPlaylist(
        segments=[Segment(1.0, "a.m4s", parts=[Part(part_target, "p.m4s")])],
        part_target=part_target,
        server_control=ServerControl(part_hold_back=round(hold_back, 3)),
        target_duration=max(1, math.ceil(part_target)),
    )
    pl.segments[0].duration = part_target
    if round(hold_back, 3) >= 3 * part_target - 0.0005:
        back = parse_media_playlist(pl.render())
        assert back.server_control is not None and back.server_control.part_hold_back is not None
        assert back.server_control.part_hold_back >= 2 * back.part_target  # type: ignore[operator]
    else:
        with pytest.raises(UsageError, match="PART-HOLD-BACK"):
            pl.render()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_only_format_errors(text: str) -> None:
    try:
        parse_media_playlist("#EXTM3U\n" + text)
    except FormatError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=400))
def test_truncated_and_junk_inputs(cut: int) -> None:
    text = ll_playlist().render()
    for candidate in (text[:cut], text + "junk-line-without-ext\n", text.replace("\n", "\r\n")):
        try:
            pl = parse_media_playlist(candidate)
        except FormatError:
            continue
        assert pl.target_duration == 2
