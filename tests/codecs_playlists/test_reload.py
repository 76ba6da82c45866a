"""Blocking playlist reload decisions against the rules of rfc8216bis 6.2.5.2."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mistcodecs.hls import (
    BadDirective,
    Directives,
    MediaPlaylist,
    Outcome,
    Part,
    PlaylistState,
    Segment,
    ServerControl,
    block_timeout,
    decide,
    delta_update,
    parse_directives,
    parse_media_playlist,
)

# A live LL playlist: complete segments 100..104, segment 105 open with 2 parts (0, 1).
STATE = PlaylistState(next_msn=105, open_parts=2, part_target=0.5, target_duration=2)
A, W, B = Outcome.ANSWER, Outcome.WAIT, Outcome.BAD_REQUEST


@pytest.mark.parametrize(
    ("query", "outcome", "why"),
    [
        ("", A, "no directive: answer at once"),
        ("_HLS_msn=104", A, "segment 104 is complete"),
        ("_HLS_msn=90", A, "older segments are available"),
        ("_HLS_msn=105", W, "segment 105 is still open: wait for all of it"),
        ("_HLS_msn=105&_HLS_part=1", A, "part 1 of 105 is published"),
        ("_HLS_msn=105&_HLS_part=2", W, "the next part: wait"),
        ("_HLS_msn=104&_HLS_part=9", A, "segment 104 is complete, so any part of it is"),
        ("_HLS_msn=106", W, "last segment + 2: still a legal wait"),
        ("_HLS_msn=106&_HLS_part=0", W, "part 0 of the segment after the open one"),
        ("_HLS_msn=107", B, "more than 2 past the last segment 104"),
        (
            "_HLS_msn=105&_HLS_part=7",
            W,
            "Advance Part Limit with a 0.5 s part target is 6: 1 + 6 = 7 is fine",
        ),
        ("_HLS_msn=105&_HLS_part=8", B, "past the Advance Part Limit"),
    ],
)
def test_decision_table(query: str, outcome: Outcome, why: str) -> None:
    decision = decide(STATE, parse_directives(query))
    assert decision.outcome is outcome, why
    assert decision.status == {A: 200, W: None, B: 400}[outcome]


def test_part_past_the_final_part_means_part_0_of_the_next_segment() -> None:
    # segment 104 is complete with 4 parts (0..3); segment 105 has no part yet
    state = PlaylistState(
        next_msn=105, open_parts=0, part_target=0.5, target_duration=2, last_segment_parts=4
    )
    assert decide(state, Directives(104, 3)).outcome is A
    assert decide(state, Directives(104, 4)).outcome is W  # = part 0 of 105
    assert decide(state, Directives(104, 40)).outcome is W
    assert decide(state, Directives(103, 9)).outcome is A  # 104 is complete, so 103's successor is
    later = PlaylistState(
        next_msn=105, open_parts=1, part_target=0.5, target_duration=2, last_segment_parts=4
    )
    assert decide(later, Directives(104, 4)).outcome is A
    assert decide(state, Directives(106, 5)).outcome is W  # 6 parts ahead at most (limit 6)
    assert decide(state, Directives(106, 6)).outcome is B


def test_skip_is_ignored_when_not_offered_or_ended() -> None:
    offered = PlaylistState(
        next_msn=5, open_parts=0, part_target=None, target_duration=2, can_skip=True
    )
    assert decide(offered, Directives(skip="v2")).skip == "v2"
    ended = PlaylistState(
        next_msn=5, open_parts=0, part_target=None, target_duration=2, can_skip=True, ended=True
    )
    assert decide(ended, Directives(skip="YES")).skip is None
    assert decide(STATE, Directives(skip="YES")).skip is None


def test_part_limit_is_three_for_long_parts() -> None:
    state = PlaylistState(next_msn=5, open_parts=1, part_target=1.0, target_duration=4)
    assert decide(state, Directives(5, 3)).outcome is W
    assert decide(state, Directives(5, 4)).outcome is B


@pytest.mark.parametrize(
    "query",
    [
        "_HLS_part=1",
        "_HLS_msn=-1",
        "_HLS_msn=abc",
        "_HLS_msn=1&_HLS_msn=2",
        "_HLS_skip=NO",
        "_HLS_msn=",
    ],
)
def test_bad_directives_are_400(query: str) -> None:
    with pytest.raises(BadDirective):
        parse_directives(query)


def test_ended_playlist_never_blocks() -> None:
    state = PlaylistState(
        next_msn=10, open_parts=0, part_target=None, target_duration=2, ended=True
    )
    assert decide(state, Directives(50, 3)).outcome is A


def test_timeout_is_three_target_durations() -> None:
    assert block_timeout(2) == 6


def _live(n: int) -> MediaPlaylist:
    return MediaPlaylist(
        segments=[
            Segment(2.0, f"{i}.m4s", parts=[Part(1.0, f"{i}.a"), Part(1.0, f"{i}.b")])
            for i in range(n)
        ],
        media_sequence=0,
        part_target=1.0,
        server_control=ServerControl(
            can_block_reload=True, part_hold_back=3.0, can_skip_until=12.0
        ),
        open_parts=[Part(1.0, f"{n}.a", independent=True)],
    )


def test_state_of_playlist_and_skip() -> None:
    pl = _live(10)
    state = PlaylistState.of(pl)
    assert (state.next_msn, state.open_parts, state.can_skip) == (10, 1, True)
    decision = decide(state, parse_directives("_HLS_msn=10&_HLS_part=0&_HLS_skip=YES"))
    assert decision.outcome is A and decision.skip == "YES"
    delta = delta_update(pl)
    # 20 s of segments, CAN-SKIP-UNTIL 12 s: the first 4 (8 s) are skipped
    assert delta.skipped_segments == 4 and delta.first_msn == 4 and delta.next_msn == 10
    back = parse_media_playlist(delta.render())
    assert back.skipped_segments == 4 and back.segments[0].uri == "4.m4s" and back.version == 9


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 1000),
    st.integers(0, 10),
    st.integers(0, 1100),
    st.one_of(st.none(), st.integers(0, 20)),
)
def test_decisions_are_consistent(next_msn: int, parts: int, msn: int, part: int | None) -> None:
    state = PlaylistState(next_msn=next_msn, open_parts=parts, part_target=0.5, target_duration=2)
    decision = decide(state, Directives(msn, part))
    if msn > next_msn + 1:
        assert decision.outcome is B
    elif msn < next_msn:
        assert decision.outcome is A
    elif decision.outcome is A:
        assert msn == next_msn and part is not None and part < parts
    # once the playlist has moved on, a waiting request is answered
    if decision.outcome is W:
        later = PlaylistState(next_msn=msn + 1, open_parts=0, part_target=0.5, target_duration=2)
        assert decide(later, Directives(msn, part)).outcome is A
