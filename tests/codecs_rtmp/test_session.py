"""RTMP session layer: client and server in memory, and against real FFmpeg."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mistcodecs import amf
from mistcodecs.flv import FlvDemuxer, FlvMuxer
from mistcodecs.rtmp import (
    ChunkError,
    Connect,
    ConnectResult,
    CreateStream,
    DeleteStream,
    Error,
    Event,
    HandshakeComplete,
    MediaMessage,
    MessageTrace,
    Play,
    Publish,
    RtmpClientConnection,
    RtmpServerConnection,
    Status,
    StreamCreated,
    prepare_media,
)
from shm.model import Packet, TrackMeta
from tests.codecs_flv.media import pyav_decode, pyav_flv
from tests.codecs_rtmp.server import RelayServer


def pump(
    client: RtmpClientConnection, server: RtmpServerConnection
) -> tuple[list[Event], list[Event]]:
    got_c: list[Event] = []
    got_s: list[Event] = []
    while True:
        a = client.data_to_send()
        if a:
            got_s += server.receive_data(a)
        b = server.data_to_send()
        if b:
            got_c += client.receive_data(b)
        if not a and not b:
            return got_c, got_s


def of(events: list[Event], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def test_publish_and_play_in_memory(tmp_path: Path) -> None:
    server, client = RtmpServerConnection(), RtmpClientConnection()
    client.connect("live?pass=1", "rtmp://127.0.0.1/live")
    c_ev, s_ev = pump(client, server)
    assert of(c_ev, HandshakeComplete)[0].complex and of(s_ev, HandshakeComplete)[0].complex
    conn = of(s_ev, Connect)[0]
    assert (conn.app, conn.query, conn.tc_url) == ("live", {"pass": "1"}, "rtmp://127.0.0.1/live")
    server.accept_connect(conn)
    c_ev, _ = pump(client, server)
    assert of(c_ev, ConnectResult)[0].ok
    client.create_stream()
    c_ev, s_ev = pump(client, server)
    sid = of(c_ev, StreamCreated)[0].stream_id
    assert of(s_ev, CreateStream)[0].stream_id == sid == 1
    client.publish(sid, "flv:key?token=abc")
    _, s_ev = pump(client, server)
    pub = of(s_ev, Publish)[0]
    assert (pub.name, pub.query, pub.type) == ("flv:key", {"token": "abc"}, "live")
    server.accept_publish(pub)
    c_ev, _ = pump(client, server)
    assert [s.code for s in of(c_ev, Status)] == ["NetStream.Publish.Start"]
    # media from the media model, through FlvMuxer bodies, with a large keyframe
    video = TrackMeta(
        1, "video", "H264", b"\x01\x64\x00\x1f\xff\xe1\x00\x04\x67\x64\x00\x1f\x01\x00\x02\x68\xee"
    )
    audio = TrackMeta(2, "audio", "AAC", b"\x12\x10", rate=44100, channels=2)
    mux = FlvMuxer([video, audio])
    client.send_flv_start(sid, mux)
    sent = [
        Packet(
            1, i * 40, 80 if i % 3 else 0, i % 10 == 0, bytes([i]) * (20000 if i % 10 == 0 else 300)
        )
        for i in range(30)
    ]
    sent += [Packet(2, i * 23, 0, True, bytes([i]) * 200) for i in range(50)]
    sent.sort(key=lambda p: p.dts)
    for p in sent:
        client.send_packet(sid, mux, p)
    _, s_ev = pump(client, server)
    media = of(s_ev, MediaMessage)
    assert media[0].kind == "data" and media[0].payload.startswith(b"\x02\x00\x0aonMetaData")
    demux = FlvDemuxer(expect_header=False)
    got = []
    for m in media[1:]:
        got += (
            demux.decoder.video(m.payload, m.timestamp)
            if m.kind == "video"
            else demux.decoder.audio(m.payload, m.timestamp)
        )
    assert [t.codec for t in got if isinstance(t, TrackMeta)] == ["H264", "AAC"]
    assert [
        (p.track, p.dts, p.offset, p.keyframe, p.data) for p in got if isinstance(p, Packet)
    ] == [(p.track, p.dts, p.offset, p.keyframe, p.data) for p in sent]
    client.delete_stream(sid)
    _, s_ev = pump(client, server)
    assert of(s_ev, DeleteStream)[0].stream_id == sid


def test_refusals_and_errors() -> None:
    server, client = RtmpServerConnection(), RtmpClientConnection(plain_handshake=True)
    client.connect("app", "rtmp://h/app")
    c_ev, s_ev = pump(client, server)
    assert not of(s_ev, HandshakeComplete)[0].complex
    server.refuse_connect(of(s_ev, Connect)[0], "wrong password")
    c_ev, _ = pump(client, server)
    res = of(c_ev, ConnectResult)[0]
    assert not res.ok and res.info["code"] == "NetConnection.Connect.Rejected"

    server, client = RtmpServerConnection(), RtmpClientConnection()
    client.connect("app", "rtmp://h/app")
    _, s_ev = pump(client, server)
    server.accept_connect(of(s_ev, Connect)[0])
    client.create_stream()
    pump(client, server)
    client.play(1, "missing")
    client.publish(1, "busy")
    _, s_ev = pump(client, server)
    server.refuse_play(of(s_ev, Play)[0])
    server.refuse_publish(of(s_ev, Publish)[0])
    c_ev, _ = pump(client, server)
    assert [(s.level, s.code) for s in of(c_ev, Status)] == [
        ("error", "NetStream.Play.StreamNotFound"),
        ("error", "NetStream.Publish.BadName"),
    ]
    # garbage after the handshake: one Error event, then the connection ignores input
    events = server.receive_data(b"\xc9" + b"\xff" * 20)  # format 3 on a new chunk stream
    assert len(of(events, Error)) == 1 and server.closed
    assert server.receive_data(b"more") == []


def test_ping_and_acknowledgements() -> None:
    server, client = RtmpServerConnection(window=5000, trace=True), RtmpClientConnection()
    client.connect("app", "rtmp://h/app")
    _, s_ev = pump(client, server)
    server.accept_connect(of(s_ev, Connect)[0])
    pump(client, server)
    assert client.peer_window == 5000  # from the server's WindowAckSize
    assert server.peer_window == 5000  # the client confirms SetPeerBandwidth with its own
    server.ping(1234)
    _, s_ev = pump(client, server)
    pongs = [e.message.payload for e in of(s_ev, MessageTrace) if e.message.type == 4]
    assert pongs == [b"\x00\x07\x00\x00\x04\xd2"]  # PingResponse echoing 1234
    client.send_media(1, "video", 0, b"\x17\x01\x00\x00\x00" + b"x" * 20000)
    server.send_media(1, "video", 0, b"\x17\x01\x00\x00\x00" + b"x" * 20000)
    pump(client, server)
    assert client.peer_acked >= 20000 and server.peer_acked >= 20000


def test_message_size_cap() -> None:
    server = RtmpServerConnection(max_message_size=1000)
    client = RtmpClientConnection()
    client.connect("app", "rtmp://h/app")
    pump(client, server)
    client.send_media(1, "video", 0, b"v" * 5000)
    _, s_ev = pump(client, server)
    assert "exceeds limit" in of(s_ev, Error)[0].message
    assert issubclass(ChunkError, ValueError)


# -- against FFmpeg --------------------------------------------------------------------


@pytest.fixture
async def relay() -> AsyncIterator[RelayServer]:
    r = RelayServer()
    await r.start()
    yield r
    await r.stop()


async def _wait(proc: asyncio.subprocess.Process, timeout: float) -> int:
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise


async def test_ffmpeg_publishes_and_plays_through_our_server(
    relay: RelayServer, tmp_path: Path
) -> None:
    url = f"rtmp://127.0.0.1:{relay.port}/live/key"
    pub = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
        "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", "4", "-c:v", "libx264", "-g", "25",
        "-c:a", "aac", "-f", "flv", url,
    )  # fmt: skip
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while relay.published.get("key", 0) < 5:
            assert asyncio.get_running_loop().time() < deadline, "publisher did not start"
            await asyncio.sleep(0.05)
        out = tmp_path / "played.flv"
        play = await asyncio.create_subprocess_exec(
            "ffmpeg", "-v", "error", "-y", "-i", url, "-c", "copy", str(out),
        )  # fmt: skip
        assert await _wait(play, 30) == 0
        assert await _wait(pub, 30) == 0
    finally:
        if pub.returncode is None:
            pub.kill()
            await pub.wait()
    assert relay.handshakes == [True, True], "FFmpeg uses the digest handshake for both roles"
    assert relay.errors == []
    decoded = await asyncio.to_thread(pyav_decode, out)
    codec, count, pts = decoded["video"]
    assert codec == "h264" and 40 <= count <= 100
    assert pts == sorted(pts) and pts[-1] - pts[0] >= (count - 1) * 40 - 40
    assert decoded["audio"][0] == "aac" and decoded["audio"][1] > 50


async def test_second_publisher_is_refused(relay: RelayServer) -> None:
    url = f"rtmp://127.0.0.1:{relay.port}/live/busy"
    args = [
        "-v",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=10",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-f",
        "flv",
        url,
    ]
    first = await asyncio.create_subprocess_exec("ffmpeg", *args)
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while relay.published.get("busy", 0) < 2:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        second = await asyncio.create_subprocess_exec(
            "ffmpeg", *args, stderr=asyncio.subprocess.PIPE
        )
        assert await _wait(second, 20) != 0
    finally:
        first.kill()
        await first.wait()


def _connected_pair(**server_options: object) -> tuple[RtmpClientConnection, RtmpServerConnection]:
    server, client = RtmpServerConnection(**server_options), RtmpClientConnection()  # type: ignore[arg-type]
    client.connect("app", "rtmp://h/app")
    _, s_ev = pump(client, server)
    server.accept_connect(of(s_ev, Connect)[0])
    pump(client, server)
    return client, server


def test_prepared_fan_out_bytes_are_valid_for_every_viewer() -> None:
    viewers = [_connected_pair() for _ in range(3)]
    body = b"\x27\x01\x00\x00\x00" + b"p" * 9000
    shared = prepare_media("video", 1, 1000, body, chunk_size=4096)
    for i, (client, server) in enumerate(viewers):
        server.send_media(
            1, "video", 960 + i, b"\x17\x01\x00\x00\x00first"
        )  # per-viewer history differs
        server.send_prepared("video", shared)
        server.send_media(1, "video", 1040, body)  # and compressed headers afterwards still work
        c_ev, _ = pump(client, server)
        got = [(m.timestamp, m.payload) for m in of(c_ev, MediaMessage)]
        assert got == [(960 + i, b"\x17\x01\x00\x00\x00first"), (1000, body), (1040, body)]


def test_amf3_command_messages() -> None:
    client, server = _connected_pair()
    # createStream as an AMF3 command message (type 17): a 0 byte, then AMF0 values
    payload = b"\x00" + amf.encode_all("createStream", 7.0, None)
    client._send(3, 17, 0, 0, payload)
    _, s_ev = pump(client, server)
    assert of(s_ev, CreateStream)[0].stream_id == 1
    # a publish whose name is an AMF3 string behind the AVM+ switch marker
    payload = b"\x00" + amf.encode_all("publish", 0.0, None) + b"\x11\x06\x07abc"
    client._send(3, 17, 1, 0, payload)
    _, s_ev = pump(client, server)
    assert of(s_ev, Publish)[0].name == "abc"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=500))
def test_fuzz_server_after_handshake(data: bytes) -> None:
    _, server = _connected_pair()
    events = server.receive_data(data)
    assert all(not isinstance(e, Error) for e in events) or server.closed


@pytest.mark.skipif(shutil.which("rtmpdump") is None, reason="rtmpdump not installed")
async def test_rtmpdump_plays_from_our_server(relay: RelayServer, tmp_path: Path) -> None:
    """librtmp, as OBS uses it, as a player."""
    url = f"rtmp://127.0.0.1:{relay.port}/live/dump"
    pub = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
        "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", "4", "-c:v", "libx264", "-g", "25",
        "-c:a", "aac", "-f", "flv", url,
    )  # fmt: skip
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while relay.published.get("dump", 0) < 5:
            assert asyncio.get_running_loop().time() < deadline, "publisher did not start"
            await asyncio.sleep(0.05)
        out = tmp_path / "dump.flv"
        dump = await asyncio.create_subprocess_exec(
            "rtmpdump", "-q", "--live", "-r", url, "-o", str(out),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await _wait(dump, 30)
        await _wait(pub, 30)
    finally:
        if pub.returncode is None:
            pub.kill()
            await pub.wait()
    assert relay.errors == []
    # FFmpeg publishes with the digest handshake; librtmp uses the plain one for rtmp://
    assert relay.handshakes == [True, False]
    decoded = await asyncio.to_thread(pyav_decode, out)
    assert decoded["video"][0] == "h264" and decoded["video"][1] >= 40
    assert decoded["audio"][0] == "aac"


amf_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
COMMANDS = ["connect", "createStream", "publish", "play", "deleteStream", "closeStream", "FCPublish",
            "FCUnpublish", "releaseStream", "getStreamLength", "_checkbw", "pause", "seek", "x"]  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(COMMANDS), amf_values, st.lists(amf_values, max_size=4)),
        max_size=5,
    ),
    st.integers(0, 3),
)
def test_fuzz_commands_with_any_arguments(
    commands: list[tuple[str, object, list[object]]], stream_id: int
) -> None:
    client, server = _connected_pair()
    for name, tid, args in commands:
        client._send(3, 20, stream_id, 0, amf.encode_all(name, tid, *args))
        _, events = pump(client, server)
        for ev in events:
            if isinstance(ev, Publish):
                server.accept_publish(ev)
            elif isinstance(ev, Play):
                server.refuse_play(ev)
        c_ev, _ = pump(client, server)
        assert not of(c_ev, Error)


async def test_enhanced_rtmp_hevc_opus_through_our_server(
    relay: RelayServer, tmp_path: Path
) -> None:
    """FFmpeg 8 (PyAV) publishes HEVC + Opus with enhanced RTMP FourCC tags; PyAV and
    MistAnalyserRTMP play it back."""
    src = await asyncio.to_thread(pyav_flv, tmp_path / "src.flv", "libx265", "libopus", 3.0)
    url = f"rtmp://127.0.0.1:{relay.port}/live/hevc"
    tool = [sys.executable, "-m", "tests.codecs_rtmp.pyav_rtmp"]
    root = Path(__file__).parents[2]
    push = await asyncio.create_subprocess_exec(*tool, "push", str(src), url, cwd=root)
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while relay.published.get("hevc", 0) < 3:
            assert asyncio.get_running_loop().time() < deadline, "publisher did not start"
            await asyncio.sleep(0.05)
        copied, rebuilt = tmp_path / "copied.flv", tmp_path / "rebuilt.flv"
        play = await asyncio.create_subprocess_exec(*tool, "copy", url, str(copied), cwd=root)
        analyser = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "analysers.rtmp", url, "-D", "1", "-R", str(rebuilt), "-T", "30",
            cwd=root, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert await _wait(push, 30) == 0
        assert await _wait(play, 30) == 0
        stdout, _ = await asyncio.wait_for(analyser.communicate(), 30)
    finally:
        for proc in (push,):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert relay.errors == []
    report = stdout.decode()
    assert analyser.returncode == 0, report
    assert "HEVC config" in report and "opus config" in report
    for out in (copied, rebuilt):
        decoded = await asyncio.to_thread(pyav_decode, out)
        codec, count, pts = decoded["video"]
        assert codec == "hevc" and 25 <= count <= 75
        assert pts == sorted(pts)
        assert decoded["audio"][0] == "opus" and decoded["audio"][1] > 40
