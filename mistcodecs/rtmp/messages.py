"""Bodies of RTMP protocol control, user control and command messages."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from mistcodecs import amf
from mistcodecs.errors import FormatError
from mistcodecs.rtmp.chunks import COMMAND_AMF3, DATA_AMF3, RtmpMessage

_U32 = struct.Struct(">I")
_UC = struct.Struct(">HI")

# User control event types
STREAM_BEGIN = 0
STREAM_EOF = 1
STREAM_DRY = 2
SET_BUFFER_LENGTH = 3
STREAM_IS_RECORDED = 4
PING_REQUEST = 6
PING_RESPONSE = 7
USER_CONTROL_NAMES = {
    0: "StreamBegin",
    1: "StreamEOF",
    2: "StreamDry",
    3: "SetBufferLength",
    4: "StreamIsRecorded",
    6: "PingRequest",
    7: "PingResponse",
}

# Set peer bandwidth limit types
LIMIT_HARD, LIMIT_SOFT, LIMIT_DYNAMIC = 0, 1, 2


def u32(value: int) -> bytes:
    return _U32.pack(value & 0xFFFFFFFF)


def read_u32(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise FormatError(f"RTMP {what} message shorter than 4 bytes")
    return int(_U32.unpack_from(payload)[0])


def user_control(event: int, value: int, extra: int | None = None) -> bytes:
    body = _UC.pack(event, value & 0xFFFFFFFF)
    return body + u32(extra) if extra is not None else body


@dataclass
class UserControl:
    event: int
    value: int
    extra: int | None = None

    @classmethod
    def parse(cls, payload: bytes) -> UserControl:
        if len(payload) < 6:
            raise FormatError(f"RTMP user control message of {len(payload)} bytes (needs 6)")
        event, value = _UC.unpack_from(payload)
        extra = int(_U32.unpack_from(payload, 6)[0]) if len(payload) >= 10 else None
        return cls(event, value, extra)

    @property
    def name(self) -> str:
        return USER_CONTROL_NAMES.get(self.event, f"event{self.event}")


def peer_bandwidth(size: int, limit: int = LIMIT_DYNAMIC) -> bytes:
    return u32(size) + bytes((limit,))


def command(name: str, transaction_id: float, obj: Any = None, *args: Any) -> bytes:
    return amf.encode_all(name, float(transaction_id), obj, *args)


def decode_amf_message(msg: RtmpMessage) -> list[Any]:
    """AMF values of a command or data message (AMF3 types start with a 0 byte and
    continue in AMF0, switching to AMF3 per value through marker 0x11)."""
    payload = msg.payload
    if msg.type in (COMMAND_AMF3, DATA_AMF3) and payload[:1] == b"\x00":
        payload = payload[1:]
    return amf.decode_all(payload)


def split_query(name: str) -> tuple[str, dict[str, str]]:
    """``"key?a=1&b=2"`` -> ``("key", {"a": "1", "b": "2"})``."""
    base, sep, query = name.partition("?")
    return base, dict(parse_qsl(query, keep_blank_values=True)) if sep else {}


def status_info(level: str, code: str, description: str = "", **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"level": level, "code": code, "description": description}
    info.update(extra)
    return info
