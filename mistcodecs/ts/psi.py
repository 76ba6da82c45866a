"""Program-specific information: PAT and PMT sections with the MPEG-2 CRC32.

Sections can start anywhere in a packet (after the pointer field) and span several
packets; :class:`SectionAssembler` collects them per PID. Stream types map to the
media model's codec names in :data:`STREAM_TYPES`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from mistcodecs.errors import FormatError, Truncated

TABLE_PAT = 0x00
TABLE_PMT = 0x02
DESC_REGISTRATION = 0x05
DESC_LANGUAGE = 0x0A
DESC_AC3 = 0x6A
DESC_EAC3 = 0x7A
DESC_AAC = 0x7C  # DVB AAC_descriptor
DESC_EXTENSION = 0x7F  # DVB extension descriptor; tag 0x80 carries Opus channels

# stream_type -> codec (ISO 13818-1 table 2-34, ATSC A/52 for 0x81/0x87)
STREAM_TYPES: dict[int, str] = {
    0x02: "MPEG2",
    0x03: "MP3",
    0x04: "MP3",
    0x0F: "AAC",
    0x1B: "H264",
    0x24: "HEVC",
    0x81: "AC3",
    0x87: "EAC3",
}
CODEC_STREAM_TYPES: dict[str, int] = {
    "H264": 0x1B,
    "HEVC": 0x24,
    "AAC": 0x0F,
    "MP3": 0x03,
    "AC3": 0x81,
    "EAC3": 0x87,
    "opus": 0x06,
}
_U16 = struct.Struct(">H")


MAX_PSI_SECTION = 1021  # ISO 13818-1 2.4.4: PAT, CAT, PMT and TSDT sections
MAX_PRIVATE_SECTION = 4093


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc32_mpeg2(data: bytes | memoryview) -> int:
    """CRC-32/MPEG-2 (poly 0x04C11DB7, init all ones, no reflection, no final xor)."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in bytes(data):
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def _section(table_id: int, ext: int, version: int, body: bytes) -> bytes:
    length = 5 + len(body) + 4
    head = bytes((table_id,)) + _U16.pack(0xB000 | length) + _U16.pack(ext)
    head += bytes((0xC1 | ((version & 0x1F) << 1), 0, 0))
    sec = head + body
    return sec + crc32_mpeg2(sec).to_bytes(4, "big")


def _check_section(sec: bytes | memoryview, what: str, table_id: int) -> bytes:
    data = bytes(sec)
    if len(data) < 12:
        raise Truncated(f"{what} section of {len(data)} bytes is too short")
    if data[0] != table_id:
        raise FormatError(f"{what} section has table id 0x{data[0]:02x}, expected 0x{table_id:02x}")
    length = _U16.unpack_from(data, 1)[0] & 0x0FFF
    if length + 3 > len(data):
        raise Truncated(f"{what} section claims {length} bytes, only {len(data) - 3} present")
    data = data[: length + 3]
    if crc32_mpeg2(data) != 0:
        raise FormatError(f"{what} section CRC mismatch")
    return data


@dataclass
class Pat:
    transport_stream_id: int = 1
    programs: dict[int, int] = field(default_factory=dict)  # program number -> PMT PID
    version: int = 0

    @classmethod
    def parse(cls, sec: bytes | memoryview) -> Pat:
        data = _check_section(sec, "PAT", TABLE_PAT)
        pat = cls(_U16.unpack_from(data, 3)[0], {}, (data[5] >> 1) & 0x1F)
        for pos in range(8, len(data) - 4 - 3, 4):
            number, pid = struct.unpack_from(">HH", data, pos)
            if number:  # program 0 points at the network PID
                pat.programs[number] = pid & 0x1FFF
        return pat

    def __bytes__(self) -> bytes:
        body = b"".join(struct.pack(">HH", n, 0xE000 | pid) for n, pid in self.programs.items())
        return _section(TABLE_PAT, self.transport_stream_id, self.version, body)


@dataclass
class PmtStream:
    stream_type: int
    pid: int
    descriptors: bytes = b""

    def iter_descriptors(self) -> list[tuple[int, bytes]]:
        return parse_descriptors(self.descriptors)

    @property
    def codec(self) -> str:
        """The media model codec name, or '' for stream types we do not carry."""
        if self.stream_type in STREAM_TYPES:
            return STREAM_TYPES[self.stream_type]
        if self.stream_type == 0x06:
            return private_codec(self.iter_descriptors())
        return ""

    @property
    def opus_channels(self) -> int:
        for tag, body in self.iter_descriptors():
            if tag == DESC_EXTENSION and len(body) >= 2 and body[0] == 0x80:
                return body[1] if 0 < body[1] <= 8 else 2
        return 2

    @property
    def lang(self) -> str:
        for tag, body in self.iter_descriptors():
            if tag == DESC_LANGUAGE and len(body) >= 3:
                return body[:3].decode("latin-1")
        return ""


# registration descriptor format identifiers of private-data (0x06) audio streams
REGISTRATIONS = {b"Opus": "opus", b"AC-3": "AC3", b"EAC3": "EAC3", b"EC-3": "EAC3"}


def private_codec(descriptors: list[tuple[int, bytes]]) -> str:
    """The codec of a private-data PES stream (type 0x06) named by its descriptors
    (registration 'Opus'/'AC-3'/'EAC3', DVB AC-3/E-AC-3/AAC descriptors), or ''."""
    for tag, body in descriptors:
        if tag == DESC_REGISTRATION and body[:4] in REGISTRATIONS:
            return REGISTRATIONS[body[:4]]
        if tag == DESC_AC3:
            return "AC3"
        if tag == DESC_EAC3:
            return "EAC3"
        if tag == DESC_AAC:
            return "AAC"
    return ""


def parse_descriptors(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos + 2 <= len(data):
        tag, size = data[pos], data[pos + 1]
        if pos + 2 + size > len(data):
            raise Truncated(f"descriptor 0x{tag:02x} of {size} bytes overruns its loop")
        out.append((tag, data[pos + 2 : pos + 2 + size]))
        pos += 2 + size
    return out


@dataclass
class Pmt:
    program_number: int = 1
    pcr_pid: int = 0x1FFF
    streams: list[PmtStream] = field(default_factory=list)
    descriptors: bytes = b""
    version: int = 0

    @classmethod
    def parse(cls, sec: bytes | memoryview) -> Pmt:
        data = _check_section(sec, "PMT", TABLE_PMT)
        pmt = cls(
            _U16.unpack_from(data, 3)[0],
            _U16.unpack_from(data, 8)[0] & 0x1FFF,
            [],
            b"",
            (data[5] >> 1) & 0x1F,
        )
        info = _U16.unpack_from(data, 10)[0] & 0x0FFF
        end = len(data) - 4
        pos = 12 + info
        if pos > end:
            raise Truncated(f"PMT program info of {info} bytes overruns the section")
        pmt.descriptors = data[12:pos]
        while pos + 5 <= end:
            kind = data[pos]
            pid, es_len = struct.unpack_from(">HH", data, pos + 1)
            es_len &= 0x0FFF
            if pos + 5 + es_len > end:
                raise Truncated(
                    f"PMT ES info of {es_len} bytes for PID {pid & 0x1FFF} overruns the section"
                )
            pmt.streams.append(PmtStream(kind, pid & 0x1FFF, data[pos + 5 : pos + 5 + es_len]))
            pos += 5 + es_len
        return pmt

    def __bytes__(self) -> bytes:
        body = bytearray(
            _U16.pack(0xE000 | self.pcr_pid) + _U16.pack(0xF000 | len(self.descriptors))
        )
        body += self.descriptors
        for s in self.streams:
            body += (
                bytes((s.stream_type,))
                + _U16.pack(0xE000 | s.pid)
                + _U16.pack(0xF000 | len(s.descriptors))
            )
            body += s.descriptors
        return _section(TABLE_PMT, self.program_number, self.version, bytes(body))


class SectionAssembler:
    """Collects PSI sections of one PID from packet payloads. A section whose
    section_length exceeds the standard's maximum (1021 bytes for PAT/CAT/PMT/TSDT,
    4093 otherwise) is dropped and described in ``problems``."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._active = False
        self.problems: list[str] = []

    def feed(self, payload: bytes | memoryview, pusi: bool) -> list[bytes]:
        """Complete sections (header through CRC) found so far."""
        if pusi:
            if not payload:
                return []
            pointer = payload[0]
            if self._active:
                self._buf += payload[1 : 1 + pointer]
            out = self._drain()
            self._buf = bytearray(payload[1 + pointer :])
            self._active = True
            return out + self._drain()
        if not self._active:
            return []
        self._buf += payload
        return self._drain()

    def _drain(self) -> list[bytes]:
        out: list[bytes] = []
        buf = self._buf
        while len(buf) >= 3 and buf[0] != 0xFF:
            length = ((buf[1] & 0x0F) << 8) | buf[2]
            limit = MAX_PSI_SECTION if buf[0] <= 0x03 else MAX_PRIVATE_SECTION
            if length > limit:
                self.problems.append(
                    f"section (table 0x{buf[0]:02x}) claims section_length {length}, "
                    f"over the maximum of {limit}: dropped"
                )
                buf.clear()
                self._active = False
                return out
            size = 3 + length
            if len(buf) < size:
                return out
            out.append(bytes(buf[:size]))
            del buf[:size]
        if buf[:1] == b"\xff":  # stuffing: the rest of the packet is padding
            buf.clear()
            self._active = False
        return out
