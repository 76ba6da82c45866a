"""Routing from path to route record, and the format registry."""

from __future__ import annotations

import pytest

from outputs.formats import REGISTRY, format_for_ext, register_prefix
from outputs.http.message import Request, Response
from outputs.http.routes import (
    ErrorRoute,
    FormatRoute,
    InfoRoute,
    PlayerRoute,
    PrefixRoute,
    StaticRoute,
    route,
)


@pytest.mark.parametrize(
    "ext", ["mp4", "fmp4", "flv", "ts", "mkv", "webm", "ogg", "wav", "mp3", "aac"]
)
def test_progressive_formats(ext: str) -> None:
    r = route(f"/live.{ext}")
    assert isinstance(r, FormatRoute)
    assert r.stream == "live"
    assert r.ext == ext
    assert r.spec is format_for_ext(ext)


def test_stream_names_sanitised_and_dots_kept() -> None:
    r = route("/My.Stream.flv")
    assert isinstance(r, FormatRoute) and r.stream == "my.stream"
    r = route("/vod+Folder file.mp4")
    assert isinstance(r, FormatRoute) and r.stream == "vod+Folder file"


def test_info_player_static() -> None:
    assert route("/json_live.js") == InfoRoute("live", False)
    assert route("/info_live.js") == InfoRoute("live", True)
    assert route("/live.html") == PlayerRoute("live")
    assert route("/crossdomain.xml") == StaticRoute("crossdomain.xml")
    assert route("/clientaccesspolicy.xml") == StaticRoute("clientaccesspolicy.xml")
    assert route("/favicon.ico") == StaticRoute("favicon.ico")


@pytest.mark.parametrize(
    "path", ["/../etc.flv", "/..flv", "/.hidden.flv", "/json_...js", "/a/../b.flv"]
)
def test_path_tricks_rejected(path: str) -> None:
    r = route(path)
    assert isinstance(r, ErrorRoute) and r.status == 404


def test_unknown_format_is_415_and_names_known_ones() -> None:
    r = route("/live.xyz")
    assert isinstance(r, ErrorRoute) and r.status == 415
    assert "flv" in r.message and "xyz" in r.message


def test_reserved_prefixes() -> None:
    assert route("/hls/live/index.m3u8") == PrefixRoute("hls", "live", "index.m3u8")
    assert route("/cmaf/live/v1/chunk_0.m4s") == PrefixRoute("cmaf", "live", "v1/chunk_0.m4s")
    assert route("/whep/live") == PrefixRoute("whep", "live", "")
    assert isinstance(route("/hls/../x/index.m3u8"), ErrorRoute)
    assert isinstance(route("/nope/live/x"), ErrorRoute)


def test_registered_prefix() -> None:
    async def handler(req: Request, stream: str, rest: str) -> Response:
        return Response(200, {}, f"{stream}:{rest}".encode())

    register_prefix("testpfx", handler)
    try:
        assert route("/testpfx/abc/x/y") == PrefixRoute("testpfx", "abc", "x/y")
    finally:
        del REGISTRY.prefixes["testpfx"]
