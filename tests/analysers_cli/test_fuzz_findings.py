"""Bugs that ``python -m bench fuzz`` found, kept as regression tests."""

from __future__ import annotations

import pytest

from common.errors import MediaError
from outputs.http.parser import RequestParser


@pytest.mark.parametrize("length", [b"\xb2", b"12\xb23"])
def test_http_content_length_with_a_superscript_digit(length: bytes) -> None:
    request = b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n"
    with pytest.raises(MediaError, match="Content-Length"):
        RequestParser().feed(request)
