"""Hand-off of pushed media from a protocol process (MistOutRTMP...) to ``MistInBuffer``.

Theory of operation
-------------------
The buffer is the only writer of a live stream on the bus. It listens on a unix
stream socket in the abstract namespace, ``\\0MstPush<stream>`` (nothing on disk to
clean up; it vanishes with the process). A pusher -- the RTMP connection of a
publisher -- connects and sends framed records:

``HELLO`` (who pushes: protocol, peer host, password) -> the buffer answers ``ACCEPT``
or ``REFUSE`` (busy stream, wrong password, host not whitelisted); then ``TRACK``
(a :class:`~shm.model.TrackMeta`, msgpack) and ``PACKET`` records, and ``BYE`` at the
end. Every record is ``<BI`` (type, body length) + body; a packet body is ``<IqiB``
(track, dts, offset, flags) + payload. The framing is sans-IO (:class:`RecordReader`);
the asyncio pusher side is :mod:`inputs.ingest_client` (kept apart: the buffer never
imports asyncio).

Why a socket and not the bus directly: one publisher must not become the stream's
writer (a reconnect would lose the DVR window and every reader); the buffer keeps the
stream, offsets the timestamps of a reconnecting publisher so they follow on, and
decides alone who may publish.

The push policy (:class:`PushPolicy`) is the stream's source, ``push://[host][@password]``
(reference 8): ``host`` is a comma list of addresses, CIDR ranges or host names (empty:
anyone); ``password`` must equal the RTMP application name or a ``pass`` parameter.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack

from common.streamname import shm_safe
from mistcodecs.errors import FormatError, Truncated
from shm.model import Packet, TrackMeta

HEAD = struct.Struct("<BI")
PACKET_HEAD = struct.Struct("<IqiB")
PACKET_FRAME = struct.Struct("<BIIqiB")  # HEAD + PACKET_HEAD in one pack (hot path)
MAX_RECORD = 64 << 20

HELLO, ACCEPT, REFUSE, TRACK, PACKET, BYE = 1, 2, 3, 4, 5, 6


def socket_address(stream: str) -> bytes:
    """The abstract-namespace address the buffer of ``stream`` listens on."""
    return b"\0MstPush" + shm_safe(stream).encode()


def _unpack_map(body: bytes | memoryview, what: str) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise FormatError(f"{what} record: bad msgpack body ({exc})") from exc
    if not isinstance(obj, dict):
        raise FormatError(f"{what} record: body is {type(obj).__name__}, not a map")
    return obj


@dataclass
class Hello:
    code: ClassVar[int] = HELLO
    protocol: str
    host: str
    password: str = ""
    # the connector already authorised this push (a stream key): skip password/whitelist
    authorized: bool = False

    @classmethod
    def parse(cls, body: bytes | memoryview) -> Hello:
        d = _unpack_map(body, "HELLO")
        return cls(
            str(d.get("protocol", "")),
            str(d.get("host", "")),
            str(d.get("password", "")),
            d.get("authorized") is True,
        )

    def __bytes__(self) -> bytes:
        body: dict[str, object] = {
            "protocol": self.protocol,
            "host": self.host,
            "password": self.password,
        }
        if self.authorized:
            body["authorized"] = True
        return _frame(HELLO, msgpack.packb(body))


@dataclass
class Accept:
    code: ClassVar[int] = ACCEPT
    resumed: bool = False

    @classmethod
    def parse(cls, body: bytes | memoryview) -> Accept:
        return cls(bool(_unpack_map(body, "ACCEPT").get("resumed")))

    def __bytes__(self) -> bytes:
        return _frame(ACCEPT, msgpack.packb({"resumed": self.resumed}))


@dataclass
class Refuse:
    code: ClassVar[int] = REFUSE
    reason: str

    @classmethod
    def parse(cls, body: bytes | memoryview) -> Refuse:
        return cls(str(_unpack_map(body, "REFUSE").get("reason", "")))

    def __bytes__(self) -> bytes:
        return _frame(REFUSE, msgpack.packb({"reason": self.reason}))


@dataclass
class Track:
    code: ClassVar[int] = TRACK
    meta: TrackMeta

    @classmethod
    def parse(cls, body: bytes | memoryview) -> Track:
        d = _unpack_map(body, "TRACK")
        try:
            meta = TrackMeta.from_record(d)
        except TypeError as exc:
            raise FormatError(f"TRACK record: {exc}") from exc
        if meta.type not in ("video", "audio", "meta") or not isinstance(meta.codec, str):
            raise FormatError(f"TRACK record: bad track type {meta.type!r}")
        return cls(meta)

    def __bytes__(self) -> bytes:
        return _frame(TRACK, msgpack.packb(self.meta.to_record(), use_bin_type=True))


@dataclass
class Bye:
    code: ClassVar[int] = BYE
    reason: str = ""

    @classmethod
    def parse(cls, body: bytes | memoryview) -> Bye:
        return cls(str(_unpack_map(body, "BYE").get("reason", "")))

    def __bytes__(self) -> bytes:
        return _frame(BYE, msgpack.packb({"reason": self.reason}))


def _frame(code: int, body: bytes) -> bytes:
    return HEAD.pack(code, len(body)) + body


def packet_header(track: int, dts: int, offset: int, keyframe: bool, size: int) -> bytes:
    """The framing of a PACKET record whose payload of ``size`` bytes follows."""
    return PACKET_FRAME.pack(PACKET, PACKET_HEAD.size + size, track, dts, offset, keyframe)


def packet_record(p: Packet) -> bytes:
    """A whole PACKET record."""
    return packet_header(p.track, p.dts, p.offset, p.keyframe, len(p.data)) + p.data


def parse_packet(body: bytes | memoryview) -> Packet:
    if len(body) < PACKET_HEAD.size:
        raise Truncated(f"PACKET record of {len(body)} bytes is shorter than its header")
    track, dts, offset, flags = PACKET_HEAD.unpack_from(body, 0)
    return Packet(track, dts, offset, bool(flags & 1), bytes(body[PACKET_HEAD.size :]))


Record = Hello | Accept | Refuse | Track | Packet | Bye
_PARSERS: dict[int, Any] = {
    HELLO: Hello.parse,
    ACCEPT: Accept.parse,
    REFUSE: Refuse.parse,
    TRACK: Track.parse,
    PACKET: parse_packet,
    BYE: Bye.parse,
}


class RecordReader:
    """Sans-IO: feed bytes, get records. Malformed input raises :class:`FormatError`."""

    def __init__(self, max_record: int = MAX_RECORD) -> None:
        self._buf = bytearray()
        self.max_record = max_record
        self.offset = 0  # stream position of the start of ``_buf``

    def feed(self, data: bytes) -> list[Record]:
        buf = self._buf
        buf += data
        out: list[Record] = []
        pos = 0
        while len(buf) - pos >= HEAD.size:
            code, size = HEAD.unpack_from(buf, pos)
            where = self.offset + pos
            if code not in _PARSERS:
                raise FormatError(f"ingest record of unknown type {code} at byte {where}")
            if size > self.max_record:
                raise FormatError(f"ingest record of {size} bytes at byte {where} is too big")
            end = pos + HEAD.size + size
            if end > len(buf):
                break
            body = memoryview(buf)[pos + HEAD.size : end]
            try:
                out.append(_PARSERS[code](body))
            finally:
                body.release()
            pos = end
        if pos:
            del buf[:pos]
            self.offset += pos
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


# -- who may push -----------------------------------------------------------------------


@dataclass
class PushPolicy:
    """``push://[host][@password]``: allowed hosts and the password."""

    hosts: list[str] = field(default_factory=list)
    password: str = ""

    @classmethod
    def parse(cls, source: str) -> PushPolicy:
        rest = source.split("://", 1)[1] if "://" in source else ""
        host, _, password = rest.rpartition("@") if "@" in rest else (rest, "", "")
        hosts = [h.strip() for h in host.split(",") if h.strip()]
        return cls(hosts, password)

    def check(self, host: str, password: str) -> str:
        """ "" when ``host`` may push with ``password``, else the reason it may not."""
        if self.password and password != self.password:
            return "wrong push password"
        if self.hosts and not any(_host_matches(h, host) for h in self.hosts):
            return f"host {host} is not whitelisted"
        return ""


def _host_matches(rule: str, host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return rule == host
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    try:
        return addr in ipaddress.ip_network(rule, strict=False)
    except ValueError:
        pass
    try:  # a host name: compare with what it resolves to
        infos = socket.getaddrinfo(rule, None)
    except OSError:
        return False
    return any(ipaddress.ip_address(i[4][0]) == addr for i in infos)
