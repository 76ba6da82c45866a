"""Live through /hls/ and /cmaf/: sliding playlists that follow the spec between reloads,
LL-HLS parts and blocking reloads, FFmpeg decoding the live edge, a publisher resume."""

from __future__ import annotations

import re
import time

import pytest

from mistcodecs.dash import expand_timeline, parse_mpd
from mistcodecs.hls import (
    MediaPlaylist,
    check_media_playlist,
    check_update,
    parse_media_playlist,
)
from tests.outputs_http.conftest import Server, Source, start_server, stop_server, unique

from .conftest import FPS, SteadyPublisher, fetch
from .decode import Decoded, decode, decode_ffprobe

LIVE_DECODE_S = 6.0


def playlist(server: Server, path: str) -> MediaPlaylist:
    status, headers, body, _ = fetch(server, path)
    assert status == 200, body
    assert headers["cache-control"] == "public, max-age=1"
    pl = parse_media_playlist(body.decode())
    assert check_media_playlist(pl) == []
    return pl


def assert_continuous(got: Decoded, seconds: float) -> None:
    assert got.errors == []
    assert got.video_seconds >= seconds - 0.5
    assert got.video_gaps(1 / FPS) == []
    assert got.audio_gaps(48000) == []


def test_hls_ts_live_playlist_slides(server: Server, live: SteadyPublisher) -> None:
    path = f"/hls/{live.stream}/1_2/index.m3u8"
    first = playlist(server, path)
    assert not first.endlist and first.segments
    assert first.segments[0].program_date_time is not None
    prev, seen = first, first
    deadline = time.monotonic() + 15
    while seen.media_sequence == 0 or len(seen.segments) < 4:
        assert time.monotonic() < deadline, "the live playlist does not advance"
        time.sleep(0.5)
        seen = playlist(server, path)
        assert check_update(prev, seen) == []
        assert seen.target_duration == first.target_duration
        prev = seen
    # the window keeps >= 4 target durations (MistServer) and drops what is older
    assert sum(s.duration for s in seen.segments) >= 4 * (seen.target_duration or 0) - 2.5
    for seg in seen.segments:
        start, end = (int(x) for x in seg.uri[:-3].split("_"))
        assert abs((end - start) / 1000 - seg.duration) < 0.001


@pytest.mark.parametrize("path", ["/hls/{s}/index.m3u8", "/cmaf/{s}/index.m3u8"])
def test_ffmpeg_plays_live_hls(server: Server, live: SteadyPublisher, path: str) -> None:
    got = decode(server.base + path.format(s=live.stream), seconds=LIVE_DECODE_S)
    assert_continuous(got, LIVE_DECODE_S)


def test_ffmpeg_plays_live_dash(server: Server, live: SteadyPublisher) -> None:
    status, headers, body, _ = fetch(server, f"/cmaf/{live.stream}/index.mpd")
    assert status == 200 and headers["cache-control"] == "public, max-age=1"
    mpd = parse_mpd(body)
    assert mpd.dynamic and mpd.availability_start_time is not None
    assert mpd.minimum_update_period and mpd.time_shift_buffer_depth
    # LL-DASH: the last listed segment is the one in progress, early by all but a part
    assert b'availabilityTimeComplete="false"' in body and mpd.utc_timing
    assert mpd.latency is not None and mpd.latency.target < 3000
    rep = mpd.adaptation_sets[0].representations[0]
    (*done, (open_t, open_d)) = expand_timeline(rep.timeline)
    assert open_t == sum(done[-1]) and mpd.availability_time_offset == pytest.approx(
        open_d / 1000 - 0.334
    )
    got = decode_ffprobe(server.base + f"/cmaf/{live.stream}/index.mpd", seconds=LIVE_DECODE_S)
    assert_continuous(got, LIVE_DECODE_S)


def test_ll_hls_parts_and_blocking_reload(server: Server, live: SteadyPublisher) -> None:
    path = f"/cmaf/{live.stream}/1/index.m3u8"
    pl = playlist(server, path)
    assert pl.part_target is not None and 0.2 <= pl.part_target <= 0.5
    control = pl.server_control
    assert control is not None and control.can_block_reload
    assert control.part_hold_back is not None and control.part_hold_back >= 3 * pl.part_target
    assert pl.preload_hints and pl.preload_hints[0].type == "PART"
    assert [r.uri for r in pl.rendition_reports] == ["../2/index.m3u8"]
    parts = [p for s in pl.segments for p in s.parts] + pl.open_parts
    assert parts and all(p.duration <= pl.part_target + 0.0005 for p in parts)
    # the preload-hinted part does not exist yet: the request waits for it
    hint = pl.preload_hints[0].uri
    status, _, body, took = fetch(server, f"/cmaf/{live.stream}/1/{hint}")
    assert status == 200 and body[4:8] == b"moof"
    # block until the next part is listed
    msn, part = pl.next_msn, len(pl.open_parts)
    status, headers, body, took = fetch(server, f"{path}?_HLS_msn={msn}&_HLS_part={part}")
    assert status == 200 and "max-age" in headers["cache-control"]
    after = parse_media_playlist(body.decode())
    listed = (
        after.open_parts if after.next_msn == msn else after.segments[msn - after.first_msn].parts
    )
    assert len(listed) > part or after.next_msn > msn
    # block for a whole segment
    status, _, body, took = fetch(server, f"{path}?_HLS_msn={after.next_msn}")
    assert status == 200 and took > 0.1
    assert parse_media_playlist(body.decode()).last_msn >= after.next_msn


def test_blocking_reload_bad_requests(server: Server, live: SteadyPublisher) -> None:
    path = f"/cmaf/{live.stream}/1/index.m3u8"
    pl = playlist(server, path)
    for query in (
        f"_HLS_msn={pl.next_msn + 5}",
        "_HLS_part=1",
        "_HLS_msn=abc",
        "_HLS_msn=-1",
        f"_HLS_msn={pl.next_msn}&_HLS_part=40",
        "_HLS_skip=maybe",
    ):
        status, _, _, took = fetch(server, f"{path}?{query}")
        assert status == 400, query
        assert took < 1.0, query  # refused at once, not after blocking


def test_cmaf_segment_is_its_parts(server: Server, live: SteadyPublisher) -> None:
    path = f"/cmaf/{live.stream}/2/index.m3u8"
    pl = playlist(server, path)
    seg = next(s for s in reversed(pl.segments) if s.parts)
    body = fetch(server, f"/cmaf/{live.stream}/2/{seg.uri}")[2]
    parts = [fetch(server, f"/cmaf/{live.stream}/2/{p.uri}")[2] for p in seg.parts]
    assert body[4:8] == b"styp"
    styp = int.from_bytes(body[:4], "big")
    assert body[styp:] == b"".join(parts)
    assert all(p.independent for p in seg.parts)  # audio: every part starts a sample


def test_publisher_resume_is_a_discontinuity(server: Server, fresh_live: SteadyPublisher) -> None:
    live = fresh_live
    live.resume_after(live.last_dts + 1500, pause_s=1.0)
    path = f"/hls/{live.stream}/1_2/index.m3u8"
    deadline = time.monotonic() + 20
    while True:
        pl = playlist(server, path)
        if any(s.discontinuity for s in pl.segments):
            break
        assert time.monotonic() < deadline, "no EXT-X-DISCONTINUITY after the resume"
        time.sleep(0.5)
    marked = next(s for s in pl.segments if s.discontinuity)
    assert marked.program_date_time is not None  # the date is given again after the tag
    for prefix in ("/hls/{s}/index.m3u8", "/cmaf/{s}/index.m3u8"):
        got = decode(server.base + prefix.format(s=live.stream), seconds=4)
        assert got.errors == [] and got.video_seconds >= 3.5
        assert got.video_gaps(1 / FPS) == []  # times follow on across the resume


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/hls/{s}/index.m3u8", "/cmaf/{s}/index.m3u8"])
def test_ffmpeg_plays_live_20s(server: Server, live: SteadyPublisher, path: str) -> None:
    got = decode(server.base + path.format(s=live.stream), seconds=20, timeout=40)
    assert_continuous(got, 20)


@pytest.mark.slow
def test_ffmpeg_plays_live_dash_20s(server: Server, live: SteadyPublisher) -> None:
    got = decode_ffprobe(server.base + f"/cmaf/{live.stream}/index.mpd", seconds=20)
    assert_continuous(got, 20)


def test_two_servers_serve_interchangeable_segments(server: Server, live: SteadyPublisher) -> None:
    """Segments are the bus's fragments and muxing is deterministic, so two MistOutHTTP
    processes (e.g. several behind one port) list the same names under the same
    sequence numbers and serve byte-identical segments and parts."""
    other = start_server()
    try:
        paths = (f"/hls/{live.stream}/1_2/index.m3u8", f"/cmaf/{live.stream}/2/index.m3u8")
        for path in paths:
            a, b = playlist(server, path), playlist(other, path)
            msn_a = {s.uri: a.media_sequence + i for i, s in enumerate(a.segments)}
            msn_b = {s.uri: b.media_sequence + i for i, s in enumerate(b.segments)}
            common = sorted(msn_a.keys() & msn_b.keys())
            assert common and all(msn_a[u] == msn_b[u] for u in common)
            base = path.rsplit("/", 1)[0]
            for uri in common[-2:]:
                assert fetch(server, f"{base}/{uri}")[2] == fetch(other, f"{base}/{uri}")[2]
            parts = [p.uri for s in a.segments for p in s.parts][-3:]
            for uri in parts:
                assert fetch(server, f"{base}/{uri}")[2] == fetch(other, f"{base}/{uri}")[2]
    finally:
        stop_server(other)


def test_segment_in_progress_arrives_chunked(server: Server, live: SteadyPublisher) -> None:
    """The open segment is streamed part by part (chunked transfer) as it is produced,
    and holds exactly the bytes the complete segment is served with afterwards."""
    import http.client

    path = f"/cmaf/{live.stream}/1/index.m3u8"
    pl = playlist(server, path)
    # a blocking reload for the next segment answers just as it completes: the segment
    # opened then has its whole duration still to come
    pl = parse_media_playlist(fetch(server, f"{path}?_HLS_msn={pl.next_msn}")[2].decode())
    open_start = int(pl.preload_hints[0].uri.split("_")[1].split(".")[0])
    conn = http.client.HTTPConnection(server.host, server.port, timeout=20)
    t0 = time.monotonic()
    conn.request("GET", f"/cmaf/{live.stream}/1/chunk_{open_start}.m4s")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
    arrivals = []
    body = b""
    while chunk := resp.read1(65536):
        body += chunk
        arrivals.append(time.monotonic() - t0)
    conn.close()
    assert arrivals[-1] - arrivals[0] > 0.3  # it came in pieces over time, not at once
    status, headers, whole, _ = fetch(server, f"/cmaf/{live.stream}/1/chunk_{open_start}.m4s")
    assert status == 200 and "immutable" in headers["cache-control"]
    assert body == whole


def test_unknown_live_media_is_refused_at_once(server: Server, live: SteadyPublisher) -> None:
    pl = playlist(server, f"/cmaf/{live.stream}/1/index.m3u8")
    last = int(pl.segments[-1].uri[6:-4])
    for path in (
        f"/cmaf/{live.stream}/1/chunk_{last + 1}.m4s",
        f"/cmaf/{live.stream}/1/chunk_{last + 10**12}.m4s",
        f"/cmaf/{live.stream}/1/chunk_{last}.{10**9}.m4s",
        f"/cmaf/{live.stream}/1/chunk_{last + 77}.0.m4s",
        f"/hls/{live.stream}/1_2/{last}_{last + 1}.ts",
        f"/hls/{live.stream}/1_2/{10**15}_{10**15 + 2000}.ts",
    ):
        status, _, _, took = fetch(server, path)
        assert status == 404 and took < 1.0, path


def test_many_blocked_viewers_get_one_shared_answer(server: Server, live_clip: Source) -> None:
    """200 LL-HLS viewers block on the segment in progress; the publisher is stepped by
    the test, so the segment completes only once every request was sent, and nothing
    changes afterwards: all are answered with the one playlist of that moment (rendered
    once per change, shared), then fetch the newest part they were told of (cached)."""
    import asyncio

    import aiohttp

    pub = SteadyPublisher(unique("blocked"), live_clip)
    try:
        pub.publish_until(9000)  # four 2 s segments complete, the fifth in progress
        path = f"/cmaf/{pub.stream}/1/index.m3u8"
        pl = playlist(server, path)
        open_start = round(1000 * sum(s.duration for s in pl.segments)) + int(
            pl.segments[0].uri[6:-4]
        )
        url = f"{server.base}{path}?_HLS_msn={pl.next_msn}"
        sent = 0

        async def on_sent(*_: object) -> None:
            nonlocal sent
            sent += 1

        async def viewers() -> list[tuple[int, str, bytes]]:
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(on_sent)
            connector = aiohttp.TCPConnector(limit=0)  # all 200 at once (default: 100)
            async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:

                async def one() -> tuple[int, str, bytes]:
                    async with session.get(url) as r:
                        text = await r.text()
                    after = parse_media_playlist(text)
                    part = (after.open_parts or after.segments[-1].parts)[-1].uri
                    async with session.get(f"{server.base}/cmaf/{pub.stream}/1/{part}") as r:
                        return r.status, text, await r.read()

                tasks = [asyncio.ensure_future(one()) for _ in range(200)]
                deadline = time.monotonic() + 60
                while sent < 200:
                    assert time.monotonic() < deadline and not any(t.done() for t in tasks)
                    await asyncio.sleep(0.05)
                # the keyframe that ends the segment (1 s GOP, 2 s segments) and a little
                # more of every track: the segment completes, no new part is decided
                await asyncio.to_thread(pub.publish_until, open_start + 2100)
                return await asyncio.gather(*tasks)

        results = asyncio.run(viewers())
    finally:
        pub.close()
    assert all(status == 200 for status, _, _ in results)
    texts = {text for _, text, _ in results}
    assert len(texts) == 1
    answer = parse_media_playlist(texts.pop())
    assert answer.last_msn == pl.next_msn and answer.segments[-1].uri == f"chunk_{open_start}.m4s"
    assert len({body for _, _, body in results}) == 1


def test_live_cache_headers(server: Server, live: SteadyPublisher) -> None:
    pl = playlist(server, f"/hls/{live.stream}/1_2/index.m3u8")  # max-age=1 checked there
    path = f"/hls/{live.stream}/1_2/{pl.segments[-1].uri}"
    status, headers, _body, _ = fetch(server, path)
    # names are media times: kept for twice the DVR window (50 s default), not a year
    assert status == 200 and headers["cache-control"] == "public, max-age=100, immutable"
    assert fetch(server, path, {"If-None-Match": headers["etag"]})[0] == 304
    blocking = f"/cmaf/{live.stream}/1/index.m3u8?_HLS_msn={pl.media_sequence}"
    status, headers, _, _ = fetch(server, blocking)
    assert status == 200 and headers["cache-control"] == f"public, max-age={6 * 3}"


def test_session_token_is_carried_into_every_url(server: Server, live: SteadyPublisher) -> None:
    """``?tkn=`` of a playlist request is appended to every URL it lists (MistServer's
    tknMode 4), so a viewer's segment requests name its session; FFmpeg plays through
    them and the MPD's templates carry it too."""
    tkn = "view%20er%2F1"  # "view er/1", escaped
    master = fetch(server, f"/cmaf/{live.stream}/index.m3u8?tkn={tkn}")[2].decode()
    uris = [line for line in master.splitlines() if line and not line.startswith("#")]
    uris += re.findall(r'URI="([^"]*)"', master)
    assert uris and all(u.endswith(f"?tkn={tkn}") for u in uris), master
    media = fetch(server, f"/cmaf/{live.stream}/1/index.m3u8?tkn={tkn}")[2].decode()
    pl = parse_media_playlist(media)
    uris = [s.uri for s in pl.segments] + [p.uri for s in pl.segments for p in s.parts]
    uris += [p.uri for p in pl.open_parts] + [h.uri for h in pl.preload_hints]
    uris += [r.uri for r in pl.rendition_reports] + [pl.segments[0].init.uri]  # type: ignore[union-attr]
    assert all(u.endswith(f"?tkn={tkn}") for u in uris), media
    status, _, body, _ = fetch(server, f"/cmaf/{live.stream}/1/{pl.segments[-1].uri}")
    assert status == 200 and body[4:8] == b"styp"
    mpd = parse_mpd(fetch(server, f"/cmaf/{live.stream}/index.mpd?tkn={tkn}")[2])
    rep = mpd.adaptation_sets[0].representations[0]
    assert rep.media.endswith(f"?tkn={tkn}") and rep.initialization.endswith(f"?tkn={tkn}")
    ts = fetch(server, f"/hls/{live.stream}/index.m3u8")[2].decode()
    assert "tkn=" not in ts  # no token asked for, none added
    got = decode(server.base + f"/hls/{live.stream}/index.m3u8?tkn={tkn}", seconds=3)
    assert got.errors == [] and got.video_seconds >= 2.5
