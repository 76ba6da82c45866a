"""Events an RTMP connection reports from ``receive_data``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mistcodecs.rtmp.chunks import RtmpMessage


class Event:
    """Base class of all RTMP events."""


@dataclass
class HandshakeComplete(Event):
    complex: bool  # digest handshake used


@dataclass
class Connect(Event):
    """A client's ``connect``; answer with ``accept_connect`` or ``refuse_connect``."""

    transaction_id: float
    app: str
    tc_url: str
    params: dict[str, Any]
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class CreateStream(Event):
    """Already answered; ``stream_id`` is the new message stream."""

    stream_id: int


@dataclass
class Publish(Event):
    """Answer with ``accept_publish`` or ``refuse_publish``."""

    stream_id: int
    name: str
    type: str
    query: dict[str, str]
    raw_name: str


@dataclass
class Play(Event):
    """Answer with ``accept_play`` or ``refuse_play``."""

    stream_id: int
    name: str
    query: dict[str, str]
    raw_name: str
    start: float = -2.0


@dataclass
class DeleteStream(Event):
    stream_id: int


@dataclass
class CloseStream(Event):
    """``closeStream`` or ``FCUnpublish``: the stream stays allocated."""

    stream_id: int
    reason: str = "closeStream"


@dataclass
class MediaMessage(Event):
    """Audio (8), video (9) or data (18) message: ``payload`` is an FLV tag body
    (for data, AMF0 values, ``@setDataFrame`` already stripped)."""

    stream_id: int
    kind: str  # "audio" | "video" | "data"
    timestamp: int
    payload: bytes


@dataclass
class Command(Event):
    """A command the session does not handle itself."""

    stream_id: int
    name: str
    transaction_id: float
    args: list[Any]


# -- client-side results --


@dataclass
class ConnectResult(Event):
    ok: bool
    info: dict[str, Any]


@dataclass
class StreamCreated(Event):
    stream_id: int
    transaction_id: float


@dataclass
class Status(Event):
    """An ``onStatus`` from the peer (``NetStream.Play.Start`` and friends)."""

    stream_id: int
    level: str
    code: str
    description: str
    info: dict[str, Any]


@dataclass
class StreamEvent(Event):
    """A user control event (StreamBegin, StreamEOF, ...)."""

    name: str
    stream_id: int


@dataclass
class Error(Event):
    """The peer sent something we cannot handle; the connection should be closed."""

    message: str


@dataclass
class MessageTrace(Event):
    """Every received message, when the connection was created with ``trace=True``."""

    message: RtmpMessage
    chunks: int  # chunks read so far
