"""AMF0 encode/decode and AMF3 decode."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mistcodecs import amf
from mistcodecs.errors import FormatError, Truncated

SAMPLE = [
    "connect",
    1.0,
    {
        "app": "live",
        "tcUrl": "rtmp://h/live",
        "fpad": False,
        "capabilities": 15.0,
        "nested": {"x": None},
    },
    None,
    amf.UNDEFINED,
    amf.EcmaArray(duration=2.5, width=640.0),
    [1.0, "two", True, [None]],
    amf.AmfDate(1_700_000_000_000.0),
    "x" * 70000,  # long string
    amf.TypedObject("com.example.Thing", {"a": 1.0}),
]


def test_round_trip() -> None:
    data = amf.encode_all(*SAMPLE)
    assert amf.decode_all(data) == SAMPLE
    assert type(amf.decode_all(amf.encode(amf.EcmaArray(a=1.0)))[0]) is amf.EcmaArray


def test_known_bytes() -> None:
    assert amf.encode(1.5) == b"\x00" + struct.pack(">d", 1.5)
    assert amf.encode("ab") == b"\x02\x00\x02ab"
    assert amf.encode(True) == b"\x01\x01"
    assert amf.encode({"a": None}) == b"\x03\x00\x01a\x05\x00\x00\x09"
    assert amf.encode(amf.EcmaArray(a=None)) == b"\x08\x00\x00\x00\x01\x00\x01a\x05\x00\x00\x09"


def test_every_truncation_is_reported() -> None:
    data = amf.encode_all(*SAMPLE[:8])
    for cut in range(1, len(data)):
        try:
            values = amf.decode_all(data[:cut])
        except Truncated as exc:
            assert "truncated at byte" in str(exc)
        else:  # a cut between two values is a valid shorter sequence
            assert values == SAMPLE[: len(values)]


def test_garbage_and_limits() -> None:
    with pytest.raises(FormatError, match="unknown AMF0 type marker 0x0e at byte 0"):
        amf.decode(b"\x0e")
    with pytest.raises(FormatError, match="object end"):
        amf.decode(b"\x09")
    with pytest.raises(FormatError, match="reference 3"):
        amf.decode(b"\x07\x00\x03")
    deep = b"\x0a\x00\x00\x00\x01" * (amf.MAX_DEPTH + 5) + b"\x05"
    with pytest.raises(FormatError, match="nested deeper"):
        amf.decode(deep)
    with pytest.raises(Truncated):
        amf.decode(b"\x0a\xff\xff\xff\xff")  # claims 4 billion items
    with pytest.raises(FormatError):
        amf.encode(object())
    nested: list = []
    for _ in range(amf.MAX_DEPTH + 2):
        nested = [nested]
    with pytest.raises(FormatError):
        amf.encode(nested)


def test_reference_and_date() -> None:
    data = b"\x0a\x00\x00\x00\x02" + amf.encode({"k": 1.0}) + b"\x07\x00\x01"
    value, end = amf.decode(data)
    assert value == [{"k": 1.0}, {"k": 1.0}] and end == len(data)
    assert amf.decode(amf.encode(amf.AmfDate(5.0, 0)))[0] == amf.AmfDate(5.0, 0)


def _u29(n: int) -> bytes:
    assert n < 0x4000
    return bytes((0x80 | (n >> 7), n & 0x7F)) if n >= 0x80 else bytes((n,))


def _s3(text: str) -> bytes:
    raw = text.encode()
    return _u29(len(raw) << 1 | 1) + raw


def test_amf3_values() -> None:
    assert amf.decode_amf3(b"\x04\x05")[0] == 5
    assert amf.decode_amf3(b"\x04\xff\xff\xff\xff")[0] == -1  # 29-bit two's complement
    assert amf.decode_amf3(b"\x04\x81\x00")[0] == 128
    assert amf.decode_amf3(b"\x05" + struct.pack(">d", 2.5))[0] == 2.5
    assert amf.decode_amf3(b"\x03")[0] is True
    # dynamic anonymous object {app: "live", n: 1} then a string reference to "live"
    obj = (
        b"\x0a\x0b"
        + _s3("")
        + _s3("app")
        + b"\x06"
        + _s3("live")
        + _s3("n")
        + b"\x04\x01"
        + _s3("")
    )
    arr = (
        b"\x09" + _u29(2 << 1 | 1) + _s3("") + obj + b"\x06\x02"
    )  # dense array [obj, "live"(ref 1)]
    value, end = amf.decode_amf3(arr)
    assert value == [{"app": "live", "n": 1}, "live"] and end == len(arr)
    # sealed typed object with one member, then a traits reference reusing it
    typed = b"\x0a\x13" + _s3("T") + _s3("a") + b"\x04\x02"
    second = b"\x0a\x01" + b"\x04\x03"
    value, _ = amf.decode_amf3(b"\x09\x05\x01" + typed + second)
    assert value == [amf.TypedObject("T", {"a": 2}), amf.TypedObject("T", {"a": 3})]
    # AMF0 switching to AMF3 for one value
    assert amf.decode_all(amf.encode("x") + b"\x11\x06" + _s3("y")[0:0] + b"\x03y") == ["x", "y"]
    with pytest.raises(FormatError, match="string reference"):
        amf.decode_amf3(b"\x06\x08")
    with pytest.raises(Truncated):
        amf.decode_amf3(b"\x06\x0bab")


json_like = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_like)
def test_round_trip_property(value: object) -> None:
    assert amf.decode(amf.encode(value))[0] == value


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_only_format_errors(data: bytes) -> None:
    for decode in (amf.decode_all, lambda d: amf.decode_amf3(d)):
        try:
            decode(data)
        except FormatError:
            pass
