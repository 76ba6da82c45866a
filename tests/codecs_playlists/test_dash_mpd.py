"""MPD rendering and parsing: static and dynamic, timelines, LL-DASH attributes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import UsageError
from mistcodecs.dash import (
    NS,
    UTC_HTTP_ISO,
    AdaptationSet,
    Latency,
    Mpd,
    Representation,
    TimelineEntry,
    build_timeline,
    expand_timeline,
    fill_template,
    iso_duration,
    parse_duration,
    parse_mpd,
    segment_list,
)
from mistcodecs.errors import FormatError

AST = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def live_mpd() -> Mpd:
    video = Representation(
        "1",
        "avc1.64001f",
        1_000_000,
        build_timeline([(0, 2000), (2000, 4000), (4000, 5500)]),
        1280,
        720,
        "25",
    )
    audio = Representation(
        "2",
        "mp4a.40.2",
        128_000,
        build_timeline([(0, 2005), (2005, 4011)]),
        audio_sampling_rate=48000,
        channels=2,
    )
    return Mpd(
        adaptation_sets=[
            AdaptationSet("video", "video/mp4", [video]),
            AdaptationSet("audio", "audio/mp4", [audio], lang="en"),
        ],
        dynamic=True,
        availability_start_time=AST,
        publish_time=datetime(2026, 11, 25, 12, 0, 5, 500000, tzinfo=UTC),
        minimum_update_period=2.0,
        time_shift_buffer_depth=50.0,
        suggested_presentation_delay=6.0,
        utc_timing=[(UTC_HTTP_ISO, "http://localhost/time")],
        availability_time_offset=1.5,
        latency=Latency(3000, 2000, 6000),
    )


def test_dynamic_round_trip() -> None:
    mpd = live_mpd()
    text = mpd.render()
    root = ET.fromstring(text)
    assert (
        root.get("type") == "dynamic"
        and root.get("availabilityStartTime") == "2026-11-25T12:00:00.000Z"
    )
    assert (
        root.get("timeShiftBufferDepth") == "PT50S"
        and root.get("suggestedPresentationDelay") == "PT6S"
    )
    tpl = root.find(f".//{{{NS}}}SegmentTemplate")
    assert (
        tpl is not None
        and tpl.get("availabilityTimeComplete") == "false"
        and tpl.get("timescale") == "1000"
    )
    back = parse_mpd(text)
    assert back == mpd
    video = back.adaptation_sets[0].representations[0]
    assert video.timeline == [TimelineEntry(0, 2000, 1), TimelineEntry(4000, 1500)]
    assert [url for _, _, url in segment_list(video)] == [
        "1/chunk_0.m4s",
        "1/chunk_2000.m4s",
        "1/chunk_4000.m4s",
    ]
    assert fill_template(video.initialization, video) == "1/init.m4s"


def test_static_needs_duration_and_no_ll() -> None:
    mpd = live_mpd()
    mpd.dynamic = False
    with pytest.raises(UsageError, match="mediaPresentationDuration"):
        mpd.render()
    mpd.media_presentation_duration = 5.5
    with pytest.raises(UsageError, match="low-latency"):
        mpd.render()
    mpd.availability_time_offset = mpd.latency = None
    assert parse_mpd(mpd.render()).media_presentation_duration == 5.5


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: setattr(m, "publish_time", None), "publishTime"),
        (lambda m: setattr(m.adaptation_sets[1].representations[0], "id", "1"), "repeated"),
        (
            lambda m: setattr(m.adaptation_sets[1].representations[0], "audio_sampling_rate", None),
            "audioSamplingRate",
        ),
        (
            lambda m: setattr(
                m.adaptation_sets[0].representations[0],
                "timeline",
                [TimelineEntry(0, 2000, 1), TimelineEntry(3000, 10)],
            ),
            "overlaps",
        ),
        (lambda m: setattr(m.adaptation_sets[0].representations[0], "bandwidth", 0), "bandwidth"),
        (lambda m: setattr(m.adaptation_sets[0], "content_type", "image"), "content type"),
    ],
)
def test_inconsistent_mpd_refused(mutate: object, message: str) -> None:
    mpd = live_mpd()
    mutate(mpd)  # type: ignore[operator]
    with pytest.raises(UsageError, match=message):
        mpd.render()


def test_overlapping_segments_refused() -> None:
    with pytest.raises(UsageError, match="overlaps"):
        build_timeline([(0, 2000), (1500, 3000)])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<MPD", "well-formed"),
        ("<foo/>", "not MPD"),
        (f'<MPD xmlns="{NS}" type="odd"/>', "type"),
        (f'<MPD xmlns="{NS}"/>', "no Period"),
        (f'<MPD xmlns="{NS}" mediaPresentationDuration="5 s"><Period/></MPD>', "xs:duration"),
        (
            f'<MPD xmlns="{NS}"><Period><AdaptationSet><Representation id="1" bandwidth="1"/></AdaptationSet></Period></MPD>',
            "SegmentTemplate",
        ),
        (
            f'<MPD xmlns="{NS}"><Period><AdaptationSet><Representation id="1"/></AdaptationSet></Period></MPD>',
            "bandwidth",
        ),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_mpd(text)


def test_number_template_with_width() -> None:
    rep = Representation(
        "v0",
        "avc1",
        1,
        media="chunk-$RepresentationID$-$Number%05d$.m4s",
        duration=2000,
        start_number=1,
    )
    assert [u for _, _, u in segment_list(rep, 5.0)] == [
        "chunk-v0-00001.m4s",
        "chunk-v0-00002.m4s",
        "chunk-v0-00003.m4s",
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.integers(1, 5000)), min_size=1, max_size=40))
def test_timeline_round_trip(gaps_and_durations: list[tuple[int, int]]) -> None:
    spans = []
    t = 0
    for gap, dur in gaps_and_durations:
        t += gap
        spans.append((t, t + dur))
        t += dur
    assert [(s, s + d) for s, d in expand_timeline(build_timeline(spans))] == spans


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=10**6, allow_nan=False))
def test_duration_round_trip(seconds: float) -> None:
    assert abs(parse_duration(iso_duration(seconds)) - seconds) <= 0.0005 + 1e-9  # ms precision


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_parser(text: str) -> None:
    try:
        parse_mpd(f'<MPD xmlns="{NS}">{text}</MPD>')
    except FormatError:
        pass


def test_mpd_for_tracks_live_low_latency() -> None:
    from mistcodecs.dash import UTC_DIRECT, frame_rate_text, mpd_for_tracks
    from shm.model import TrackMeta

    avcc = bytes([1, 0x64, 0x00, 0x1F, 0xFF, 0xE0, 0x00])
    asc = bytes([0x11, 0x90])  # AAC-LC, 48 kHz, stereo
    video = TrackMeta(
        1, "video", "H264", init=avcc, width=1280, height=720, fpks=29970, bps=100_000
    )
    audio = TrackMeta(2, "audio", "AAC", init=asc, rate=48000, channels=2, bps=16_000, lang="nl")
    now = datetime(2026, 11, 25, 12, 1, 0, tzinfo=UTC)
    mpd = mpd_for_tracks(
        [(video, [(0, 2000), (2000, 4000)]), (audio, [(0, 2005)])],
        live=True,
        availability_start=AST,
        now=now,
        dvr_s=50.0,
        low_latency_chunk_s=0.5,
    )
    back = parse_mpd(mpd.render())
    assert back.dynamic and back.publish_time == now and back.time_shift_buffer_depth == 50.0
    assert back.utc_timing == [(UTC_DIRECT, "2026-11-25T12:01:00.000Z")]
    assert back.availability_time_offset == 1.5 and back.latency is not None
    assert back.latency.target < 3000
    v, a = (s.representations[0] for s in back.adaptation_sets)
    assert (v.codecs, v.frame_rate, v.bandwidth) == ("avc1.64001f", "30000/1001", 800_000)
    assert (a.codecs, a.audio_sampling_rate, a.channels) == ("mp4a.40.2", 48000, 2)
    assert back.adaptation_sets[1].lang == "nl"
    assert [u for _, _, u in segment_list(v)] == ["1/chunk_0.m4s", "1/chunk_2000.m4s"]
    assert frame_rate_text(25000) == "25" and frame_rate_text(0) is None


@st.composite
def mpds(draw: st.DrawFn) -> Mpd:
    reps = []
    for i in range(draw(st.integers(1, 3))):
        durations = draw(st.lists(st.integers(1, 4000), min_size=1, max_size=12))
        spans, t = [], draw(st.integers(0, 10**9))
        for d in durations:
            spans.append((t, t + d))
            t += d + draw(st.sampled_from([0, 0, 0, 7]))
        reps.append(
            Representation(
                f"r{i}", "avc1.64001f", draw(st.integers(1, 10**8)), build_timeline(spans)
            )
        )
    dynamic = draw(st.booleans())
    mpd = Mpd(adaptation_sets=[AdaptationSet("video", "video/mp4", reps)], dynamic=dynamic)
    if dynamic:
        mpd.availability_start_time = AST
        mpd.publish_time = AST
        mpd.minimum_update_period = draw(st.sampled_from([1.0, 2.5]))
        mpd.time_shift_buffer_depth = draw(st.sampled_from([None, 30.0]))
    else:
        mpd.media_presentation_duration = draw(st.integers(1, 10**6)) / 1000
    return mpd


@settings(max_examples=100, deadline=None)
@given(mpds())
def test_mpd_render_parse_round_trip(mpd: Mpd) -> None:
    back = parse_mpd(mpd.render())
    assert back == mpd
    for rep in back.adaptation_sets[0].representations:
        starts = [t for t, _, _ in segment_list(rep)]
        assert starts == sorted(set(starts))
