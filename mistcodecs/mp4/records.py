"""The fixed-layout boxes of ISO/IEC 14496-12 that we read and write.

Each record's ``parse`` takes the box *body* (after the 8/16-byte header) and
``__bytes__`` returns the whole box. Lengths are checked before unpacking.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from mistcodecs.mp4.boxes import BoxError, box, fourcc, full_box, full_header, need

_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _lang_decode(code: int) -> str:
    if code == 0 or code == 0x7FFF:
        return "und"
    chars = [((code >> s) & 0x1F) + 0x60 for s in (10, 5, 0)]
    if not all(0x61 <= c <= 0x7A for c in chars):
        return "und"
    return bytes(chars).decode("ascii")


def _lang_encode(lang: str) -> int:
    lang = (lang or "und")[:3].lower()
    if len(lang) != 3 or not lang.isalpha() or not lang.isascii():
        lang = "und"
    return sum((ord(c) - 0x60) << s for c, s in zip(lang, (10, 5, 0), strict=True))


@dataclass
class Ftyp:
    major: str
    minor: int
    compatible: list[str]
    kind: str = "ftyp"  # or 'styp'

    @classmethod
    def parse(cls, body: bytes, kind: str = "ftyp") -> Ftyp:
        need(body, 8, kind)
        brands = [fourcc(body[i : i + 4]) for i in range(8, len(body) - 3, 4)]
        return cls(fourcc(body[:4]), struct.unpack_from(">I", body, 4)[0], brands, kind)

    def __bytes__(self) -> bytes:
        brands = b"".join(b.encode("latin-1") for b in self.compatible)
        return box(self.kind, self.major.encode("latin-1"), struct.pack(">I", self.minor), brands)


@dataclass
class Mvhd:
    timescale: int
    duration: int
    next_track_id: int
    version: int = 0

    @classmethod
    def parse(cls, body: bytes) -> Mvhd:
        version, _ = full_header(body, "mvhd")
        if version == 1:
            need(body, 32, "mvhd")
            timescale, duration = struct.unpack_from(">IQ", body, 20)
            tail = 32
        else:
            need(body, 20, "mvhd")
            timescale, duration = struct.unpack_from(">II", body, 12)
            tail = 20
        need(body, 4, "mvhd", tail + 76)
        next_id = struct.unpack_from(">I", body, tail + 76)[0]
        return cls(timescale, duration, next_id, version)

    def __bytes__(self) -> bytes:
        version = 1 if self.duration > 0xFFFFFFFF else 0
        times = struct.pack(">QQIQ" if version else ">IIII", 0, 0, self.timescale, self.duration)
        rest = struct.pack(">IH10x", 0x10000, 0x100) + _MATRIX + bytes(24)
        return full_box("mvhd", version, 0, times, rest, struct.pack(">I", self.next_track_id))


@dataclass
class Tkhd:
    track_id: int
    duration: int
    width: float = 0.0
    height: float = 0.0
    volume: int = 0
    flags: int = 3  # enabled | in movie

    @classmethod
    def parse(cls, body: bytes) -> Tkhd:
        version, flags = full_header(body, "tkhd")
        if version == 1:
            need(body, 36, "tkhd")
            track_id, duration = struct.unpack_from(">I4xQ", body, 20)
            tail = 36
        else:
            need(body, 24, "tkhd")
            track_id, duration = struct.unpack_from(">I4xI", body, 12)
            tail = 24
        need(body, 8 + 8 + 36 + 8, "tkhd", tail)
        volume = struct.unpack_from(">H", body, tail + 12)[0]
        width, height = struct.unpack_from(">II", body, tail + 52)
        return cls(track_id, duration, width / 65536, height / 65536, volume, flags)

    def __bytes__(self) -> bytes:
        version = 1 if self.duration > 0xFFFFFFFF else 0
        head = struct.pack(">QQI4xQ" if version else ">III4xI", 0, 0, self.track_id, self.duration)
        rest = struct.pack(">8xhhH2x", 0, 0, self.volume) + _MATRIX
        size = struct.pack(">II", round(self.width * 65536), round(self.height * 65536))
        return full_box("tkhd", version, self.flags, head, rest, size)


@dataclass
class Mdhd:
    timescale: int
    duration: int
    language: str = "und"

    @classmethod
    def parse(cls, body: bytes) -> Mdhd:
        version, _ = full_header(body, "mdhd")
        if version == 1:
            need(body, 34, "mdhd")
            timescale, duration, lang = struct.unpack_from(">IQH", body, 20)
        else:
            need(body, 22, "mdhd")
            timescale, duration, lang = struct.unpack_from(">IIH", body, 12)
        if timescale == 0:
            raise BoxError("mdhd timescale is 0")
        return cls(timescale, duration, _lang_decode(lang))

    def __bytes__(self) -> bytes:
        version = 1 if self.duration > 0xFFFFFFFF else 0
        times = struct.pack(">QQIQ" if version else ">IIII", 0, 0, self.timescale, self.duration)
        return full_box(
            "mdhd", version, 0, times, struct.pack(">HH", _lang_encode(self.language), 0)
        )


@dataclass
class Hdlr:
    handler: str
    name: str = ""

    @classmethod
    def parse(cls, body: bytes) -> Hdlr:
        need(body, 24, "hdlr")
        name = body[24:].split(b"\0", 1)[0].decode("utf-8", "replace")
        return cls(fourcc(body[8:12]), name)

    def __bytes__(self) -> bytes:
        return full_box(
            "hdlr",
            0,
            0,
            bytes(4),
            self.handler.encode("latin-1"),
            bytes(12),
            self.name.encode() + b"\0",
        )


@dataclass
class EditEntry:
    segment_duration: int  # movie timescale
    media_time: int  # media timescale; -1 = empty edit
    rate: int = 0x10000


@dataclass
class Elst:
    entries: list[EditEntry]

    @classmethod
    def parse(cls, body: bytes) -> Elst:
        version, _ = full_header(body, "elst")
        need(body, 8, "elst")
        count = struct.unpack_from(">I", body, 4)[0]
        fmt = ">QqI" if version == 1 else ">IiI"
        step = struct.calcsize(fmt)
        need(body, step * count, "elst", 8)
        return cls([EditEntry(*struct.unpack_from(fmt, body, 8 + i * step)) for i in range(count)])

    def __bytes__(self) -> bytes:
        wide = any(
            e.segment_duration > 0xFFFFFFFF or abs(e.media_time) > 0x7FFFFFFF for e in self.entries
        )
        fmt = ">QqI" if wide else ">IiI"
        rows = b"".join(
            struct.pack(fmt, e.segment_duration, e.media_time, e.rate) for e in self.entries
        )
        return box(
            "edts", full_box("elst", int(wide), 0, struct.pack(">I", len(self.entries)), rows)
        )


@dataclass
class Trex:
    track_id: int
    description_index: int = 1
    duration: int = 0
    size: int = 0
    flags: int = 0

    @classmethod
    def parse(cls, body: bytes) -> Trex:
        need(body, 24, "trex")
        return cls(*struct.unpack_from(">5I", body, 4))

    def __bytes__(self) -> bytes:
        values = (self.track_id, self.description_index, self.duration, self.size, self.flags)
        return full_box("trex", 0, 0, struct.pack(">5I", *values))


@dataclass
class Mfhd:
    sequence_number: int

    @classmethod
    def parse(cls, body: bytes) -> Mfhd:
        need(body, 8, "mfhd")
        return cls(struct.unpack_from(">I", body, 4)[0])

    def __bytes__(self) -> bytes:
        return full_box("mfhd", 0, 0, struct.pack(">I", self.sequence_number))


TFHD_BASE_OFFSET = 0x1
TFHD_DESCRIPTION = 0x2
TFHD_DURATION = 0x8
TFHD_SIZE = 0x10
TFHD_FLAGS = 0x20
TFHD_DEFAULT_BASE_IS_MOOF = 0x20000


@dataclass
class Tfhd:
    track_id: int
    flags: int = TFHD_DEFAULT_BASE_IS_MOOF
    base_data_offset: int | None = None
    description_index: int | None = None
    duration: int | None = None
    size: int | None = None
    sample_flags: int | None = None

    @classmethod
    def parse(cls, body: bytes) -> Tfhd:
        _, flags = full_header(body, "tfhd")
        need(body, 8, "tfhd")
        rec = cls(struct.unpack_from(">I", body, 4)[0], flags)
        pos = 8
        for bit, name, fmt in (
            (TFHD_BASE_OFFSET, "base_data_offset", ">Q"),
            (TFHD_DESCRIPTION, "description_index", ">I"),
            (TFHD_DURATION, "duration", ">I"),
            (TFHD_SIZE, "size", ">I"),
            (TFHD_FLAGS, "sample_flags", ">I"),
        ):
            if flags & bit:
                step = struct.calcsize(fmt)
                need(body, step, "tfhd", pos)
                setattr(rec, name, struct.unpack_from(fmt, body, pos)[0])
                pos += step
        return rec

    def __bytes__(self) -> bytes:
        flags = self.flags & ~0x3B
        parts = [struct.pack(">I", self.track_id)]
        for bit, value, fmt in (
            (TFHD_BASE_OFFSET, self.base_data_offset, ">Q"),
            (TFHD_DESCRIPTION, self.description_index, ">I"),
            (TFHD_DURATION, self.duration, ">I"),
            (TFHD_SIZE, self.size, ">I"),
            (TFHD_FLAGS, self.sample_flags, ">I"),
        ):
            if value is not None:
                flags |= bit
                parts.append(struct.pack(fmt, value))
        return full_box("tfhd", 0, flags, *parts)


@dataclass
class Tfdt:
    base_media_decode_time: int

    @classmethod
    def parse(cls, body: bytes) -> Tfdt:
        version, _ = full_header(body, "tfdt")
        if version == 1:
            need(body, 12, "tfdt")
            return cls(struct.unpack_from(">Q", body, 4)[0])
        need(body, 8, "tfdt")
        return cls(struct.unpack_from(">I", body, 4)[0])

    def __bytes__(self) -> bytes:
        return full_box("tfdt", 1, 0, struct.pack(">Q", self.base_media_decode_time))


TRUN_DATA_OFFSET = 0x1
TRUN_FIRST_FLAGS = 0x4
TRUN_DURATION = 0x100
TRUN_SIZE = 0x200
TRUN_FLAGS = 0x400
TRUN_CTO = 0x800
SAMPLE_FLAGS_SYNC = 0x02000000  # depends on no other sample
SAMPLE_FLAGS_NON_SYNC = 0x01010000  # depends on others, is a non-sync sample


def is_sync(sample_flags: int) -> bool:
    return not sample_flags & 0x00010000


@dataclass
class Trun:
    """Track run. Per-sample columns are ``None`` when the flags leave them out."""

    data_offset: int | None = None
    first_sample_flags: int | None = None
    durations: list[int] | None = None
    sizes: list[int] | None = None
    flags: list[int] | None = None
    composition_offsets: list[int] | None = None
    count: int = 0
    version: int = 1

    @classmethod
    def parse(cls, body: bytes) -> Trun:
        version, flags = full_header(body, "trun")
        need(body, 8, "trun")
        count = struct.unpack_from(">I", body, 4)[0]
        pos = 8
        rec = cls(count=count, version=version)
        if flags & TRUN_DATA_OFFSET:
            need(body, 4, "trun", pos)
            rec.data_offset = struct.unpack_from(">i", body, pos)[0]
            pos += 4
        if flags & TRUN_FIRST_FLAGS:
            need(body, 4, "trun", pos)
            rec.first_sample_flags = struct.unpack_from(">I", body, pos)[0]
            pos += 4
        cols = [bit for bit in (TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTO) if flags & bit]
        need(body, 4 * len(cols) * count, "trun", pos)
        if not cols:
            return rec
        fmt = ">" + "".join("i" if bit == TRUN_CTO and version else "I" for bit in cols)
        rows = list(struct.iter_unpack(fmt, body[pos : pos + 4 * len(cols) * count]))
        for i, bit in enumerate(cols):
            column = [row[i] for row in rows]
            if bit == TRUN_DURATION:
                rec.durations = column
            elif bit == TRUN_SIZE:
                rec.sizes = column
            elif bit == TRUN_FLAGS:
                rec.flags = column
            else:
                # version 0 offsets are unsigned, but writers put negatives there too
                rec.composition_offsets = [c - (1 << 32) if c >= 1 << 31 else c for c in column]
        return rec

    def __bytes__(self) -> bytes:
        flags = 0
        head = [struct.pack(">I", self.count)]
        if self.data_offset is not None:
            flags |= TRUN_DATA_OFFSET
            head.append(struct.pack(">i", self.data_offset))
        if self.first_sample_flags is not None:
            flags |= TRUN_FIRST_FLAGS
            head.append(struct.pack(">I", self.first_sample_flags))
        cols: list[list[int]] = []
        fmt = ">"
        for bit, col, code in (
            (TRUN_DURATION, self.durations, "I"),
            (TRUN_SIZE, self.sizes, "I"),
            (TRUN_FLAGS, self.flags, "I"),
            (TRUN_CTO, self.composition_offsets, "i"),
        ):
            if col is not None:
                flags |= bit
                cols.append(col)
                fmt += code
        row = struct.Struct(fmt)
        rows = b"".join(row.pack(*values) for values in zip(*cols, strict=True)) if cols else b""
        return full_box("trun", self.version, flags, *head, rows)


@dataclass
class SidxRef:
    reference_type: int
    size: int
    duration: int
    starts_with_sap: bool
    sap_type: int = 1
    sap_delta: int = 0


@dataclass
class Sidx:
    reference_id: int
    timescale: int
    earliest_presentation_time: int
    first_offset: int
    references: list[SidxRef] = field(default_factory=list)

    @classmethod
    def parse(cls, body: bytes) -> Sidx:
        version, _ = full_header(body, "sidx")
        if version == 0:
            need(body, 24, "sidx")
            ref_id, timescale, ept, first = struct.unpack_from(">IIII", body, 4)
            pos = 20
        else:
            need(body, 32, "sidx")
            ref_id, timescale, ept, first = struct.unpack_from(">IIQQ", body, 4)
            pos = 28
        count = struct.unpack_from(">2xH", body, pos)[0]
        pos += 4
        need(body, 12 * count, "sidx", pos)
        refs = []
        for a, b, c in struct.iter_unpack(">III", body[pos : pos + 12 * count]):
            refs.append(
                SidxRef(a >> 31, a & 0x7FFFFFFF, b, bool(c >> 31), (c >> 28) & 7, c & 0x0FFFFFFF)
            )
        return cls(ref_id, timescale, ept, first, refs)

    def __bytes__(self) -> bytes:
        rows = b"".join(
            struct.pack(
                ">III",
                (r.reference_type << 31) | r.size,
                r.duration,
                (int(r.starts_with_sap) << 31) | (r.sap_type << 28) | r.sap_delta,
            )
            for r in self.references
        )
        head = struct.pack(
            ">IIQQ2xH",
            self.reference_id,
            self.timescale,
            self.earliest_presentation_time,
            self.first_offset,
            len(self.references),
        )
        return full_box("sidx", 1, 0, head, rows)


@dataclass
class Emsg:
    scheme_id_uri: str
    value: str
    timescale: int
    presentation_time: int  # v1: absolute; v0: delta
    event_duration: int
    id: int
    message_data: bytes
    version: int = 1

    @classmethod
    def parse(cls, body: bytes) -> Emsg:
        version, _ = full_header(body, "emsg")
        pos = 4
        if version == 1:
            need(body, 20, "emsg", pos)
            timescale, ptime, duration, ident = struct.unpack_from(">IQII", body, pos)
            pos += 20
            scheme, pos = _cstring(body, pos)
            value, pos = _cstring(body, pos)
        else:
            scheme, pos = _cstring(body, pos)
            value, pos = _cstring(body, pos)
            need(body, 16, "emsg", pos)
            timescale, ptime, duration, ident = struct.unpack_from(">IIII", body, pos)
            pos += 16
        return cls(scheme, value, timescale, ptime, duration, ident, bytes(body[pos:]), version)

    def __bytes__(self) -> bytes:
        strings = self.scheme_id_uri.encode() + b"\0" + self.value.encode() + b"\0"
        fixed = struct.pack(
            ">IQII", self.timescale, self.presentation_time, self.event_duration, self.id
        )
        return full_box("emsg", 1, 0, fixed, strings, self.message_data)


def _cstring(body: bytes, pos: int) -> tuple[str, int]:
    end = body.find(b"\0", pos)
    if end < 0:
        raise BoxError("emsg string not terminated")
    return body[pos:end].decode("utf-8", "replace"), end + 1
