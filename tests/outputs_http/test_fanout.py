"""The live fan-out engine in-process: real bus, real FLV muxer, viewers as byte recorders.

A viewer here is the network edge only (what the transport would put on the wire);
flow control is driven the way the transport drives it (``pause_writing`` /
``resume_writing`` reach the viewer through ``conn.flow``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import av
import pytest

from mistcodecs.flv import iter_tags
from outputs.fanout import FanoutHub, ViewerState
from outputs.formats import REGISTRY
from shm import StreamReader, StreamWriter
from shm.model import StreamState

from .conftest import Frame, Source, unique
from .media import decode


class Recorder:
    """Collects what the fan-out writes to one viewer."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.flow: Any = None
        self.closed = False
        self.writing_paused = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True


async def _until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def _video_tags(data: bytes | bytearray, pos: int | None = None) -> list[tuple[int, bool]]:
    """(timestamp, keyframe) of the coded video frames in FLV bytes (tags from ``pos``)."""
    out = []
    for tag in iter_tags(bytes(data), pos):
        body = bytes(tag.body)
        if tag.type == 9 and body[1] == 1:
            out.append((tag.timestamp, body[0] >> 4 == 1))
    return out


def _live_writer(name: str, source: Source) -> StreamWriter:
    """A live stream on the bus with the source's tracks, READY for viewers."""
    writer = StreamWriter(name, live=True)
    for t in source.tracks:
        writer.add_track(t)
    writer.set_state(StreamState.READY)
    return writer


async def test_join_skip_and_rejoin_at_keyframe(source: Source) -> None:
    name = unique("fan")
    writer = _live_writer(name, source)
    frames = source.frames
    pos = 0

    def publish_until(ms: int) -> None:
        nonlocal pos
        while pos < len(frames) and frames[pos].dts <= ms:
            f: Frame = frames[pos]
            writer.append(f.track, f.dts, f.offset, f.keyframe, f.data)
            pos += 1

    hub = FanoutHub(StreamReader)
    spec = REGISTRY.formats["flv"]
    try:
        publish_until(1500)  # one GOP and a half on the bus before anyone watches
        a, b = Recorder(), Recorder()
        feed = hub.feed(name, spec, source.tracks)
        va = feed.join(a)
        publish_until(2500)
        await _until(lambda: bool(_video_tags(a.data)) and _video_tags(a.data)[-1][0] >= 2400)
        # A joined at the newest keyframe (1000 ms): header + GOP log, then live.
        tags_a = _video_tags(a.data)
        assert tags_a[0] == (1000, True)
        vb = feed.join(b)
        tags_b = _video_tags(b.data)
        assert tags_b[0] == (2000, True)  # B joins at the newest keyframe, 2000 ms
        assert hub.feed(name, spec, source.tracks) is feed  # one feed per stream+format+tracks
        # A becomes slow: the transport pauses it; media flows on to B only.
        va.on_pause()
        assert va.state is ViewerState.SKIPPING
        cut = len(a.data)
        publish_until(3500)
        await _until(lambda: _video_tags(b.data)[-1][0] >= 3400)
        assert len(a.data) == cut
        # Drained but mid-GOP: A waits for the next keyframe (4000 ms), then continues.
        va.on_resume()
        assert va.state is ViewerState.WAIT_KEY
        publish_until(3900)
        await _until(lambda: _video_tags(b.data)[-1][0] >= 3800)
        assert len(a.data) == cut
        publish_until(4600)
        await _until(lambda: _video_tags(a.data)[-1][0] >= 4500)
        assert va.state is ViewerState.LIVE and va.skipped > 0
        resumed = _video_tags(a.data[cut:], 0)
        assert resumed[0] == (4000, True)
        # From 4000 ms on, A and B got exactly the same bytes.
        tail_a = bytes(a.data[cut:])
        assert bytes(b.data).endswith(tail_a)
        # The last viewer leaving stops the feed.
        feed.leave(va)
        feed.leave(vb)
        assert feed.task is not None
        await asyncio.wait({feed.task}, timeout=5)
        assert feed.task.cancelled()
        assert name not in {k.stream for k in hub.feeds}
    finally:
        await hub.close()
        writer.close()


async def test_stream_end_closes_viewers(source: Source) -> None:
    name = unique("fanend")
    writer = _live_writer(name, source)
    for f in source.frames[:100]:
        writer.append(f.track, f.dts, f.offset, f.keyframe, f.data)
    hub = FanoutHub(StreamReader)
    try:
        viewer = Recorder()
        watch = asyncio.ensure_future(
            hub.watch(viewer, name, REGISTRY.formats["flv"], source.tracks)
        )
        await _until(lambda: len(viewer.data) > 0)
        writer.close()
        await asyncio.wait_for(watch, 5)
        assert viewer.closed
    finally:
        await hub.close()
        writer.close()


async def test_new_init_ends_feed(source: Source) -> None:
    """A publisher restart with new codec data ends the feed (players reconnect)."""
    name = unique("faninit")
    writer = _live_writer(name, source)
    for f in source.frames[:60]:
        writer.append(f.track, f.dts, f.offset, f.keyframe, f.data)
    hub = FanoutHub(StreamReader)
    try:
        viewer = Recorder()
        watch = asyncio.ensure_future(
            hub.watch(viewer, name, REGISTRY.formats["ts"], source.tracks)
        )
        await _until(lambda: len(viewer.data) > 0)
        writer.update_track(1, init=bytes(source.video.init) + b"\x00")
        await asyncio.wait_for(watch, 5)
        assert viewer.closed and not hub.feeds
    finally:
        await hub.close()
        writer.close()


AUDIO_LATE_MS = 300


@pytest.mark.parametrize("fmt", ["flv", "ts", "mp4", "mkv"])
async def test_late_audio_does_not_hold_video_and_outputs_stay_valid(
    source: Source, fmt: str, tmp_path: Path
) -> None:
    """A publisher whose audio arrives 300 ms after the video of the same time: live
    feeds send each video frame without waiting for that audio (strict decode order
    would hold it until the audio came), and every format still decodes completely
    with each track in order."""
    name = unique("fanlate")
    writer = _live_writer(name, source)
    vid, aid = source.video.id, source.audio.id
    arrivals = sorted(source.frames, key=lambda f: f.dts + (AUDIO_LATE_MS if f.track == aid else 0))
    hub = FanoutHub(StreamReader)
    pace, out = Recorder(), Recorder()
    try:
        hub.feed(name, REGISTRY.formats["flv"], source.tracks).join(pace)
        watch = asyncio.ensure_future(hub.watch(out, name, REGISTRY.formats[fmt], source.tracks))
        sent = 0
        for f in arrivals:
            writer.append(f.track, f.dts, f.offset, f.keyframe, f.data)
            if f.track == vid and sent % 5 == 4:  # the FLV feed sends it before its audio
                await _until(lambda f=f: any(t == f.dts for t, _ in _video_tags(pace.data)), 30)
            sent += f.track == vid
        writer.close()
        await asyncio.wait_for(watch, 30)
    finally:
        await hub.close()
        writer.close()
    # the FLV feed sent video ahead of older audio: an audio tag after a later video tag
    newest_video, overtaken = -1, 0
    for tag in iter_tags(bytes(pace.data)):
        body = bytes(tag.body)
        if tag.type == 9 and body[1] == 1:
            newest_video = max(newest_video, tag.timestamp)
        elif tag.type == 8 and body[1] == 1:
            overtaken += tag.timestamp < newest_video
    assert overtaken > 0
    path = tmp_path / f"late.{fmt}"
    path.write_bytes(bytes(out.data))
    got = decode(path)
    assert got.errors == 0
    assert got.video_frames == len(source.of(vid))
    assert got.video_pts == sorted(got.video_pts)
    assert abs(got.audio_frames - len(source.of(aid))) <= 1
    with av.open(str(path)) as c:  # each track's decode times in order in the container
        for stream in (c.streams.video[0], c.streams.audio[0]):
            dts = [p.dts for p in c.demux(stream) if p.dts is not None and p.size]
            assert dts == sorted(dts), stream.type


async def test_held_passes_merge_batches_and_stay_complete(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feed whose write passes are slow (here: forced, every pass holds 200 ms) merges
    what arrives meanwhile into its next pass: far fewer passes than the publisher's
    writes, and every viewer still gets every frame, in order, byte-identical."""
    import outputs.fanout as fanout

    monkeypatch.setattr(fanout, "PASS_SHARE", 1e9)
    monkeypatch.setattr(fanout, "MAX_HOLD_S", 0.2)
    monkeypatch.setattr(fanout, "MIN_HOLD_S", 0.0)
    monkeypatch.setattr(fanout, "MIN_HOLD_VIEWERS", 2)
    name = unique("fanhold")
    writer = _live_writer(name, source)
    frames = source.frames
    hub = FanoutHub(StreamReader)
    a, b = Recorder(), Recorder()
    try:
        writer.append(frames[0].track, frames[0].dts, frames[0].offset, True, frames[0].data)
        feed = hub.feed(name, REGISTRY.formats["flv"], source.tracks)
        watch_a = asyncio.ensure_future(hub.watch(a, name, REGISTRY.formats["flv"], source.tracks))
        watch_b = asyncio.ensure_future(hub.watch(b, name, REGISTRY.formats["flv"], source.tracks))
        await _until(lambda: feed.batches >= 1)
        began = time.monotonic()
        for f in frames[1:]:  # one bus write (one wake-up) per frame, at twice real time
            await asyncio.sleep(max(0.0, began + f.dts / 2000 - time.monotonic()))
            writer.append(f.track, f.dts, f.offset, f.keyframe, f.data)
        writer.close()
        await asyncio.wait_for(asyncio.gather(watch_a, watch_b), 30)
        assert feed.batches < len(frames) // 10
        assert feed.holds >= feed.batches - 2  # every pass but the first/last held
    finally:
        await hub.close()
        writer.close()
    assert a.data == b.data
    path = tmp_path / "held.flv"
    path.write_bytes(bytes(a.data))
    got = decode(path)
    assert got.errors == 0
    assert got.video_frames == len(source.of(source.video.id))
    assert got.video_pts == sorted(got.video_pts)
    assert abs(got.audio_frames - len(source.of(source.audio.id))) <= 1
