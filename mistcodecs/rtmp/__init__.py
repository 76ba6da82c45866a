"""Sans-IO RTMP: handshake, chunk stream, control messages and the session layer.

Use :class:`RtmpServerConnection` / :class:`RtmpClientConnection` with
``receive_data(bytes) -> list[Event]`` and ``data_to_send() -> bytes``.
"""

from mistcodecs.rtmp.chunks import ChunkError, ChunkReader, ChunkWriter, RtmpMessage
from mistcodecs.rtmp.connection import (
    RtmpClientConnection,
    RtmpConnection,
    RtmpServerConnection,
    prepare_media,
)
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
from mistcodecs.rtmp.handshake import ClientHandshake, HandshakeError, ServerHandshake

__all__ = [
    "ChunkError",
    "ChunkReader",
    "ChunkWriter",
    "ClientHandshake",
    "CloseStream",
    "Command",
    "Connect",
    "ConnectResult",
    "CreateStream",
    "DeleteStream",
    "Error",
    "Event",
    "HandshakeComplete",
    "HandshakeError",
    "MediaMessage",
    "MessageTrace",
    "Play",
    "Publish",
    "RtmpClientConnection",
    "RtmpConnection",
    "RtmpMessage",
    "RtmpServerConnection",
    "ServerHandshake",
    "Status",
    "StreamCreated",
    "StreamEvent",
    "prepare_media",
]
