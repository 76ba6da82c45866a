"""AMF0 encode/decode and AMF3 decode (Action Message Format, as RTMP and FLV use it).

Python values map to AMF0 as follows: ``float``/``int`` -> number, ``bool`` -> boolean,
``str`` -> string (long string past 65535 bytes), ``dict`` -> object, :class:`EcmaArray`
-> ECMA array, ``list`` -> strict array, ``None`` -> null, :data:`UNDEFINED` -> undefined,
:class:`AmfDate` -> date. Decoding returns the same types, so values round-trip.

AMF3 (used by clients that send command messages of type 17, and inside AMF0 through the
"switch to AMF3" marker) is decoded only: integers, doubles, strings, arrays, anonymous
and typed objects, dates and byte arrays, with the reference tables the format requires.

Nesting is limited to :data:`MAX_DEPTH` levels so hostile input cannot exhaust the stack.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from mistcodecs.errors import FormatError, Truncated

MAX_DEPTH = 64

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")

# AMF0 type markers
NUMBER, BOOLEAN, STRING, OBJECT, MOVIECLIP, NULL, UNDEFINED_MARKER, REFERENCE = range(8)
ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, DATE, LONG_STRING, UNSUPPORTED = range(8, 14)
XML_DOCUMENT, TYPED_OBJECT, AVMPLUS = 15, 16, 17


class AmfError(FormatError):
    """AMF data that cannot be decoded."""


class _Undefined:
    """The AMF ``undefined`` value (distinct from ``null`` = ``None``)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED = _Undefined()


class EcmaArray(dict[str, Any]):
    """An associative array (AMF0 marker 8); ``onMetaData`` usually comes as one."""


@dataclass(frozen=True)
class AmfDate:
    """Milliseconds since the Unix epoch; ``tz`` is the (unused, usually 0) offset field."""

    ms: float
    tz: int = 0


@dataclass(frozen=True)
class TypedObject:
    """An object with a class name (AMF0 marker 16 or an AMF3 sealed/dynamic object)."""

    class_name: str
    fields: dict[str, Any]


# ---------------------------------------------------------------------------- AMF0 encode


def encode(value: Any) -> bytes:
    """Encode one value as AMF0."""
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def encode_all(*values: Any) -> bytes:
    """Encode a sequence of values back to back (an RTMP command body)."""
    out = bytearray()
    for v in values:
        _encode(v, out, 0)
    return bytes(out)


def _encode_key(key: str, out: bytearray) -> None:
    raw = key.encode()
    if len(raw) > 0xFFFF:
        raise AmfError(f"AMF0 property name too long ({len(raw)} bytes)")
    out += _U16.pack(len(raw))
    out += raw


def _encode_props(d: dict[str, Any], out: bytearray, depth: int) -> None:
    for k, v in d.items():
        _encode_key(str(k), out)
        _encode(v, out, depth + 1)
    out += b"\x00\x00\x09"


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AmfError(f"AMF0 value nested deeper than {MAX_DEPTH}")
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out += bytes((BOOLEAN, 1 if value else 0))
    elif isinstance(value, int | float):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode()
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += _U16.pack(len(raw))
        else:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, EcmaArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_props(value, out, depth)
    elif isinstance(value, TypedObject):
        out.append(TYPED_OBJECT)
        _encode_key(value.class_name, out)
        _encode_props(value.fields, out, depth)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_props(value, out, depth)
    elif isinstance(value, list | tuple):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for v in value:
            _encode(v, out, depth + 1)
    elif isinstance(value, AmfDate):
        out.append(DATE)
        out += _DATE.pack(value.ms, value.tz)
    else:
        raise AmfError(f"cannot encode {type(value).__name__} as AMF0")


# ---------------------------------------------------------------------------- AMF0 decode


def decode(data: bytes | memoryview, pos: int = 0) -> tuple[Any, int]:
    """Decode one AMF0 value at ``pos``; returns ``(value, next_pos)``."""
    return _Amf0Reader(memoryview(data)).value(pos, 0)


def decode_all(data: bytes | memoryview) -> list[Any]:
    """Decode AMF0 values until the data ends (an RTMP command or FLV script body)."""
    reader = _Amf0Reader(memoryview(data))
    values = []
    pos = 0
    while pos < len(data):
        value, pos = reader.value(pos, 0)
        values.append(value)
    return values


class _Amf0Reader:
    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.refs: list[Any] = []  # complex objects, for marker 7 references

    def need(self, pos: int, n: int, what: str) -> None:
        if pos + n > len(self.buf):
            raise Truncated(
                f"AMF0 {what} truncated at byte {pos} (need {n}, have {len(self.buf) - pos})"
            )

    def utf8(self, pos: int, n: int, what: str) -> str:
        self.need(pos, n, what)
        try:
            return str(self.buf[pos : pos + n], "utf-8")
        except UnicodeDecodeError:
            # Real encoders sometimes emit Latin-1; keep going rather than refusing the stream.
            return str(self.buf[pos : pos + n], "latin-1")

    def short_string(self, pos: int, what: str) -> tuple[str, int]:
        self.need(pos, 2, what)
        (n,) = _U16.unpack_from(self.buf, pos)
        return self.utf8(pos + 2, n, what), pos + 2 + n

    def props(self, pos: int, target: dict[str, Any], depth: int) -> int:
        while True:
            key, pos = self.short_string(pos, "property name")
            self.need(pos, 1, "property value")
            if key == "" and self.buf[pos] == OBJECT_END:
                return pos + 1
            target[key], pos = self.value(pos, depth + 1)

    def value(self, pos: int, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise AmfError(f"AMF0 value nested deeper than {MAX_DEPTH} at byte {pos}")
        self.need(pos, 1, "type marker")
        marker = self.buf[pos]
        pos += 1
        if marker == NUMBER:
            self.need(pos, 8, "number")
            return _DOUBLE.unpack_from(self.buf, pos)[0], pos + 8
        if marker == BOOLEAN:
            self.need(pos, 1, "boolean")
            return self.buf[pos] != 0, pos + 1
        if marker == STRING:
            return self.short_string(pos, "string")
        if marker in (LONG_STRING, XML_DOCUMENT):
            self.need(pos, 4, "long string length")
            (n,) = _U32.unpack_from(self.buf, pos)
            return self.utf8(pos + 4, n, "long string"), pos + 4 + n
        if marker == NULL:
            return None, pos
        if marker in (UNDEFINED_MARKER, UNSUPPORTED):
            return UNDEFINED, pos
        if marker == OBJECT:
            obj: dict[str, Any] = {}
            self.refs.append(obj)
            return obj, self.props(pos, obj, depth)
        if marker == TYPED_OBJECT:
            name, pos = self.short_string(pos, "class name")
            fields: dict[str, Any] = {}
            typed = TypedObject(name, fields)
            self.refs.append(typed)
            return typed, self.props(pos, fields, depth)
        if marker == ECMA_ARRAY:
            self.need(pos, 4, "ECMA array count")
            arr = EcmaArray()
            self.refs.append(arr)
            return arr, self.props(pos + 4, arr, depth)
        if marker == STRICT_ARRAY:
            self.need(pos, 4, "strict array count")
            (count,) = _U32.unpack_from(self.buf, pos)
            pos += 4
            # Each element takes at least one byte: refuse counts the data cannot hold.
            if count > len(self.buf) - pos:
                raise Truncated(f"AMF0 strict array of {count} items truncated at byte {pos}")
            items: list[Any] = []
            self.refs.append(items)
            for _ in range(count):
                item, pos = self.value(pos, depth + 1)
                items.append(item)
            return items, pos
        if marker == DATE:
            self.need(pos, 10, "date")
            ms, tz = _DATE.unpack_from(self.buf, pos)
            return AmfDate(ms, tz), pos + 10
        if marker == REFERENCE:
            self.need(pos, 2, "reference")
            (idx,) = _U16.unpack_from(self.buf, pos)
            if idx >= len(self.refs):
                raise AmfError(f"AMF0 reference {idx} to unknown object at byte {pos}")
            return self.refs[idx], pos + 2
        if marker == AVMPLUS:
            return Amf3Reader(self.buf).value(pos, depth + 1)
        if marker == OBJECT_END:
            raise AmfError(f"AMF0 object end marker outside an object at byte {pos - 1}")
        raise AmfError(f"unknown AMF0 type marker 0x{marker:02x} at byte {pos - 1}")


# ---------------------------------------------------------------------------- AMF3 decode


def decode_amf3(data: bytes | memoryview, pos: int = 0) -> tuple[Any, int]:
    """Decode one AMF3 value at ``pos``; returns ``(value, next_pos)``."""
    return Amf3Reader(memoryview(data)).value(pos, 0)


@dataclass
class _Traits:
    class_name: str
    dynamic: bool
    externalizable: bool
    names: list[str]


class Amf3Reader:
    """One AMF3 decoding context: the string, object and traits reference tables."""

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.strings: list[str] = []
        self.objects: list[Any] = []
        self.traits: list[_Traits] = []

    def need(self, pos: int, n: int, what: str) -> None:
        if pos + n > len(self.buf):
            raise Truncated(f"AMF3 {what} truncated at byte {pos}")

    def u29(self, pos: int) -> tuple[int, int]:
        result = 0
        for i in range(4):
            self.need(pos, 1, "integer")
            b = self.buf[pos]
            pos += 1
            if i == 3:
                return (result << 8) | b, pos
            result = (result << 7) | (b & 0x7F)
            if not b & 0x80:
                return result, pos
        raise AssertionError("unreachable")

    def string(self, pos: int) -> tuple[str, int]:
        ref, pos = self.u29(pos)
        if not ref & 1:
            idx = ref >> 1
            if idx >= len(self.strings):
                raise AmfError(f"AMF3 string reference {idx} unknown at byte {pos}")
            return self.strings[idx], pos
        n = ref >> 1
        self.need(pos, n, "string")
        text = str(self.buf[pos : pos + n], "utf-8", "replace")
        if text:  # the empty string is never added to the table
            self.strings.append(text)
        return text, pos + n

    def obj_ref(self, ref: int, pos: int) -> Any:
        idx = ref >> 1
        if idx >= len(self.objects):
            raise AmfError(f"AMF3 object reference {idx} unknown at byte {pos}")
        return self.objects[idx]

    def value(self, pos: int, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise AmfError(f"AMF3 value nested deeper than {MAX_DEPTH} at byte {pos}")
        self.need(pos, 1, "type marker")
        marker = self.buf[pos]
        pos += 1
        if marker == 0x00:
            return UNDEFINED, pos
        if marker == 0x01:
            return None, pos
        if marker in (0x02, 0x03):
            return marker == 0x03, pos
        if marker == 0x04:
            n, pos = self.u29(pos)
            return (n - (1 << 29) if n & (1 << 28) else n), pos
        if marker == 0x05:
            self.need(pos, 8, "double")
            return _DOUBLE.unpack_from(self.buf, pos)[0], pos + 8
        if marker == 0x06:
            return self.string(pos)
        if marker in (0x07, 0x0B, 0x0C):  # XML document, XML, ByteArray
            ref, pos = self.u29(pos)
            if not ref & 1:
                return self.obj_ref(ref, pos), pos
            n = ref >> 1
            self.need(pos, n, "byte data")
            raw = bytes(self.buf[pos : pos + n])
            val: Any = raw if marker == 0x0C else raw.decode("utf-8", "replace")
            self.objects.append(val)
            return val, pos + n
        if marker == 0x08:
            ref, pos = self.u29(pos)
            if not ref & 1:
                return self.obj_ref(ref, pos), pos
            self.need(pos, 8, "date")
            date = AmfDate(_DOUBLE.unpack_from(self.buf, pos)[0])
            self.objects.append(date)
            return date, pos + 8
        if marker == 0x09:
            return self.array(pos, depth)
        if marker == 0x0A:
            return self.object(pos, depth)
        raise AmfError(f"unsupported AMF3 type marker 0x{marker:02x} at byte {pos - 1}")

    def array(self, pos: int, depth: int) -> tuple[Any, int]:
        ref, pos = self.u29(pos)
        if not ref & 1:
            return self.obj_ref(ref, pos), pos
        count = ref >> 1
        assoc = EcmaArray()
        dense: list[Any] = []
        self.objects.append(dense)
        slot = len(self.objects) - 1
        while True:
            key, pos = self.string(pos)
            if key == "":
                break
            assoc[key], pos = self.value(pos, depth + 1)
        if count > len(self.buf) - pos:
            raise Truncated(f"AMF3 array of {count} items truncated at byte {pos}")
        for _ in range(count):
            item, pos = self.value(pos, depth + 1)
            dense.append(item)
        if assoc:
            for i, item in enumerate(dense):
                assoc[str(i)] = item
            self.objects[slot] = assoc
            return assoc, pos
        return dense, pos

    def object(self, pos: int, depth: int) -> tuple[Any, int]:
        ref, pos = self.u29(pos)
        if not ref & 1:
            return self.obj_ref(ref, pos), pos
        if not ref & 2:
            idx = ref >> 2
            if idx >= len(self.traits):
                raise AmfError(f"AMF3 traits reference {idx} unknown at byte {pos}")
            traits = self.traits[idx]
        else:
            class_name, pos = self.string(pos)
            names = []
            for _ in range(ref >> 4):
                name, pos = self.string(pos)
                names.append(name)
            traits = _Traits(class_name, bool(ref & 8), bool(ref & 4), names)
            self.traits.append(traits)
        if traits.externalizable:
            raise AmfError(
                f"AMF3 externalizable class {traits.class_name!r} at byte {pos} unsupported"
            )
        fields: dict[str, Any] = {}
        result: Any = TypedObject(traits.class_name, fields) if traits.class_name else fields
        self.objects.append(result)
        for name in traits.names:
            fields[name], pos = self.value(pos, depth + 1)
        if traits.dynamic:
            while True:
                key, pos = self.string(pos)
                if key == "":
                    break
                fields[key], pos = self.value(pos, depth + 1)
        return result, pos
