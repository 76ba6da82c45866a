"""Track selectors and query parsing."""

from __future__ import annotations

import pytest

from outputs.formats import format_for_ext
from outputs.selectors import BadQuery, parse_query, select_tracks
from shm.model import TrackMeta

TRACKS = {
    1: TrackMeta(1, "video", "H264", width=1280, height=720, bps=250_000),
    2: TrackMeta(2, "video", "H264", width=640, height=360, bps=80_000),
    3: TrackMeta(3, "audio", "AAC", bps=16_000, lang="eng"),
    4: TrackMeta(4, "audio", "opus", bps=12_000, lang="nld"),
    5: TrackMeta(5, "video", "VP9", width=1920, height=1080, bps=400_000),
    6: TrackMeta(6, "meta", "subtitle"),
}


def ids(sel: dict[str, str], ext: str | None = None) -> list[int]:
    spec = format_for_ext(ext) if ext else None
    return [t.id for t in select_tracks(TRACKS, sel, spec.carries if spec else None)]


def test_default_best_of_each_type_the_format_carries() -> None:
    assert ids({}, "flv") == [5, 3]  # FLV carries VP9 (enhanced); highest bps video
    assert ids({}, "ts") == [1, 3]  # TS: H264 only, AAC
    assert ids({}, "webm") == [5, 4]
    assert ids({}, "mp3") == []


@pytest.mark.parametrize(
    ("sel", "want"),
    [
        ({"video": "none"}, [3]),
        ({"audio": "none", "video": "2"}, [2]),
        ({"video": "all"}, [1, 2, 5, 3]),
        ({"video": "*", "audio": "-1"}, [1, 2, 5]),
        ({"video": "h264"}, [1, 2, 3]),
        ({"video": "minbps"}, [2, 3]),
        ({"video": "maxres"}, [5, 3]),
        ({"video": ">1mbps"}, [1, 5, 3]),
        ({"video": "<1mbps", "audio": "nld"}, [2, 4]),
        ({"video": "!vp9"}, [1, 2, 3]),
        ({"video": "1,2", "audio": "all", "subtitle": "all"}, [1, 2, 3, 4, 6]),
    ],
)
def test_selectors(sel: dict[str, str], want: list[int]) -> None:
    assert ids(sel) == want


def test_bad_selector_term() -> None:
    with pytest.raises(BadQuery):
        ids({"video": "bogus-term"})


def test_parse_query() -> None:
    o = parse_query(
        {"start": "1500", "stop": "4000", "audio": "none", "buffer": "2.5", "tkn": "abc"}
    )
    assert (o.start, o.stop, o.buffer_ms, o.token) == (1500, 4000, 2500, "abc")
    assert o.selectors == {"audio": "none"}
    assert parse_query({"start": "-5000"}).start == -5000  # behind the live edge
    for bad in ({"start": "x"}, {"stop": "-5"}, {"start": "10", "stop": "5"}, {"buffer": "q"}):
        with pytest.raises(BadQuery):
            parse_query(bad)
