"""The whole live chain: ffmpeg pushes RTMP to MistOutRTMP (which starts MistInBuffer),
MistOutHTTP serves HLS/CMAF, FFmpeg's demuxers play it; a publisher that reconnects
continues the stream behind an EXT-X-DISCONTINUITY the player survives."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from mistcodecs.hls import check_media_playlist, parse_media_playlist
from tests.live.conftest import (
    Rtmp,
    ffmpeg_publish,
    start_rtmp,
    stop_proc,
    stop_rtmp,
    unique,
    wait_ready,
)
from tests.outputs_http.conftest import Server

from .conftest import fetch
from .decode import Decoded, decode, decode_ffprobe

RATE = 44100  # ffmpeg_publish's sine


@pytest.fixture(scope="module")
def rtmp() -> Iterator[Rtmp]:
    srv = start_rtmp("--timeout", "3")
    try:
        yield srv
    finally:
        stop_rtmp(srv)
        srv.log.unlink(missing_ok=True)


def check(got: Decoded, seconds: float) -> None:
    assert got.errors == []
    assert got.video_seconds >= seconds - 0.5
    assert got.video_gaps(1 / 25) == []
    assert got.audio_gaps(RATE) == []


def test_rtmp_push_plays_as_hls(server: Server, rtmp: Rtmp) -> None:
    stream = unique("segrtmp")
    pusher = ffmpeg_publish(rtmp.url(stream), 30)
    try:
        wait_ready(stream)
        for path in (f"/hls/{stream}/index.m3u8", f"/cmaf/{stream}/index.m3u8"):
            check(decode(server.base + path, seconds=5), 5)
        pl = parse_media_playlist(fetch(server, f"/cmaf/{stream}/1/index.m3u8")[2].decode())
        assert check_media_playlist(pl) == [] and pl.part_target and pl.segments
    finally:
        stop_proc(pusher)


@pytest.mark.slow
def test_rtmp_push_decodes_20s_through_every_demuxer(server: Server, rtmp: Rtmp) -> None:
    """FFmpeg's HLS demuxer (TS and CMAF playlists) and DASH demuxer each read 20 s of a
    live RTMP push with no decode error and continuous timestamps (all three at once)."""
    stream = unique("seg20")
    pusher = ffmpeg_publish(rtmp.url(stream), 60)
    results: dict[str, Decoded] = {}
    try:
        wait_ready(stream)
        readers = {
            "hls": lambda: decode(server.base + f"/hls/{stream}/index.m3u8", 20, timeout=40),
            "cmaf": lambda: decode(server.base + f"/cmaf/{stream}/index.m3u8", 20, timeout=40),
            "dash": lambda: decode_ffprobe(server.base + f"/cmaf/{stream}/index.mpd", 20, 90),
        }
        threads = [
            threading.Thread(target=lambda k=k, f=f: results.__setitem__(k, f()))
            for k, f in readers.items()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        stop_proc(pusher)
    assert sorted(results) == ["cmaf", "dash", "hls"], "a reader did not finish"
    for got in results.values():
        check(got, 20)


@pytest.mark.slow
def test_reconnecting_publisher_is_a_discontinuity_players_survive(
    server: Server, rtmp: Rtmp
) -> None:
    stream = unique("segrec")
    first = ffmpeg_publish(rtmp.url(stream), 8)
    result: list[Decoded] = []
    try:
        wait_ready(stream)
        time.sleep(3)  # a few segments before the players join
        players = [
            threading.Thread(
                target=lambda p=p: result.append(
                    decode(server.base + f"/{p}/{stream}/index.m3u8", seconds=14, timeout=30)
                )
            )
            for p in ("hls", "cmaf")
        ]
        for player in players:
            player.start()
        assert first.wait(30) == 0
        second = ffmpeg_publish(rtmp.url(stream), 20)
        try:
            for player in players:
                player.join(60)
            pl = parse_media_playlist(fetch(server, f"/hls/{stream}/1_2/index.m3u8")[2].decode())
        finally:
            stop_proc(second)
    finally:
        stop_proc(first)
    assert len(result) == 2, "a player thread did not finish"
    for got in result:
        assert got.errors == [] and got.video_seconds >= 13.5
        pts = sorted(got.video_pts)
        assert all(b > a for a, b in itertools.pairwise(pts))
    assert any(s.discontinuity for s in pl.segments) or pl.discontinuity_sequence > 0
