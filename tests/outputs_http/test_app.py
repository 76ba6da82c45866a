"""The HttpApp handler in-process: the plug-in API other outputs (HLS, CMAF, WebRTC) use."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from outputs.formats import REGISTRY, SourceEntry, register_prefix, register_source
from outputs.http.app import HttpApp
from outputs.http.info import status_json
from outputs.http.message import Request, Response
from shm import StreamNotFound, StreamReader, StreamWriter
from shm.model import StreamState

from .conftest import unique


@pytest.fixture
def plugin() -> Iterator[list[tuple[str, str]]]:
    calls: list[tuple[str, str]] = []

    async def handle(req: Request, stream: str, rest: str) -> Response:
        calls.append((stream, rest))
        reader = await req.app.find_stream(stream, wait=False)
        if reader is None:
            return Response(404, {}, b"offline")
        try:
            tracks = sorted(reader.meta.tracks)
        finally:
            reader.close()
        return Response(200, {"Content-Type": "text/plain"}, repr(tracks).encode())

    register_prefix("plugtest", handle, "Plug-in test")
    entry = SourceEntry(
        "html5/application/x-plugtest", "Plug-in test", 9, "/plugtest/{s}/index.m3u8",
        frozenset({"H264"}), frozenset({"AAC"}),
    )  # fmt: skip
    register_source(entry)
    try:
        yield calls
    finally:
        del REGISTRY.prefixes["plugtest"]
        REGISTRY.sources.remove(entry)


async def test_prefix_plugin_gets_stream_and_reader(
    plugin: list[tuple[str, str]], vod_stream: str
) -> None:
    app = HttpApp(StreamReader, StreamNotFound, use_controller=False)
    resp = await app(Request("GET", f"/plugtest/{vod_stream}/1_2/index.m3u8", "HTTP/1.1", {}))
    assert (resp.status, resp.body) == (200, b"[1, 2]")
    assert plugin == [(vod_stream, "1_2/index.m3u8")]
    resp = await app(Request("GET", "/plugtest/missing/index.m3u8", "HTTP/1.1", {}))
    assert resp.status == 404
    reader = StreamReader(vod_stream)
    try:
        meta = reader.meta
        info = status_json(vod_stream, meta, meta.state, meta.progress, "http://h:1")
    finally:
        reader.close()
    mine = [s for s in info["source"] if s["type"] == "html5/application/x-plugtest"]
    assert mine and mine[0]["url"] == f"http://h:1/plugtest/{vod_stream}/index.m3u8"


async def test_unregistered_prefixes_answer_415_and_501() -> None:
    app = HttpApp(StreamReader, StreamNotFound, use_controller=False)
    assert (await app(Request("GET", "/dynamic/x/manifest.f4m", "HTTP/1.1", {}))).status == 415
    if "whip" not in REGISTRY.prefixes:  # until a WebRTC output registers itself
        assert (await app(Request("POST", "/whip/x", "HTTP/1.1", {}))).status == 501
    assert (await app(Request("POST", "/x.flv", "HTTP/1.1", {}))).status == 405
    resp = await app(Request("OPTIONS", "/x.flv", "HTTP/1.1", {}))
    assert resp.status == 204 and b"\r\nContent-Length:" not in resp.head_bytes(True)


async def test_json_while_indexing_reports_progress() -> None:
    name = unique("boot")
    writer = StreamWriter(name, live=False)
    try:
        writer.set_state(StreamState.BOOT, 42)
        app = HttpApp(StreamReader, StreamNotFound, use_controller=False, track_wait_s=0.3)
        resp = await app(Request("GET", f"/json_{name}.js", "HTTP/1.1", {"host": "h"}))
        assert resp.status == 200
        assert json.loads(resp.body) == {
            "error": "Stream is booting",
            "on_error": "Stream is booting",
            "perc": 42,
        }
        resp = await app(Request("GET", f"/{name}.flv", "HTTP/1.1", {}))
        assert resp.status == 503  # no playable data (yet)
    finally:
        writer.close()
