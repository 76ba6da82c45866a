"""RTMP session layer, h11-style: ``receive_data(bytes) -> list[Event]`` and
``data_to_send() -> bytes``; no sockets, no clocks.

The server answers the housekeeping commands itself (``createStream``,
``releaseStream``, ``FCPublish``, ``_checkbw``, ``getStreamLength``, pings and
acknowledgements) and hands the decisions to the caller as events: ``Connect``,
``Publish`` and ``Play`` wait for ``accept_*``/``refuse_*``. The client queues its
commands until the handshake completes.

Outgoing layout: chunk stream 2 for protocol control, 3 for commands, 4 for audio,
6 for video, 5 for data messages (as FFmpeg and Flash do).
"""

from __future__ import annotations

from typing import Any

from mistcodecs import amf
from mistcodecs.errors import FormatError
from mistcodecs.flv import TAG_AUDIO, TAG_VIDEO, FlvMuxer
from mistcodecs.rtmp import chunks as ck
from mistcodecs.rtmp import messages as m
from mistcodecs.rtmp.events import (
    CloseStream,
    Command,
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
    Status,
    StreamCreated,
    StreamEvent,
)
from mistcodecs.rtmp.handshake import ClientHandshake, ServerHandshake
from shm.model import Packet

CS_CONTROL, CS_COMMAND, CS_AUDIO, CS_DATA, CS_VIDEO = 2, 3, 4, 5, 6
KIND_OF_TYPE = {ck.AUDIO: "audio", ck.VIDEO: "video", ck.DATA_AMF0: "data", ck.DATA_AMF3: "data"}
TYPE_OF_KIND = {"audio": ck.AUDIO, "video": ck.VIDEO, "data": ck.DATA_AMF0}


def _as_int(value: Any, default: int) -> int:
    """An AMF number as a stream id; NaN, infinities and non-numbers give ``default``."""
    if isinstance(value, float) and value == value and abs(value) < 2**32:
        return int(value)
    return default


def prepare_media(
    kind: str,
    stream_id: int,
    timestamp: int,
    body: bytes | memoryview,
    chunk_size: int,
    prefix: bytes = b"",
) -> bytes:
    """Chunk an audio/video/data message (``prefix + body``) once for every viewer with
    this chunk size and stream id; send it with :meth:`RtmpConnection.send_prepared`."""
    csid = CS_VIDEO if kind == "video" else CS_AUDIO if kind == "audio" else CS_DATA
    return ck.standalone_chunks(
        csid, TYPE_OF_KIND[kind], stream_id, timestamp, body, chunk_size, prefix
    )


class RtmpConnection:
    """What both roles share: chunk layer, control messages, acknowledgements."""

    def __init__(
        self,
        trace: bool = False,
        chunk_size: int = 4096,
        window: int = 2_500_000,
        max_message_size: int = 16 * 1024 * 1024,
    ) -> None:
        self.reader = ck.ChunkReader(max_message_size=max_message_size)
        self.writer = ck.ChunkWriter()
        self.trace = trace
        self.closed = False
        self.window = window  # what we ask the peer to acknowledge
        self.peer_window = 0  # what the peer asks us to acknowledge
        self.peer_acked = 0
        self._out_chunk_size = chunk_size
        self._acked = 0
        self._out: list[bytes] = []
        self._handshake: ServerHandshake | ClientHandshake

    def data_to_send(self) -> bytes:
        hs = self._handshake
        if hs.output:
            self._out.insert(0, bytes(hs.output))
            hs.output.clear()
        data = b"".join(self._out)
        self._out.clear()
        return data

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; a malformed stream gives an ``Error`` event and
        marks the connection closed (further data is ignored)."""
        if self.closed:
            return []
        events: list[Event] = []
        try:
            hs = self._handshake
            if not hs.done:
                hs.receive(data)
                if not hs.done:
                    return events
                events.append(HandshakeComplete(hs.complex))
                self._after_handshake()
                data = hs.rest
                hs.rest = b""
            for msg in self.reader.feed(data):
                if self.trace:
                    events.append(MessageTrace(msg, self.reader.chunks))
                self._message(msg, events)
            self._maybe_ack()
        except FormatError as exc:
            self.closed = True
            events.append(Error(str(exc)))
        return events

    # -- sending --

    def _send(
        self, csid: int, mtype: int, stream_id: int, timestamp: int, payload: bytes | memoryview
    ) -> None:
        self._out.append(self.writer.write(csid, mtype, stream_id, timestamp, payload))

    def send_control(self, mtype: int, payload: bytes) -> None:
        self._send(CS_CONTROL, mtype, 0, 0, payload)

    def send_command(
        self, stream_id: int, name: str, transaction_id: float, obj: Any = None, *args: Any
    ) -> None:
        self._send(
            CS_COMMAND, ck.COMMAND_AMF0, stream_id, 0, m.command(name, transaction_id, obj, *args)
        )

    def send_status(
        self, stream_id: int, level: str, code: str, description: str = "", **extra: Any
    ) -> None:
        self.send_command(
            stream_id, "onStatus", 0, None, m.status_info(level, code, description, **extra)
        )

    def send_media(
        self, stream_id: int, kind: str, timestamp: int, body: bytes | memoryview
    ) -> None:
        """Send an FLV tag body as an audio, video or data message."""
        csid = CS_VIDEO if kind == "video" else CS_AUDIO if kind == "audio" else CS_DATA
        self._send(csid, TYPE_OF_KIND[kind], stream_id, timestamp, body)

    def send_prepared(self, kind: str, data: bytes) -> None:
        """Send a message pre-chunked by :func:`chunks.standalone_chunks` for this
        connection's chunk size (shared fan-out bytes)."""
        csid = CS_VIDEO if kind == "video" else CS_AUDIO if kind == "audio" else CS_DATA
        self.writer.forget(csid)
        self._send_raw(data)

    def _send_raw(self, data: bytes) -> None:
        self._out.append(data)

    def send_flv_start(self, stream_id: int, muxer: FlvMuxer, timestamp: int = 0) -> None:
        """``onMetaData`` and the codec configs, before the first packet."""
        self.send_media(stream_id, "data", timestamp, muxer.metadata_body())
        for tag_type, body in muxer.sequence_bodies():
            self.send_media(
                stream_id, "video" if tag_type == TAG_VIDEO else "audio", timestamp, body
            )

    def send_packet(self, stream_id: int, muxer: FlvMuxer, packet: Packet) -> None:
        made = muxer.body(packet)
        if made is not None:
            tag_type, body = made
            kind = (
                "video" if tag_type == TAG_VIDEO else "audio" if tag_type == TAG_AUDIO else "data"
            )
            self.send_media(stream_id, kind, max(packet.dts, 0), body)

    def set_chunk_size(self, size: int) -> None:
        self._out.append(self.writer.set_chunk_size(size))

    def ping(self, timestamp: int) -> None:
        self.send_control(ck.USER_CONTROL, m.user_control(m.PING_REQUEST, timestamp))

    def stream_eof(self, stream_id: int) -> None:
        self.send_control(ck.USER_CONTROL, m.user_control(m.STREAM_EOF, stream_id))

    # -- receiving --

    def _after_handshake(self) -> None:
        pass

    def _maybe_ack(self) -> None:
        if self.peer_window and self.reader.bytes_received - self._acked >= self.peer_window:
            self._acked = self.reader.bytes_received
            self.send_control(ck.ACKNOWLEDGEMENT, m.u32(self._acked))

    def _message(self, msg: ck.RtmpMessage, events: list[Event]) -> None:
        t = msg.type
        if t in (ck.AUDIO, ck.VIDEO):
            events.append(MediaMessage(msg.stream_id, KIND_OF_TYPE[t], msg.timestamp, msg.payload))
        elif t in (ck.DATA_AMF0, ck.DATA_AMF3):
            payload = (
                msg.payload[1:] if t == ck.DATA_AMF3 and msg.payload[:1] == b"\x00" else msg.payload
            )
            set_frame = amf.encode("@setDataFrame")
            if payload.startswith(set_frame):
                payload = payload[len(set_frame) :]
            events.append(MediaMessage(msg.stream_id, "data", msg.timestamp, payload))
        elif t in (ck.COMMAND_AMF0, ck.COMMAND_AMF3):
            values = m.decode_amf_message(msg)
            if len(values) < 2 or not isinstance(values[0], str):
                raise FormatError(
                    f"RTMP command message without name and transaction id: {values[:2]!r}"
                )
            tid = values[1] if isinstance(values[1], float) else 0.0
            self._command(msg.stream_id, values[0], tid, values[2:], events)
        elif t == ck.WINDOW_ACK_SIZE:
            self.peer_window = m.read_u32(msg.payload, "WindowAckSize")
        elif t == ck.SET_PEER_BANDWIDTH:
            size = m.read_u32(msg.payload, "SetPeerBandwidth")
            if size != self.window:  # peers expect us to confirm with our window
                self.window = size
                self.send_control(ck.WINDOW_ACK_SIZE, m.u32(size))
        elif t == ck.ACKNOWLEDGEMENT:
            self.peer_acked = m.read_u32(msg.payload, "Ack")
        elif t == ck.USER_CONTROL:
            uc = m.UserControl.parse(msg.payload)
            if uc.event == m.PING_REQUEST:
                self.send_control(ck.USER_CONTROL, m.user_control(m.PING_RESPONSE, uc.value))
            elif uc.event in (m.STREAM_BEGIN, m.STREAM_EOF, m.STREAM_DRY, m.STREAM_IS_RECORDED):
                events.append(StreamEvent(uc.name, uc.value))
        elif t == ck.AGGREGATE:
            self._aggregate(msg, events)

    def _aggregate(self, msg: ck.RtmpMessage, events: list[Event]) -> None:
        """Aggregate = FLV tags back to back; timestamps relative to the first."""
        data = msg.payload
        pos = 0
        base: int | None = None
        while len(data) - pos >= 11:
            tag_type = data[pos] & 0x1F
            size = int.from_bytes(data[pos + 1 : pos + 4], "big")
            ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
            if pos + 11 + size > len(data):
                raise FormatError(f"RTMP aggregate message: sub-message truncated at byte {pos}")
            base = ts if base is None else base
            kind = KIND_OF_TYPE.get(tag_type)
            if kind is not None:
                events.append(
                    MediaMessage(
                        msg.stream_id,
                        kind,
                        msg.timestamp + ts - base,
                        data[pos + 11 : pos + 11 + size],
                    )
                )
            pos += 11 + size + 4

    def _command(
        self, stream_id: int, name: str, tid: float, args: list[Any], events: list[Event]
    ) -> None:
        events.append(Command(stream_id, name, tid, args))


class RtmpServerConnection(RtmpConnection):
    """The server role (an RTMP output/ingest point)."""

    def __init__(
        self,
        trace: bool = False,
        chunk_size: int = 4096,
        window: int = 2_500_000,
        max_message_size: int = 16 * 1024 * 1024,
    ) -> None:
        super().__init__(trace, chunk_size, window, max_message_size)
        self._handshake = ServerHandshake()
        self.app = ""
        self.tc_url = ""
        self.object_encoding = 0.0
        self.streams: set[int] = set()
        self._next_stream = 1

    def _command(
        self, stream_id: int, name: str, tid: float, args: list[Any], events: list[Event]
    ) -> None:
        arg = args[1] if len(args) > 1 else None
        if name == "connect":
            params = args[0] if args and isinstance(args[0], dict) else {}
            app, query = m.split_query(str(params.get("app", "")))
            self.app = app
            self.tc_url = str(params.get("tcUrl", ""))
            enc = params.get("objectEncoding", 0.0)
            self.object_encoding = enc if isinstance(enc, float) else 0.0
            events.append(Connect(tid, app, self.tc_url, params, query))
        elif name == "createStream":
            sid = self._next_stream
            self._next_stream += 1
            self.streams.add(sid)
            self.send_command(0, "_result", tid, None, float(sid))
            events.append(CreateStream(sid))
        elif name in ("publish", "play"):
            raw = str(arg) if isinstance(arg, str) else ""
            base, query = m.split_query(raw)
            if name == "publish":
                kind = args[2] if len(args) > 2 and isinstance(args[2], str) else "live"
                events.append(Publish(stream_id, base, kind, query, raw))
            else:
                start = args[2] if len(args) > 2 and isinstance(args[2], float) else -2.0
                events.append(Play(stream_id, base, query, raw, start))
        elif name == "deleteStream":
            sid = _as_int(arg, stream_id)
            self.streams.discard(sid)
            events.append(DeleteStream(sid))
        elif name in ("closeStream", "FCUnpublish"):
            events.append(CloseStream(stream_id, name))
        elif name in ("releaseStream", "FCPublish", "FCSubscribe", "getStreamLength", "_checkbw"):
            if name == "FCPublish":
                self.send_command(
                    0,
                    "onFCPublish",
                    0,
                    None,
                    m.status_info("status", "NetStream.Publish.Start", str(arg)),
                )
            if tid:
                self.send_command(
                    0, "_result", tid, None, None if name != "getStreamLength" else 0.0
                )
        else:
            events.append(Command(stream_id, name, tid, args))

    def accept_connect(self, event: Connect, properties: dict[str, Any] | None = None) -> None:
        self.send_control(ck.WINDOW_ACK_SIZE, m.u32(self.window))
        self.send_control(ck.SET_PEER_BANDWIDTH, m.peer_bandwidth(self.window))
        self.set_chunk_size(self._out_chunk_size)
        props = {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31.0, "mode": 1.0}
        props.update(properties or {})
        info = m.status_info(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
            objectEncoding=self.object_encoding,
        )
        # Enhanced RTMP: echo the codecs we understand.
        if "fourCcList" in event.params:
            info["fourCcList"] = ["avc1", "hvc1", "av01", "vp09", "Opus", "mp4a"]
        self.send_command(0, "_result", event.transaction_id, props, info)

    def refuse_connect(self, event: Connect, description: str = "Connection refused.") -> None:
        info = m.status_info("error", "NetConnection.Connect.Rejected", description)
        self.send_command(0, "_error", event.transaction_id, None, info)

    def accept_publish(self, event: Publish) -> None:
        self.send_control(ck.USER_CONTROL, m.user_control(m.STREAM_BEGIN, event.stream_id))
        self.send_status(
            event.stream_id, "status", "NetStream.Publish.Start", f"{event.name} is now published."
        )

    def refuse_publish(
        self,
        event: Publish,
        code: str = "NetStream.Publish.BadName",
        description: str = "Publish refused.",
    ) -> None:
        self.send_status(event.stream_id, "error", code, description)

    def accept_play(self, event: Play) -> None:
        sid = event.stream_id
        self.send_control(ck.USER_CONTROL, m.user_control(m.STREAM_IS_RECORDED, sid))
        self.send_control(ck.USER_CONTROL, m.user_control(m.STREAM_BEGIN, sid))
        self.send_status(
            sid, "status", "NetStream.Play.Reset", f"Playing and resetting {event.name}."
        )
        self.send_status(sid, "status", "NetStream.Play.Start", f"Started playing {event.name}.")
        self._send(CS_DATA, ck.DATA_AMF0, sid, 0, amf.encode_all("|RtmpSampleAccess", True, True))

    def refuse_play(
        self,
        event: Play,
        code: str = "NetStream.Play.StreamNotFound",
        description: str = "Stream not found.",
    ) -> None:
        self.send_status(event.stream_id, "error", code, description)

    def end_play(self, stream_id: int, name: str = "") -> None:
        self.stream_eof(stream_id)
        self.send_status(stream_id, "status", "NetStream.Play.Stop", f"Stopped playing {name}.")

    def end_publish(self, stream_id: int, name: str = "") -> None:
        self.send_status(
            stream_id, "status", "NetStream.Unpublish.Success", f"{name} is now unpublished."
        )


class RtmpClientConnection(RtmpConnection):
    """The client role (analyser, push-out). Commands issued before the handshake
    completes are queued."""

    def __init__(
        self,
        trace: bool = False,
        chunk_size: int = 4096,
        window: int = 2_500_000,
        plain_handshake: bool = False,
        max_message_size: int = 16 * 1024 * 1024,
    ) -> None:
        super().__init__(trace, chunk_size, window, max_message_size)
        self._handshake = ClientHandshake(plain=plain_handshake)
        self._queued: list[bytes] = []
        self._tid = 1.0
        self._pending: dict[float, str] = {}

    def _next_tid(self, what: str) -> float:
        self._tid += 1
        self._pending[self._tid] = what
        return self._tid

    def _send(
        self, csid: int, mtype: int, stream_id: int, timestamp: int, payload: bytes | memoryview
    ) -> None:
        data = self.writer.write(csid, mtype, stream_id, timestamp, payload)
        (self._out if self._handshake.done else self._queued).append(data)

    def _send_raw(self, data: bytes) -> None:
        (self._out if self._handshake.done else self._queued).append(data)

    def _after_handshake(self) -> None:
        self._out += self._queued
        self._queued.clear()

    def set_chunk_size(self, size: int) -> None:
        data = self.writer.set_chunk_size(size)
        (self._out if self._handshake.done else self._queued).append(data)

    def connect(self, app: str, tc_url: str, **params: Any) -> None:
        obj: dict[str, Any] = {
            "app": app,
            "flashVer": "FMLE/3.0 (compatible; mistpy)",
            "tcUrl": tc_url,
            "fpad": False,
            "capabilities": 15.0,
            "audioCodecs": 3191.0,
            "videoCodecs": 252.0,
            "videoFunction": 1.0,
            "objectEncoding": 0.0,
            "fourCcList": ["avc1", "hvc1", "av01", "vp09", "Opus", "mp4a"],
        }
        obj.update(params)
        self._pending[1.0] = "connect"
        self.send_command(0, "connect", 1.0, obj)
        self.set_chunk_size(self._out_chunk_size)

    def create_stream(self) -> float:
        tid = self._next_tid("createStream")
        self.send_command(0, "createStream", tid, None)
        return tid

    def play(self, stream_id: int, name: str, start: float = -2.0) -> None:
        self.send_command(stream_id, "play", 0, None, name, start)
        self.send_control(ck.USER_CONTROL, m.user_control(m.SET_BUFFER_LENGTH, stream_id, 3000))

    def publish(self, stream_id: int, name: str, kind: str = "live") -> None:
        self.send_command(0, "releaseStream", self._next_tid("releaseStream"), None, name)
        self.send_command(0, "FCPublish", self._next_tid("FCPublish"), None, name)
        self.send_command(stream_id, "publish", 0, None, name, kind)

    def delete_stream(self, stream_id: int) -> None:
        self.send_command(0, "deleteStream", 0, None, float(stream_id))

    def _command(
        self, stream_id: int, name: str, tid: float, args: list[Any], events: list[Event]
    ) -> None:
        if name in ("_result", "_error"):
            what = self._pending.pop(tid, "")
            info = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
            if what == "connect":
                events.append(ConnectResult(name == "_result", info))
            elif (
                what == "createStream"
                and name == "_result"
                and len(args) > 1
                and isinstance(args[1], float)
            ):
                events.append(StreamCreated(int(args[1]), tid))
            elif name == "_error":
                events.append(Command(stream_id, name, tid, args))
        elif name == "onStatus":
            info = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
            events.append(
                Status(
                    stream_id,
                    str(info.get("level", "")),
                    str(info.get("code", "")),
                    str(info.get("description", "")),
                    info,
                )
            )
        elif name == "ping":  # some servers ping through commands
            self.send_command(0, "_result", tid, None)
        else:
            events.append(Command(stream_id, name, tid, args))
