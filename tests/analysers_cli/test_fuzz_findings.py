"""Bugs that ``python -m bench fuzz`` found, kept as reproducers (strict xfail until fixed)."""

from __future__ import annotations

import pytest

from common.errors import MediaError
from outputs.http.parser import RequestParser


@pytest.mark.xfail(
    strict=True,
    raises=ValueError,
    reason="outputs/http/parser.py checks Content-Length with str.isdigit(), which accepts "
    "Unicode digits such as '²' (a latin-1 0xB2 byte); int() then raises a bare ValueError "
    "instead of HttpError 400 (found by the atheris run of bench fuzz, target http_request)",
)
@pytest.mark.parametrize("length", [b"\xb2", b"12\xb23"])
def test_http_content_length_with_a_superscript_digit(length: bytes) -> None:
    request = b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n"
    with pytest.raises(MediaError, match="Content-Length"):
        RequestParser().feed(request)
