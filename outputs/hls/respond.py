"""HTTP answers shared by the HLS and CMAF handlers: cache headers, ETags, single flight.

Segments and parts are named by their media times and never change once made, so a CDN
may keep them (``immutable``; for a year in VoD, twice the DVR window live); live playlists change every part or segment and get a
max-age of one second (blocking reloads, whose URL names the state they wait for, may
be kept longer, as rfc8216bis 6.2.5.2 suggests). Every body carries a strong ETag and
``If-None-Match`` is answered with 304. CORS headers are added by MistOutHTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from common import sessions
from mistcodecs.hls import with_query
from outputs.hls.engine import CACHE, MediaTimeout, StreamGone, StreamSegments
from outputs.http.message import Request, Response, error_response

M3U8 = "application/vnd.apple.mpegurl"
MPD = "application/dash+xml"
TS = "video/mp2t"
M4S = "video/mp4"
VTT = "text/vtt; charset=utf-8"
IMMUTABLE = "public, max-age=31536000, immutable"

_inflight: dict[Any, asyncio.Future[bytes]] = {}
# ETags of cached bodies, by cache key: hashing a segment once, not on every request
_tags: dict[Any, tuple[int, str]] = {}


def etag(body: bytes, key: Any = None) -> str:
    if key is not None:
        known = _tags.get(key)
        if known is not None and known[0] == id(body):
            return known[1]
    tag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    if key is not None:
        if len(_tags) > 4 * len(CACHE) + 1024:
            _tags.clear()  # entries of evicted bodies; cheap to recompute
        _tags[key] = (id(body), tag)
    return tag


def body_response(
    req: Request, body: bytes, content_type: str, cache_control: str, key: Any = None
) -> Response:
    tag = etag(body, key)
    headers = {"Content-Type": content_type, "Cache-Control": cache_control, "ETag": tag}
    match = req.headers.get("if-none-match", "")
    if match and (match.strip() == "*" or tag in [m.strip() for m in match.split(",")]):
        return Response(304, headers)
    return Response(200, headers, body)


def session_query(req: Request) -> str:
    """``tkn=<token>`` (or ``sid=``/``sessId=``/``jwt=``, as the request named it) when the
    playlist request carried a session token in its URL, else "": MistServer appends it
    to the URLs it generates (tknMode bit 4), so every playlist, segment and part request
    of one HLS/DASH viewer counts as one session. Cookie and header tokens come back by
    themselves and are not copied into URLs."""
    query = req.query
    key = next((k for k in sessions.TOKEN_PARAMS if query.get(k)), None)
    return f"{key}={quote(query[key], safe='')}" if key else ""


def playlist_response(
    req: Request, text: str, content_type: str, seg: StreamSegments, blocking: bool = False
) -> Response:
    if content_type == M3U8:
        text = with_query(text, session_query(req))
    if not seg.live or seg.ended:
        cache = "public, max-age=60"
    elif blocking:
        cache = f"public, max-age={6 * seg.target_s}"
    else:
        cache = "public, max-age=1"
    return body_response(req, text.encode(), content_type, cache)


def media_response(
    req: Request, seg: StreamSegments, body: bytes, content_type: str, key: Any = None
) -> Response:
    """A segment, part or init section (``key``: its cache key, to reuse its ETag).

    Live names are media times, which a stream started afresh (not resumed) reuses:
    there the lifetime is bounded by the DVR window instead of a year."""
    if seg.live:
        keep = max(60, 2 * seg.dvr_ms // 1000)
        return body_response(req, body, content_type, f"public, max-age={keep}, immutable", key)
    return body_response(req, body, content_type, IMMUTABLE, key)


async def cached(key: Any, produce: Callable[[], Awaitable[bytes]]) -> bytes:
    """The cached bytes for ``key``; concurrent misses share one ``produce()`` call."""
    hit = CACHE.get(key)
    if hit is not None:
        return hit
    pending = _inflight.get(key)
    if pending is not None:
        return await asyncio.shield(pending)
    fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    _inflight[key] = fut
    try:
        body = await produce()
        CACHE.put(key, body)
        fut.set_result(body)
        return body
    except BaseException as exc:
        fut.set_exception(exc)
        fut.exception()
        raise
    finally:
        _inflight.pop(key, None)


def prefetch(key: Any, make: Callable[[], Awaitable[bytes]]) -> None:
    """Run ``make()`` (which caches under ``key`` itself) in the background, unless
    ``key`` is cached or being made already."""
    if key in CACHE or key in _inflight:
        return
    task = asyncio.ensure_future(make())
    task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)


def not_found(what: str) -> Response:
    return error_response(404, f"{what} not found")


def method_check(req: Request) -> Response | None:
    if req.method not in ("GET", "HEAD"):
        return error_response(405, f"{req.method} is not allowed here")
    return None


Handler = Callable[[Request, str, str], Awaitable[Response]]


def prefix_handler(inner: Handler) -> Handler:
    """A ``/hls/`` or ``/cmaf/`` handler: GET/HEAD only; a stream that left the bus is a
    404, media the bus did not deliver in time a 503."""

    async def handle(req: Request, stream: str, rest: str) -> Response:
        bad = method_check(req)
        if bad is not None:
            return bad
        try:
            return await inner(req, stream, rest)
        except StreamGone as exc:
            return error_response(404, str(exc))
        except MediaTimeout as exc:
            return error_response(503, str(exc))

    return handle
