"""MPEG-TS transport packets (ISO/IEC 13818-1 section 2.4.3): parse, build, resync.

A packet is 188 bytes: a 4-byte header (sync 0x47, PID, flags, continuity counter),
an optional adaptation field (PCR, discontinuity and random-access flags, stuffing)
and payload. :class:`PacketSplitter` turns arbitrary chunks into packets with their
byte positions and recovers from lost sync by searching for two sync bytes 188 apart.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mistcodecs.errors import FormatError, Truncated

PACKET_SIZE = 188
SYNC = 0x47
PID_PAT = 0
PID_NULL = 0x1FFF
PCR_HZ = 27_000_000
_HEADER = struct.Struct(">BHB")
_PCR = struct.Struct(">IH")


@dataclass(slots=True)
class AdaptationField:
    discontinuity: bool = False
    random_access: bool = False
    priority: bool = False
    pcr: int | None = None  # 27 MHz units
    opcr: int | None = None
    splice_countdown: int | None = None
    private_data: bytes = b""
    stuffing: int = 0  # bytes of 0xFF padding

    @classmethod
    def parse(cls, data: bytes | memoryview, where: int = 0) -> AdaptationField:
        """Parse an adaptation field body (without its length byte)."""
        af = cls()
        if not data:
            return af
        flags = data[0]
        af.discontinuity = bool(flags & 0x80)
        af.random_access = bool(flags & 0x40)
        af.priority = bool(flags & 0x20)
        pos = 1
        for bit in (0x10, 0x08):
            if flags & bit:
                if pos + 6 > len(data):
                    raise Truncated(f"PCR truncated in adaptation field of packet at byte {where}")
                base, ext = _PCR.unpack_from(data, pos)
                value = ((base << 1) | (ext >> 15)) * 300 + (ext & 0x1FF)
                if bit == 0x10:
                    af.pcr = value
                else:
                    af.opcr = value
                pos += 6
        if flags & 0x04:
            if pos >= len(data):
                raise Truncated(f"splice countdown missing in packet at byte {where}")
            af.splice_countdown = struct.unpack_from(">b", data, pos)[0]
            pos += 1
        if flags & 0x02:
            if pos >= len(data) or pos + 1 + data[pos] > len(data):
                raise Truncated(f"private data overruns adaptation field of packet at byte {where}")
            af.private_data = bytes(data[pos + 1 : pos + 1 + data[pos]])
            pos += 1 + data[pos]
        af.stuffing = len(data) - pos
        return af

    def __bytes__(self) -> bytes:
        flags = (self.discontinuity << 7) | (self.random_access << 6) | (self.priority << 5)
        body = bytearray(1)
        for bit, value in ((0x10, self.pcr), (0x08, self.opcr)):
            if value is not None:
                flags |= bit
                body += encode_pcr(value)
        if self.splice_countdown is not None:
            flags |= 0x04
            body += struct.pack(">b", self.splice_countdown)
        if self.private_data:
            flags |= 0x02
            body += bytes((len(self.private_data),)) + self.private_data
        body[0] = flags
        body += b"\xff" * self.stuffing
        return bytes(body)


def encode_pcr(pcr: int) -> bytes:
    base, ext = divmod(pcr, 300)
    base &= (1 << 33) - 1
    return _PCR.pack(base >> 1, ((base & 1) << 15) | 0x7E00 | ext)


@dataclass(slots=True)
class TsPacket:
    pid: int
    pusi: bool  # payload unit start indicator
    cc: int
    payload: bytes | memoryview = b""
    adaptation: AdaptationField | None = None
    error: bool = False  # transport error indicator
    priority: bool = False
    scrambling: int = 0
    has_payload: bool = True

    @classmethod
    def parse(cls, data: bytes | memoryview, where: int = 0) -> TsPacket:
        if len(data) < PACKET_SIZE:
            raise Truncated(f"TS packet at byte {where} has only {len(data)} of 188 bytes")
        sync, pidw, flags = _HEADER.unpack_from(data, 0)
        if sync != SYNC:
            raise FormatError(
                f"TS packet at byte {where} starts with 0x{sync:02x}, not the 0x47 sync byte"
            )
        pkt = cls(pidw & 0x1FFF, bool(pidw & 0x4000), flags & 0x0F)
        pkt.error = bool(pidw & 0x8000)
        pkt.priority = bool(pidw & 0x2000)
        pkt.scrambling = flags >> 6
        control = (flags >> 4) & 3
        pos = 4
        if control & 2:
            length = data[4]
            if length > 183:
                raise FormatError(
                    f"adaptation field of {length} bytes overruns TS packet at byte {where}"
                )
            pkt.adaptation = AdaptationField.parse(data[5 : 5 + length], where)
            pos = 5 + length
        pkt.has_payload = bool(control & 1)
        pkt.payload = data[pos:PACKET_SIZE] if pkt.has_payload else b""
        return pkt

    def __bytes__(self) -> bytes:
        return build_packet(
            self.pid, self.payload, self.cc, pusi=self.pusi, adaptation=self.adaptation
        )


def build_packet(
    pid: int,
    payload: bytes | memoryview,
    cc: int,
    *,
    pusi: bool = False,
    adaptation: AdaptationField | None = None,
) -> bytes:
    """One 188-byte packet; pads with adaptation-field stuffing when the payload is short."""
    if adaptation is not None:
        af = bytes(adaptation)
        gap = PACKET_SIZE - 5 - len(af) - len(payload)
        if gap < 0:
            raise FormatError(
                f"{len(payload)} payload bytes do not fit in a TS packet with a {len(af)}-byte adaptation field"
            )
        field = bytes((len(af) + gap,)) + af + b"\xff" * gap
    else:
        gap = PACKET_SIZE - 4 - len(payload)
        if gap < 0:
            raise FormatError(f"{len(payload)} payload bytes do not fit in a TS packet")
        field = (
            b"" if gap == 0 else b"\x00" if gap == 1 else bytes((gap - 1, 0)) + b"\xff" * (gap - 2)
        )
    control = (0x20 if field else 0) | (0x10 if payload else 0)
    return _HEADER.pack(SYNC, (pusi << 14) | pid, control | (cc & 0xF)) + field + bytes(payload)


class PacketSplitter:
    """Incremental splitter: chunks in, ``(byte_position, packet_bytes)`` out.

    Junk between packets is skipped; each loss of sync is counted in ``sync_losses``
    and described in ``problems`` (the caller decides whether that is fatal).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # byte position of _buf[0] in the whole stream
        self.sync_losses = 0
        self.skipped = 0
        self.problems: list[str] = []
        self._in_loss = False

    @property
    def position(self) -> int:
        return self._base

    @property
    def pending(self) -> int:
        return len(self._buf)

    def seek(self, position: int) -> None:
        """Forget buffered bytes; the next byte fed is at ``position``."""
        self._buf.clear()
        self._base = position

    def feed(self, data: bytes | memoryview) -> list[tuple[int, bytes]]:
        self._buf += data
        return self._split(final=False)

    def _split(self, final: bool) -> list[tuple[int, bytes]]:
        # A packet is taken when the byte after it is a sync byte too (so one packet
        # stays buffered until the next byte arrives). When it is not, either this
        # packet or the next is damaged: the next confirmed sync pair decides.
        buf = self._buf
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= PACKET_SIZE:
            nxt = pos + PACKET_SIZE
            if buf[pos] == SYNC and ((nxt < end and buf[nxt] == SYNC) or (final and nxt == end)):
                self._take(out, pos)
                pos = nxt
                continue
            found = self._resync(pos + 1, final)
            if buf[pos] == SYNC and (
                found >= nxt or (found < 0 and (final or end - pos > 2 * PACKET_SIZE))
            ):
                self._take(out, pos)  # this packet is fine; what follows it is not
                pos = nxt
                continue
            if found < 0:
                if final or end - pos > 2 * PACKET_SIZE:
                    keep = end if final else max(pos, end - PACKET_SIZE)
                    self._skip(pos, keep)
                    pos = keep
                break
            self._skip(pos, found)
            pos = found
        del buf[:pos]
        self._base += pos
        return out

    def _take(self, out: list[tuple[int, bytes]], pos: int) -> None:
        self._in_loss = False
        out.append((self._base + pos, bytes(self._buf[pos : pos + PACKET_SIZE])))

    def _resync(self, pos: int, final: bool) -> int:
        """First offset >= pos with a sync byte there and 188 later (or at the very end)."""
        buf = self._buf
        i = buf.find(b"\x47", pos)
        while i >= 0:
            nxt = i + PACKET_SIZE
            if (nxt < len(buf) and buf[nxt] == SYNC) or (final and nxt == len(buf)):
                return i
            if nxt >= len(buf):
                return -1
            i = buf.find(b"\x47", i + 1)
        return -1

    def _skip(self, start: int, stop: int) -> None:
        if stop <= start:
            return
        if not self._in_loss:
            self._in_loss = True
            self.sync_losses += 1
            if len(self.problems) < 100:
                self.problems.append(f"lost sync at byte {self._base + start}")
        self.skipped += stop - start

    def end(self) -> tuple[list[tuple[int, bytes]], int]:
        """The packets still buffered, and how many bytes were left over that do not
        form a whole packet (0 for a clean end)."""
        out = self._split(final=True)
        left = len(self._buf)
        self._base += left
        self._buf.clear()
        return out, left
