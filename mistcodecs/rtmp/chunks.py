"""The RTMP chunk stream: splitting messages into chunks and joining them back.

Each chunk starts with a basic header (format 0-3 and a chunk stream id of 1-3 bytes)
and a message header whose size depends on the format: 11 bytes (0: full), 7 (1: same
stream), 3 (2: timestamp delta only) or 0 (3: as before). A timestamp field of
0xFFFFFF means a 4-byte extended timestamp follows; continuation chunks of such a
message repeat it (most encoders do; some don't, so the reader checks before eating).

Memory is bounded: a message announces its length before any payload arrives, so the
reader refuses lengths above ``max_message_size`` and keeps the total of partially
received messages under ``max_buffered``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mistcodecs.errors import FormatError

# Message type ids
SET_CHUNK_SIZE = 1
ABORT = 2
ACKNOWLEDGEMENT = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
DATA_AMF3 = 15
SHARED_OBJECT_AMF3 = 16
COMMAND_AMF3 = 17
DATA_AMF0 = 18
SHARED_OBJECT_AMF0 = 19
COMMAND_AMF0 = 20
AGGREGATE = 22
MESSAGE_NAMES = {
    1: "SetChunkSize",
    2: "Abort",
    3: "Ack",
    4: "UserControl",
    5: "WindowAckSize",
    6: "SetPeerBandwidth",
    8: "Audio",
    9: "Video",
    15: "DataAMF3",
    16: "SharedObjectAMF3",
    17: "CommandAMF3",
    18: "DataAMF0",
    19: "SharedObjectAMF0",
    20: "CommandAMF0",
    22: "Aggregate",
}

DEFAULT_CHUNK_SIZE = 128
MAX_CHUNK_SIZE = 0x7FFFFFFF
_EXT = 0xFFFFFF
_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")
_HEAD0 = struct.Struct(">BHBHBB")  # format 0, chunk stream < 64: timestamp, length, type


class ChunkError(FormatError):
    """The chunk stream is malformed or exceeds our limits."""


@dataclass(slots=True)
class RtmpMessage:
    """One reassembled message."""

    csid: int
    type: int
    stream_id: int
    timestamp: int
    payload: bytes

    @property
    def type_name(self) -> str:
        return MESSAGE_NAMES.get(self.type, f"type{self.type}")


@dataclass(slots=True)
class _InState:
    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type: int = 0
    stream_id: int = 0
    extended: bool = False
    ext_value: int = 0
    partial: bytearray | None = None
    started: bool = False


class ChunkReader:
    """``feed(data) -> list[RtmpMessage]``. Protocol control messages that concern the
    chunk layer (set chunk size, abort) are applied here and also returned."""

    def __init__(
        self,
        max_message_size: int = 16 * 1024 * 1024,
        max_buffered: int = 64 * 1024 * 1024,
        max_streams: int = 64,
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.max_message_size = max_message_size
        self.max_buffered = max_buffered
        self.max_streams = max_streams
        self.bytes_received = 0
        self.chunks = 0
        self._buffered = 0
        self._buf = bytearray()
        self._streams: dict[int, _InState] = {}

    def feed(self, data: bytes) -> list[RtmpMessage]:
        self._buf += data
        self.bytes_received += len(data)
        out: list[RtmpMessage] = []
        pos = 0
        buf = self._buf
        while True:
            used = self._chunk(buf, pos, out)
            if used == 0:
                break
            pos += used
        if pos:
            del buf[:pos]
        return out

    def _chunk(self, buf: bytearray, pos: int, out: list[RtmpMessage]) -> int:
        """Parse one chunk at ``pos``; returns bytes used or 0 when incomplete."""
        avail = len(buf) - pos
        if avail < 1:
            return 0
        b0 = buf[pos]
        fmt = b0 >> 6
        csid = b0 & 0x3F
        hlen = 1
        if csid == 0:
            if avail < 2:
                return 0
            csid = 64 + buf[pos + 1]
            hlen = 2
        elif csid == 1:
            if avail < 3:
                return 0
            csid = 64 + buf[pos + 1] + (buf[pos + 2] << 8)
            hlen = 3
        mlen = (11, 7, 3, 0)[fmt]
        if avail < hlen + mlen:
            return 0
        st = self._streams.get(csid)
        if st is None:
            if fmt != 0:
                raise ChunkError(
                    f"RTMP chunk format {fmt} on new chunk stream {csid} (needs format 0)"
                )
            if len(self._streams) >= self.max_streams:
                raise ChunkError(f"RTMP peer uses more than {self.max_streams} chunk streams")
            st = _InState()
        p = pos + hlen
        ts_field = length = mtype = msid = 0
        if fmt <= 2:
            ts_field = int.from_bytes(buf[p : p + 3], "big")
        if fmt <= 1:
            length = int.from_bytes(buf[p + 3 : p + 6], "big")
            mtype = buf[p + 6]
        if fmt == 0:
            msid = _U32LE.unpack_from(buf, p + 7)[0]
        p += mlen
        ext = False
        ext_value = 0
        if fmt <= 2 and ts_field == _EXT:
            if len(buf) - p < 4:
                return 0
            ext_value = _U32.unpack_from(buf, p)[0]
            ext = True
            p += 4
        elif fmt == 3 and st.extended:
            # Continuations repeat the extended timestamp, unless the sender omits it.
            if len(buf) - p < 4:
                return 0
            if _U32.unpack_from(buf, p)[0] == st.ext_value:
                p += 4
        new_message = st.partial is None
        # Check the chunk is complete before touching any state: we re-parse it otherwise.
        total = (length if fmt <= 1 else st.length) if new_message else st.length
        have = 0 if st.partial is None else len(st.partial)
        if new_message:  # refuse oversized messages from the header alone
            if total > self.max_message_size:
                raise ChunkError(
                    f"RTMP message of {total} bytes on chunk stream {csid} exceeds limit {self.max_message_size}"
                )
            if self._buffered + total > self.max_buffered:
                raise ChunkError(
                    f"RTMP peer has more than {self.max_buffered} bytes of partial messages"
                )
        if len(buf) - p < min(self.chunk_size, total - have):
            return 0
        if not new_message and fmt != 3:
            raise ChunkError(
                f"RTMP chunk format {fmt} on chunk stream {csid} in the middle of a message"
            )
        if new_message:
            if fmt <= 1:
                st.length = length
                st.type = mtype
            if fmt == 0:
                st.stream_id = msid
            if fmt <= 2:
                st.extended = ext
                st.ext_value = ext_value
                value = ext_value if ext else ts_field
                if fmt == 0:
                    # As FFmpeg: a later format-3 message adds the format-0 value again.
                    st.timestamp = value
                    st.delta = value
                else:
                    st.delta = value
                    st.timestamp = (st.timestamp + value) & 0xFFFFFFFF
            else:
                if not st.started:
                    raise ChunkError(
                        f"RTMP chunk format 3 on chunk stream {csid} without a previous message"
                    )
                st.timestamp = (st.timestamp + st.delta) & 0xFFFFFFFF
            st.partial = bytearray()
            self._buffered += st.length
        assert st.partial is not None
        take = min(self.chunk_size, st.length - len(st.partial))
        st.partial += buf[p : p + take]
        p += take
        self._streams[csid] = st
        st.started = True
        self.chunks += 1
        if len(st.partial) == st.length:
            payload = bytes(st.partial)
            st.partial = None
            self._buffered -= st.length
            msg = RtmpMessage(csid, st.type, st.stream_id, st.timestamp, payload)
            self._control(msg)
            out.append(msg)
        return p - pos

    def _control(self, msg: RtmpMessage) -> None:
        if msg.stream_id != 0 and msg.type in (SET_CHUNK_SIZE, ABORT):
            return
        if msg.type == SET_CHUNK_SIZE:
            if len(msg.payload) < 4:
                raise ChunkError("RTMP SetChunkSize message shorter than 4 bytes")
            size = _U32.unpack_from(msg.payload)[0] & 0x7FFFFFFF
            if size < 1:
                raise ChunkError("RTMP SetChunkSize of 0")
            self.chunk_size = size
        elif msg.type == ABORT and len(msg.payload) >= 4:
            st = self._streams.get(_U32.unpack_from(msg.payload)[0])
            if st is not None and st.partial is not None:
                self._buffered -= st.length
                st.partial = None


@dataclass(slots=True)
class _OutState:
    timestamp: int
    length: int
    type: int
    stream_id: int
    delta: int


def _basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes(((fmt << 6) | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    return bytes(((fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))


class ChunkWriter:
    """Turns messages into chunks, compressing headers against the previous message
    of the same chunk stream."""

    def __init__(self) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._streams: dict[int, _OutState] = {}

    def set_chunk_size(self, size: int) -> bytes:
        """Returns the SetChunkSize message; the new size applies after it."""
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size {size} out of range")
        data = self.write(2, SET_CHUNK_SIZE, 0, 0, _U32.pack(size))
        self.chunk_size = size
        return data

    def write(
        self, csid: int, mtype: int, stream_id: int, timestamp: int, payload: bytes | memoryview
    ) -> bytes:
        timestamp &= 0xFFFFFFFF
        length = len(payload)
        prev = self._streams.get(csid)
        if prev is None or prev.stream_id != stream_id or timestamp < prev.timestamp:
            fmt = 0
            ts_value = timestamp
        else:
            delta = timestamp - prev.timestamp
            ts_value = delta
            if prev.length != length or prev.type != mtype:
                fmt = 1
            elif prev.delta != delta:
                fmt = 2
            else:
                fmt = 3
        ext = ts_value >= _EXT
        ts24 = _EXT if ext else ts_value
        head = bytearray(_basic_header(fmt, csid))
        if fmt <= 2:
            head += ts24.to_bytes(3, "big")
        if fmt <= 1:
            head += length.to_bytes(3, "big")
            head.append(mtype)
        if fmt == 0:
            head += _U32LE.pack(stream_id)
        ext_bytes = _U32.pack(ts_value) if ext else b""
        head += ext_bytes
        # After format 0 readers disagree on what a format-3 message adds: never rely on it.
        self._streams[csid] = _OutState(
            timestamp, length, mtype, stream_id, ts_value if fmt else -1
        )
        size = self.chunk_size
        if length <= size:
            return b"".join((head, payload))
        parts: list[bytes | memoryview] = [bytes(head), payload[:size]]
        cont = _basic_header(3, csid) + ext_bytes
        view = memoryview(payload)
        for off in range(size, length, size):
            parts.append(cont)
            parts.append(view[off : off + size])
        return b"".join(parts)

    def forget(self, csid: int) -> None:
        """Drop the header state of a chunk stream after a message was written
        elsewhere (see :func:`standalone_chunks`), so the next one starts afresh."""
        self._streams.pop(csid, None)


def standalone_chunks(
    csid: int,
    mtype: int,
    stream_id: int,
    timestamp: int,
    payload: bytes | memoryview,
    chunk_size: int,
    prefix: bytes = b"",
) -> bytes:
    """A message (``prefix + payload``) chunked with a full (format 0) header,
    independent of any earlier state: a live server builds it once and sends the same
    bytes to every viewer that uses this chunk size and message stream id (then calls
    ``ChunkWriter.forget``). Hot path of live RTMP output: no writer object, no copy
    of the body before the final join."""
    if csid >= 64 or len(prefix) >= chunk_size:  # rare layouts: the general writer
        w = ChunkWriter()
        w.chunk_size = chunk_size
        return w.write(csid, mtype, stream_id, timestamp, prefix + bytes(payload))
    timestamp &= 0xFFFFFFFF
    length = len(prefix) + len(payload)
    if timestamp >= _EXT:
        ext, ts24 = _U32.pack(timestamp), _EXT
    else:
        ext, ts24 = b"", timestamp
    head = _HEAD0.pack(csid, ts24 >> 8, ts24 & 0xFF, length >> 8, length & 0xFF, mtype)
    head += _U32LE.pack(stream_id) + ext
    if length <= chunk_size:
        return b"".join((head, prefix, payload))
    cont = bytes((0xC0 | csid,)) + ext
    view = memoryview(payload)
    first = chunk_size - len(prefix)
    parts: list[bytes | memoryview] = [head, prefix, view[:first]]
    for off in range(first, len(view), chunk_size):
        parts.append(cont)
        parts.append(view[off : off + chunk_size])
    return b"".join(parts)
