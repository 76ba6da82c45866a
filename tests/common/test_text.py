import pytest

from common.text import is_decimal
from mistcodecs.errors import FormatError
from mistcodecs.hls import parse_directives, parse_media_playlist


def test_is_decimal_takes_ascii_digits_only() -> None:
    assert is_decimal("0123")
    assert not is_decimal("")
    assert not is_decimal("1²")
    assert not is_decimal("١٢")  # Arabic-Indic digits: isdigit() says yes, int() would too


def test_playlist_parsers_refuse_unicode_digits_with_format_errors() -> None:
    with pytest.raises(FormatError):
        parse_directives("_HLS_msn=²")
    with pytest.raises(FormatError):
        parse_media_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:²\n#EXTINF:1.0,\na.ts\n")
