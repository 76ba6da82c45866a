"""Master playlists: variants, audio and WebVTT subtitle renditions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import UsageError
from mistcodecs.errors import FormatError
from mistcodecs.hls import (
    MasterPlaylist,
    Rendition,
    Variant,
    is_master_playlist,
    parse_master_playlist,
)


def sample() -> MasterPlaylist:
    return MasterPlaylist(
        variants=[
            Variant(
                "1_2/index.m3u8",
                1_200_000,
                1_000_000,
                "avc1.64001f,mp4a.40.2",
                (1280, 720),
                25.0,
                "aud",
                "subs",
            ),
            Variant(
                "3_2/index.m3u8",
                500_000,
                codecs="avc1.42c01e,mp4a.40.2",
                resolution=(640, 360),
                audio="aud",
            ),
        ],
        renditions=[
            Rendition(
                "AUDIO",
                "aud",
                "English",
                "2/index.m3u8",
                "en",
                default=True,
                autoselect=True,
                channels="2",
            ),
            Rendition(
                "SUBTITLES", "subs", "Nederlands", "../../../s.webvtt?meta=4", "nl", autoselect=True
            ),
        ],
        independent_segments=True,
    )


def test_round_trip() -> None:
    text = sample().render()
    assert "RESOLUTION=1280x720,FRAME-RATE=25.000" in text
    assert (
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="Nederlands",LANGUAGE="nl",DEFAULT=NO'
        in text
    )
    assert is_master_playlist(text)
    back = parse_master_playlist(text)
    expected = sample()
    expected.version = 3
    assert back == expected
    assert back.render() == text


def _default_not_autoselect(r: Rendition) -> Rendition:
    r.default, r.autoselect = True, False
    return r


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: setattr(m.variants[0], "audio", "nope"), "AUDIO group"),
        (lambda m: setattr(m.variants[0], "subtitles", "nope"), "SUBTITLES group"),
        (lambda m: setattr(m.renditions[1], "uri", None), "needs a URI"),
        (lambda m: setattr(m.variants[1], "bandwidth", 0), "BANDWIDTH"),
        (lambda m: setattr(m.renditions[0], "forced", True), "FORCED"),
        (
            lambda m: m.renditions.__setitem__(1, _default_not_autoselect(m.renditions[1])),
            "AUTOSELECT",
        ),
        (
            lambda m: m.renditions.append(Rendition("AUDIO", "aud", "English", "x.m3u8")),
            "same NAME",
        ),
        (
            lambda m: m.renditions.append(
                Rendition("AUDIO", "aud", "Other", "x", default=True, autoselect=True)
            ),
            "DEFAULT",
        ),
        (lambda m: m.variants.clear(), "at least one variant"),
    ],
)
def test_inconsistent_master_refused(mutate: object, message: str) -> None:
    m = sample()
    mutate(m)  # type: ignore[operator]
    with pytest.raises(UsageError, match=message):
        m.render()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            '#EXTM3U\n#EXT-X-STREAM-INF:CODECS="a"\nx.m3u8\n',
            "line 2: EXT-X-STREAM-INF lacks the required BANDWIDTH",
        ),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "line 2: EXT-X-STREAM-INF is not followed"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-VERSION:3\nx\n", "line 2"),
        ("#EXTM3U\nx.m3u8\n", "line 2: URI"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=12\nx\n", "line 2: RESOLUTION"),
        (
            '#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,NAME="a"\n',
            "line 2: EXT-X-MEDIA lacks the required GROUP-ID",
        ),
        ('#EXTM3U\n#EXT-X-MEDIA:TYPE=FOO,GROUP-ID="g",NAME="a"\n', "line 2"),
        ("#EXTM3U\n#EXTINF:1,\n", "media playlist"),
        ("#EXTM3U\n", "no variant"),
    ],
)
def test_master_parse_errors(text: str, where: str) -> None:
    with pytest.raises(FormatError, match=where):
        parse_master_playlist(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_master(text: str) -> None:
    try:
        parse_master_playlist("#EXTM3U\n" + text)
    except FormatError:
        pass
