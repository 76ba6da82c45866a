"""The progressive MP4 layout cache of MistOutHTTP (``outputs.http.vod.LayoutCache``).

A cached layout must give exactly the bytes a fresh build gives (whole file and any
range), and a stream whose index or metadata changed must never get a stale header.
The handler runs in-process on real bus streams; the end-to-end check goes through a
real MistOutHTTP and an independent decoder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from array import array
from pathlib import Path

from mistcodecs.mp4.progressive import Mp4ProgressiveMuxer
from outputs.http import vod
from outputs.http.message import Request
from outputs.selectors import parse_query
from shm import StreamReader, StreamWriter
from shm.model import StreamState, TrackMeta

from .conftest import Server, Source, publish_vod, unique
from .media import decode, ffprobe


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


async def _get(
    stream: str, cache: vod.LayoutCache, query: dict[str, str] | None = None, rng: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """One ``/<stream>.mp4`` request through the real handler; (status, headers, body)."""
    reader = StreamReader(stream)
    opts = parse_query(query or {})
    tracks = list(reader.meta.tracks.values())
    req = Request("GET", f"/{stream}.mp4", "HTTP/1.1", {"range": rng} if rng else {})
    resp = await vod.progressive_mp4(req, reader, tracks, opts, {}, StreamReader, stream, cache)
    if resp.stream is None:
        return resp.status, resp.headers, resp.body
    sink = _Sink()
    await resp.stream(sink)
    return resp.status, resp.headers, bytes(sink.data)


async def test_cached_layout_gives_identical_bytes(vod_stream: str) -> None:
    cache = vod.LayoutCache()
    status, _, fresh = await _get(vod_stream, vod.LayoutCache())
    assert status == 200 and fresh[4:8] == b"ftyp"
    status, _, first = await _get(vod_stream, cache)
    assert (status, cache.misses, cache.hits) == (200, 1, 0)
    status, _, again = await _get(vod_stream, cache)
    assert (status, cache.misses, cache.hits) == (200, 1, 1)
    assert first == fresh and again == fresh
    rnd = random.Random(7)
    for _ in range(12):
        lo = rnd.randrange(len(fresh))
        hi = rnd.randrange(lo, min(len(fresh), lo + 300_000))
        status, headers, part = await _get(vod_stream, cache, rng=f"bytes={lo}-{hi}")
        assert status == 206
        assert part == fresh[lo : hi + 1], (lo, hi)
        assert headers["Content-Range"] == f"bytes {lo}-{hi}/{len(fresh)}"
    assert cache.misses == 1 and cache.hits == 13


async def test_windows_are_separate_entries(vod_stream: str) -> None:
    cache = vod.LayoutCache()
    for query in ({}, {"start": "2500"}, {"start": "1000", "stop": "4000"}):
        _, _, fresh = await _get(vod_stream, vod.LayoutCache(), query)
        _, _, cached = await _get(vod_stream, cache, query)
        _, _, again = await _get(vod_stream, cache, query)
        assert cached == fresh == again, query
    assert (cache.misses, cache.hits, len(cache)) == (3, 3, 3)


async def test_changed_index_invalidates(source: Source, tmp_path: Path) -> None:
    name = unique("vodc")
    cache = vod.LayoutCache()
    writer = publish_vod(name, source)
    try:
        _, _, whole = await _get(name, cache)
    finally:
        writer.close()
    # The same stream name comes back with the last two seconds cut off.
    cut = max(f.dts for f in source.frames) - 2000
    shorter = dataclasses.replace(source, frames=[f for f in source.frames if f.dts < cut])
    writer = publish_vod(name, shorter)
    try:
        _, _, got = await _get(name, cache)
        _, _, fresh = await _get(name, vod.LayoutCache())
    finally:
        writer.close()
    assert cache.misses == 2 and cache.hits == 0
    assert got == fresh and len(got) < len(whole)
    out = tmp_path / "short.mp4"
    out.write_bytes(got)
    assert decode(out).video_frames == len(shorter.of(shorter.video.id))


async def test_changed_metadata_invalidates(source: Source) -> None:
    name = unique("vodm")
    cache = vod.LayoutCache()
    writer = publish_vod(name, source)
    try:
        _, _, before = await _get(name, cache)
    finally:
        writer.close()
    # Same samples, different metadata (the language lands in the mdhd box).
    tracks = [dataclasses.replace(t, lang="swe") if t.type == "audio" else t for t in source.tracks]
    writer = publish_vod(name, dataclasses.replace(source, tracks=tracks))
    try:
        _, _, after = await _get(name, cache)
        _, _, fresh = await _get(name, vod.LayoutCache())
    finally:
        writer.close()
    assert cache.misses == 2 and after == fresh
    assert len(after) == len(before) and after != before


def _layout(samples: int) -> vod.Layout:
    """A real layout of one AAC track with ``samples`` 100-byte frames every 20 ms."""
    track = TrackMeta(1, "audio", "AAC", init=bytes.fromhex("1210"), rate=48000, channels=2)
    index = vod.PartIndex(
        range(samples),
        array("q", range(0, 20 * samples, 20)),
        array("i", [0]) * samples,
        array("I", [100]) * samples,
        bytes([1]) * samples,
    )
    return vod.Layout(Mp4ProgressiveMuxer([track], {1: index}), {1: index})


def test_cache_is_bounded() -> None:
    small, big = _layout(50), _layout(5000)
    assert big.cost > 10 * small.cost
    cache = vod.LayoutCache(entries=3, max_bytes=big.cost + small.cost // 2)
    for i in range(5):
        cache.put(("s", i), small)
    assert len(cache) == 3 and cache.get(("s", 0)) is None and cache.get(("s", 4)) is small
    cache.get(("s", 2))  # now the most recently used: survives the next insert
    cache.put(("s", 5), small)
    assert cache.get(("s", 3)) is None and cache.get(("s", 2)) is small
    cache.put(("big", 0), big)  # over the byte budget together with the others
    assert len(cache) == 1 and cache.get(("big", 0)) is big


def test_server_serves_new_content_after_restart(
    server: Server, source: Source, tmp_path: Path
) -> None:
    name = unique("vodr")
    writer = publish_vod(name, source)
    try:
        status, _, whole = server.get(f"/{name}.mp4")
        assert status == 200
        status, _, again = server.get(f"/{name}.mp4")  # the cached layout
        assert again == whole
    finally:
        writer.close()
    cut = max(f.dts for f in source.frames) - 3000
    shorter = dataclasses.replace(source, frames=[f for f in source.frames if f.dts < cut])
    writer = publish_vod(name, shorter)
    try:
        status, _, body = server.get(f"/{name}.mp4")
    finally:
        writer.close()
    assert status == 200 and len(body) < len(whole)
    out = tmp_path / "restarted.mp4"
    out.write_bytes(body)
    video = len(shorter.of(shorter.video.id))
    assert decode(out).video_frames == video
    probe = ffprobe(out)
    counts = {s["codec_type"]: int(s["nb_read_packets"]) for s in probe["streams"]}
    assert counts["video"] == video
    assert counts["audio"] == len(shorter.of(shorter.audio.id))


def _check_columns(reader: StreamReader, track: int) -> tuple[int, int]:
    """PartIndex.from_records matches the typed PartInfo records one by one."""
    page = reader.track_page(track)
    first, raw = vod.part_records(page)
    cols = vod.PartIndex.from_records(first, raw)
    parts = vod.track_parts(reader, track)
    assert list(cols.numbers) == [p.number for p in parts]
    assert list(cols.dts) == [p.dts for p in parts]
    assert list(cols.offset) == [p.offset for p in parts]
    assert list(cols.size) == [p.size for p in parts]
    assert list(cols.keyframe) == [int(p.keyframe) for p in parts]
    return first, page.parts_cap


def test_columns_match_part_records(vod_stream: str, source: Source) -> None:
    with StreamReader(vod_stream) as r:
        for t in source.tracks:
            assert _check_columns(r, t.id)[0] == 0


def test_columns_across_ring_wrap() -> None:
    """A live stream with a short DVR window: its parts ring wraps around."""
    name = unique("wrap")
    w = StreamWriter(name, live=True, dvr_ms=2000)
    try:
        w.add_track(TrackMeta(1, "video", "H264", init=b"\x01\x64\x00\x1f\xff", fpks=25000))
        w.set_state(StreamState.READY)
        for i in range(8192 + 60):  # the newest parts sit at the start of the 4096 ring
            w.append(1, i * 40, (i % 3) * 40, i % 25 == 0, bytes([i % 251]) * (50 + i % 97))
        with StreamReader(name) as r:
            first, cap = _check_columns(r, 1)
            end = r.track_page(1).counters()[1]
            assert first > cap and (first % cap) + (end - first) > cap  # the copy wraps
    finally:
        w.close()


def _publish_hour(name: str, source: Source) -> StreamWriter:
    """A one-hour VoD index (10 fps video, AAC at 48 kHz) on the bus, no data pages:
    laying it out as progressive MP4 reads only the part records."""
    w = StreamWriter(name, live=False)
    for t in source.tracks:
        w.add_track(t)
    video = [(i * 100, 100 * (i % 2), 700, i % 20 == 0) for i in range(36_000)]
    audio = [(i * 1024 * 1000 // 48_000, 0, 90, True) for i in range(168_750)]
    w.set_index(source.video.id, video)
    w.set_index(source.audio.id, audio)
    w.set_state(StreamState.READY)
    return w


async def test_uncached_layout_does_not_block_other_viewers(
    vod_stream: str, source: Source
) -> None:
    """While the first request for a one-hour stream is being laid out, another viewer's
    small request (the first kilobyte of a cached stream) is answered: it finishes first
    although it was made after. Built on the loop, the big layout would finish first."""
    name = unique("vodh")
    cache = vod.LayoutCache()
    writer = _publish_hour(name, source)
    order: list[str] = []
    try:
        await _get(vod_stream, cache, rng="bytes=0-1023")  # its layout is cached

        async def first_viewer() -> None:
            reader = StreamReader(name)
            tracks = list(reader.meta.tracks.values())
            req = Request("GET", f"/{name}.mp4", "HTTP/1.1", {"range": "bytes=0-99"})
            resp = await vod.progressive_mp4(
                req, reader, tracks, parse_query({}), {}, StreamReader, name, cache
            )
            order.append("hour")
            assert resp.status == 206 and resp.headers["Content-Length"] == "100"

        big = asyncio.create_task(first_viewer())
        await asyncio.sleep(0)  # the big request has started laying out
        status, _, head = await _get(vod_stream, cache, rng="bytes=0-1023")
        order.append("small")
        assert status == 206 and head[4:8] == b"ftyp" and len(head) == 1024
        await big
    finally:
        writer.close()
    assert order == ["small", "hour"]
    assert (cache.misses, cache.hits, len(cache)) == (2, 1, 2)  # the hour's layout is kept
