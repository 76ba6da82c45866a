"""Chunk stream and handshake, in memory."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mistcodecs.errors import FormatError
from mistcodecs.rtmp import chunks as ck
from mistcodecs.rtmp.handshake import (
    SIZE,
    ClientHandshake,
    HandshakeError,
    ServerHandshake,
    check_response,
    find_digest,
)

MESSAGES = [
    (3, ck.COMMAND_AMF0, 0, 0, b"c" * 300),
    (6, ck.VIDEO, 1, 0, os.urandom(5000)),
    (6, ck.VIDEO, 1, 40, os.urandom(5000)),  # same length: format 2
    (6, ck.VIDEO, 1, 80, os.urandom(5000)),  # same delta too: format 3
    (4, ck.AUDIO, 1, 23, os.urandom(10)),
    (6, ck.VIDEO, 1, 0x01000000, os.urandom(700)),  # extended timestamp
    (6, ck.VIDEO, 1, 0x01000028, os.urandom(700)),
    (70, ck.DATA_AMF0, 1, 5, b"d" * 10),  # two-byte chunk stream id
    (400, ck.DATA_AMF0, 1, 6, b"e" * 129),  # three-byte chunk stream id
    (6, ck.VIDEO, 2, 3, b""),  # other message stream, empty payload
]


def write_all(chunk_size: int) -> bytes:
    w = ck.ChunkWriter()
    out = w.set_chunk_size(chunk_size) if chunk_size != ck.DEFAULT_CHUNK_SIZE else b""
    return out + b"".join(w.write(*m) for m in MESSAGES)


def expected() -> list[tuple[int, int, int, int, bytes]]:
    return [(c, t, s, ts, p) for c, t, s, ts, p in MESSAGES]


@pytest.mark.parametrize("chunk_size", [1, 128, 1000, 70000, ck.MAX_CHUNK_SIZE])
def test_round_trip_any_chunk_size(chunk_size: int) -> None:
    data = write_all(chunk_size)
    for step in (len(data), 1, 333):
        r = ck.ChunkReader()
        got = []
        for i in range(0, len(data), step):
            got += r.feed(data[i : i + step])
        got = [m for m in got if m.type != ck.SET_CHUNK_SIZE]
        assert [(m.csid, m.type, m.stream_id, m.timestamp, m.payload) for m in got] == expected()
        assert r.chunk_size == chunk_size


def test_header_compression_formats() -> None:
    w = ck.ChunkWriter()
    w.set_chunk_size(100000)
    first = w.write(6, ck.VIDEO, 1, 0, b"x" * 10)
    second = w.write(6, ck.VIDEO, 1, 40, b"y" * 10)
    third = w.write(6, ck.VIDEO, 1, 80, b"z" * 10)
    fourth = w.write(6, ck.VIDEO, 1, 120, b"w" * 11)
    assert first[0] >> 6 == 0 and len(first) == 12 + 10
    assert second[0] >> 6 == 2 and len(second) == 4 + 10
    assert third[0] >> 6 == 3 and len(third) == 1 + 10
    assert fourth[0] >> 6 == 1 and len(fourth) == 8 + 11


def test_abort_and_limits() -> None:
    w = ck.ChunkWriter()
    data = w.write(5, ck.VIDEO, 1, 0, b"a" * 300)
    r = ck.ChunkReader()
    assert r.feed(data[:140]) == []  # first chunk only
    abort = ck.ChunkWriter().write(2, ck.ABORT, 0, 0, struct.pack(">I", 5))
    assert [m.type for m in r.feed(abort)] == [ck.ABORT]
    again = ck.ChunkWriter().write(5, ck.AUDIO, 1, 7, b"b" * 5)
    assert [(m.type, m.payload) for m in r.feed(again)] == [(ck.AUDIO, b"b" * 5)]
    small = ck.ChunkReader(max_message_size=1000)
    with pytest.raises(ck.ChunkError, match="exceeds limit"):
        small.feed(ck.ChunkWriter().write(5, ck.VIDEO, 1, 0, b"a" * 1001)[:20])
    with pytest.raises(ck.ChunkError, match="needs format 0"):
        ck.ChunkReader().feed(b"\x45" + b"\x00" * 10)
    with pytest.raises(ck.ChunkError, match="SetChunkSize of 0"):
        ck.ChunkReader().feed(
            ck.ChunkWriter().write(2, ck.SET_CHUNK_SIZE, 0, 0, b"\x00\x00\x00\x00")
        )
    many = ck.ChunkReader(max_streams=4)
    with pytest.raises(ck.ChunkError, match="more than 4 chunk streams"):
        for csid in range(3, 10):
            many.feed(ck.ChunkWriter().write(csid, ck.AUDIO, 1, 0, b"x"))


def test_continuations_without_repeated_extended_timestamp() -> None:
    # Some encoders omit the extended timestamp on continuation chunks.
    payload = bytes(range(200))
    head = (
        bytes((6,))
        + b"\xff\xff\xff"
        + len(payload).to_bytes(3, "big")
        + bytes((ck.VIDEO,))
        + struct.pack("<I", 1)
    )
    data = head + struct.pack(">I", 0x2000000) + payload[:128] + bytes((0xC6,)) + payload[128:]
    msgs = ck.ChunkReader().feed(data)
    assert [(m.timestamp, m.payload) for m in msgs] == [(0x2000000, payload)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_chunk_reader(data: bytes) -> None:
    r = ck.ChunkReader(max_message_size=100_000, max_buffered=200_000)
    try:
        r.feed(data)
    except FormatError:
        pass


@pytest.mark.parametrize("plain", [False, True])
def test_handshake_both_roles(plain: bool) -> None:
    client = ClientHandshake(plain=plain)
    server = ServerHandshake()
    c0c1 = bytes(client.output)
    client.output.clear()
    for i in range(0, len(c0c1), 100):  # arrives in pieces
        server.receive(c0c1[i : i + 100])
    s012 = bytes(server.output)
    assert len(s012) == 1 + 2 * SIZE and server.complex is not plain
    client.receive(s012 + b"after")
    assert client.done and client.rest == b"after"
    assert client.server_complex is not plain and client.server_verified is not plain
    server.receive(bytes(client.output) + b"chunks")
    assert server.done and server.rest == b"chunks"
    if plain:
        assert s012[1 + SIZE :] == c0c1[1:]  # S2 echoes C1


def test_digest_helpers_reject_tampering() -> None:
    client = ClientHandshake()
    c1 = bytes(client.output[1:])
    assert find_digest(c1, b"Genuine Adobe Flash Player 001") is not None
    tampered = bytearray(c1)
    tampered[1000] ^= 1
    tampered[100] ^= 1
    assert find_digest(bytes(tampered), b"Genuine Adobe Flash Player 001") is None
    assert not check_response(os.urandom(SIZE), os.urandom(32), b"k")
    with pytest.raises(HandshakeError, match="version byte 9"):
        ServerHandshake().receive(b"\x09" + os.urandom(SIZE))


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=3200))
def test_fuzz_server_handshake(data: bytes) -> None:
    hs = ServerHandshake()
    try:
        hs.receive(data)
    except FormatError:
        pass
