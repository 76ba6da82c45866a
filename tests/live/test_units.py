"""Sans-IO pieces of the live path: ingest records, push policy, RTMP names, and the
RTMP fan-out muxer (its bytes decode as RTMP messages with the right bodies)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inputs.live_ingest import (
    Accept,
    Bye,
    Hello,
    PushPolicy,
    RecordReader,
    Refuse,
    Track,
    packet_record,
)
from mistcodecs.errors import FormatError
from mistcodecs.flv import FlvMuxer
from mistcodecs.rtmp import Error, RtmpClientConnection, RtmpServerConnection
from mistcodecs.rtmp.chunks import ChunkReader
from outputs.rtmp.live import CHUNK_SIZE, RtmpLiveMuxer
from outputs.rtmp.names import stream_name
from shm.model import Packet, TrackMeta

VIDEO = TrackMeta(1, "video", "H264", init=b"\x01\x64\x00\x1f\xff\xe1\x00\x04abcd\x01\x00\x02ef")
AUDIO = TrackMeta(2, "audio", "AAC", init=b"\x12\x10", rate=44100, channels=2, size=16)


def _records() -> list[object]:
    return [
        Hello("RTMP", "10.1.2.3", "pw"),
        Accept(True),
        Track(VIDEO),
        Packet(1, 1000, 40, True, b"\x00\x00\x00\x02ab"),
        Packet(2, -5, 0, False, b""),
        Refuse("busy"),
        Bye("done"),
    ]


def _encode(rec: object) -> bytes:
    return packet_record(rec) if isinstance(rec, Packet) else bytes(rec)  # type: ignore[call-overload]


def test_records_round_trip_whole_and_byte_by_byte() -> None:
    recs = _records()
    data = b"".join(_encode(r) for r in recs)
    assert RecordReader().feed(data) == recs
    r = RecordReader()
    out: list[object] = []
    for i in range(len(data)):
        out += r.feed(data[i : i + 1])
    assert out == recs and r.pending == 0
    r = RecordReader()
    assert r.feed(data[:-3]) == recs[:-1] and r.pending > 0  # truncated: waits for more


def test_records_refuse_garbage_with_position() -> None:
    good = bytes(Bye())
    with pytest.raises(FormatError, match=f"unknown type 99 at byte {len(good)}"):
        RecordReader().feed(good + b"\x63\x00\x00\x00\x00")
    with pytest.raises(FormatError, match="too big"):
        RecordReader(max_record=10).feed(b"\x05\xff\x00\x00\x00")
    with pytest.raises(FormatError, match="shorter than its header"):
        RecordReader().feed(b"\x05\x02\x00\x00\x00ab")
    with pytest.raises(FormatError, match="TRACK record"):
        RecordReader().feed(b"\x04\x01\x00\x00\x00\xc1")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_record_reader_fuzz(data: bytes) -> None:
    try:
        RecordReader(max_record=1 << 16).feed(data)
    except FormatError:
        pass


def test_push_policy() -> None:
    anyone = PushPolicy.parse("push://")
    assert anyone.check("1.2.3.4", "") == ""
    pw = PushPolicy.parse("push://@secret")
    assert pw.check("1.2.3.4", "secret") == ""
    assert pw.check("1.2.3.4", "live") == "wrong push password"
    hosts = PushPolicy.parse("push://10.0.0.0/8,127.0.0.1@pw")
    assert hosts.hosts == ["10.0.0.0/8", "127.0.0.1"] and hosts.password == "pw"
    assert hosts.check("10.20.30.40", "pw") == ""
    assert hosts.check("::ffff:127.0.0.1", "pw") == ""
    assert "not whitelisted" in hosts.check("192.168.1.1", "pw")
    assert PushPolicy.parse("push://localhost").check("127.0.0.1", "") == ""
    assert "not whitelisted" in PushPolicy.parse("push://invalid,").check("127.0.0.1", "")


@pytest.mark.parametrize(
    ("raw", "name"),
    [("live", "live"), ("flv:Cam1", "cam1"), ("mp4:vod.mp4", "vod"), ("a/b", "a"),
     ("live+Extra One", "live+Extra One"), ("../x", ""), ("..", ""), ("", "")],
)  # fmt: skip
def test_stream_names(raw: str, name: str) -> None:
    assert stream_name(raw) == name


def test_fanout_muxer_bytes_are_valid_rtmp() -> None:
    mux = RtmpLiveMuxer([VIDEO, AUDIO], stream_id=1)
    big = bytes(range(256)) * 40  # spans several chunks
    data = mux.header() + mux.packet(Packet(1, 80, 40, True, big))
    data += mux.packet(Packet(2, 90, 0, True, b"\x21\x22")) + mux.packet(
        Packet(9, 95, 0, True, b"x")
    )
    reader = ChunkReader()
    reader.chunk_size = CHUNK_SIZE
    msgs = reader.feed(data)
    assert [(m.type, m.stream_id, m.timestamp) for m in msgs] == [
        (18, 1, 0), (9, 1, 0), (8, 1, 0), (9, 1, 80), (8, 1, 90),
    ]  # fmt: skip
    flv = FlvMuxer([VIDEO, AUDIO])
    assert msgs[3].payload == flv.body(Packet(1, 80, 40, True, big))[1]  # type: ignore[index]
    assert msgs[1].payload.endswith(VIDEO.init)


def test_server_connection_fuzz_after_handshake() -> None:
    """Random bytes after a real handshake give an Error event, never an exception."""
    import random

    rnd = random.Random(5)
    for _ in range(200):
        server, client = RtmpServerConnection(), RtmpClientConnection(plain_handshake=True)
        client.connect("live", "rtmp://x/live")
        for _ in range(3):
            server.receive_data(client.data_to_send())
            client.receive_data(server.data_to_send())
        events = server.receive_data(rnd.randbytes(rnd.randint(1, 3000)))
        errors = [e for e in events if isinstance(e, Error)]
        assert bool(errors) == server.closed  # a bad stream ends the connection, nothing else
        assert server.receive_data(b"more") == [] or not server.closed


@settings(max_examples=200, deadline=None)
@given(
    csid=st.sampled_from([3, 4, 6, 63, 64, 319, 320, 65599]),
    timestamp=st.sampled_from([0, 1, 0xFFFFFE, 0xFFFFFF, 0x1000000, 0xFFFFFFFF, 0x100000005]),
    chunk_size=st.sampled_from([1, 2, 128, 4096]),
    prefix=st.binary(max_size=6),
    payload=st.binary(max_size=600),
)
def test_standalone_chunks_match_the_general_writer(
    csid: int, timestamp: int, chunk_size: int, prefix: bytes, payload: bytes
) -> None:
    """The live fast path frames a message exactly as a fresh ChunkWriter does, and a
    ChunkReader gets the message back."""
    from mistcodecs.rtmp.chunks import ChunkWriter, standalone_chunks

    w = ChunkWriter()
    w.chunk_size = chunk_size
    expected = w.write(csid, 9, 1, timestamp, prefix + payload)
    got = standalone_chunks(csid, 9, 1, timestamp, memoryview(payload), chunk_size, prefix)
    assert got == expected
    reader = ChunkReader()
    reader.chunk_size = chunk_size
    (msg,) = reader.feed(got)
    assert (msg.csid, msg.type, msg.timestamp, msg.payload) == (
        csid, 9, timestamp & 0xFFFFFFFF, prefix + payload,
    )  # fmt: skip
