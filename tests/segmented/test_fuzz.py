"""Hostile paths and queries straight into the /hls/ and /cmaf/ handlers (in process, one
event loop): every answer is an HTTP status, never an exception."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outputs.cmaf import http as cmaf_http
from outputs.hls import http as hls_http
from outputs.hls.engine import SERVICE
from outputs.http.message import Request

ALLOWED = {200, 304, 400, 404, 405, 415, 503}
pieces = st.one_of(
    st.sampled_from(["index.m3u8", "index.mpd", "init.m4s", "1", "2", "1_2", "2_1", "1_1", "3",
                     "chunk_0.m4s", "chunk_2000.1.m4s", "0_2000.ts", "0_2000.vtt", "..", ""]),
    st.from_regex(r"[0-9_.a-z]{0,12}", fullmatch=True),
    st.integers(-(10**20), 10**20).map(str),
)  # fmt: skip


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    os.environ["MIST_CONTROL"] = "none"
    lp = asyncio.new_event_loop()
    try:
        yield lp
    finally:
        lp.run_until_complete(SERVICE.close())
        lp.close()
        os.environ.pop("MIST_CONTROL", None)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.sampled_from(["hls", "cmaf"]),
    parts=st.lists(pieces, min_size=1, max_size=3),
    query=st.sampled_from(["", "?_HLS_msn=0", "?_HLS_msn=99999999999999999999&_HLS_part=1",
                           "?_HLS_part=2", "?_HLS_msn=x", "?_HLS_skip=YES", "?_HLS_msn=1&_HLS_msn=2"]),
    method=st.sampled_from(["GET", "HEAD", "POST"]),
)  # fmt: skip
def test_handlers_answer_with_a_status(
    loop: asyncio.AbstractEventLoop,
    vod: str,
    prefix: str,
    parts: list[str],
    query: str,
    method: str,
) -> None:
    rest = "/".join(parts)
    req = Request(method, f"/{prefix}/{vod}/{rest}{query}", "HTTP/1.1", {})
    handle = hls_http.handle if prefix == "hls" else cmaf_http.handle
    resp = loop.run_until_complete(asyncio.wait_for(handle(req, vod, rest), 20))
    assert resp.status in ALLOWED, (rest, query, resp.status, resp.body[:200])
