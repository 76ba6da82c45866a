"""The sans-IO request parser: whole, byte by byte, pipelined, limits, junk, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outputs.http.parser import HttpError, Limits, RequestParser

REQ = b"GET /live.flv?video=1&audio=none HTTP/1.1\r\nHost: example\r\nX-A: 1\r\nx-a: 2\r\n\r\n"


def test_whole_request() -> None:
    [req] = RequestParser().feed(REQ)
    assert (req.method, req.path, req.version) == ("GET", "/live.flv", "HTTP/1.1")
    assert req.query == {"video": "1", "audio": "none"}
    assert req.headers["host"] == "example"
    assert req.headers["x-a"] == "1, 2"
    assert req.keep_alive


def test_byte_by_byte_equals_whole() -> None:
    parser = RequestParser()
    out = []
    for i in range(len(REQ)):
        out += parser.feed(REQ[i : i + 1])
    assert len(out) == 1
    assert out[0] == RequestParser().feed(REQ)[0]


def test_pipelined_with_body_and_stray_crlf() -> None:
    data = b"POST /whip/x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\r\nGET /a.ts HTTP/1.0\r\n\r\n"
    reqs = RequestParser().feed(data)
    assert [r.method for r in reqs] == ["POST", "GET"]
    assert reqs[0].body == b"hello"
    assert not reqs[1].keep_alive  # HTTP/1.0 without keep-alive


def test_partial_body_waits() -> None:
    p = RequestParser()
    assert p.feed(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab") == []
    assert p.in_request
    [r] = p.feed(b"cdGET")
    assert r.body == b"abcd"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 400),
        (b"GET /x\r\n\r\n", 400),
        (b"GET /x HTTP/2.0\r\n\r\n", 505),
        (b"BREW /x HTTP/1.1\r\n\r\n", 501),
        (b"GET /x HTTP/1.1\r\nbad header\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"POST /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"GET /x HTTP/1.1\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET /x HTTP/1.1\r\n" + b"X: a\r\n" * 200 + b"\r\n", 431),
    ],
)
def test_bad_requests(data: bytes, status: int) -> None:
    with pytest.raises(HttpError) as err:
        RequestParser().feed(data)
    assert err.value.status == status


def test_header_limit_without_end() -> None:
    p = RequestParser(Limits(max_header_bytes=1024))
    with pytest.raises(HttpError) as err:
        for _ in range(100):
            p.feed(b"X-Long: " + b"y" * 50 + b"\r\n" if p.pending else b"GET / HTTP/1.1\r\n")
    assert err.value.status == 431


def test_absolute_form_target() -> None:
    [r] = RequestParser().feed(b"GET http://h:8080/s.mp4?start=5 HTTP/1.1\r\n\r\n")
    assert r.path == "/s.mp4"
    assert r.query == {"start": "5"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_fuzz_only_http_errors(data: bytes, step: int) -> None:
    p = RequestParser(Limits(max_line=200, max_header_bytes=300, max_body=100))
    try:
        for i in range(0, len(data), step):
            p.feed(data[i : i + step])
    except HttpError as exc:
        assert 400 <= exc.status < 600
