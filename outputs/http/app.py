"""MistOutHTTP's request handler: route, find the stream on the bus, answer.

Live progressive requests join the shared :class:`~outputs.fanout.FanoutHub` (mux once,
send many); VoD requests (and live requests with ``?start=``, i.e. DVR) get their own
reader and muxer (:mod:`outputs.http.vod`). When a stream is not on the bus the
controller is asked to start its input (:func:`common.control.ensure_input`); without a
controller the stream is simply offline (404).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from common import sessions
from common.errors import UsageError
from mistcodecs.errors import FormatError
from outputs.fanout import FanoutHub
from outputs.formats import REGISTRY, FormatSpec, FormatUnavailable
from outputs.http import info, vod
from outputs.http.message import Request, Response, Sink, error_response, text_response
from outputs.http.routes import (
    RESERVED_PREFIXES,
    ErrorRoute,
    FormatRoute,
    InfoRoute,
    PlayerRoute,
    PrefixRoute,
    StaticRoute,
    route,
)
from outputs.selectors import BadQuery, parse_query
from shm.model import StreamState, TrackMeta

log = logging.getLogger(__name__)

CROSSDOMAIN = (
    '<?xml version="1.0"?>\n<!DOCTYPE cross-domain-policy SYSTEM '
    '"http://www.adobe.com/xml/dtds/cross-domain-policy.dtd">\n'
    '<cross-domain-policy><allow-access-from domain="*" />'
    '<site-control permitted-cross-domain-policies="all"/></cross-domain-policy>\n'
)
CLIENTACCESS = (
    '<?xml version="1.0" encoding="utf-8"?>\n<access-policy><cross-domain-access><policy>'
    '<allow-from http-methods="*" http-request-headers="*"><domain uri="*"/></allow-from>'
    '<grant-to><resource path="/" include-subpaths="true"/></grant-to>'
    "</policy></cross-domain-access></access-policy>\n"
)
# A 16x16 transparent ICO is not worth shipping: answer an empty icon.
FAVICON = b""

ReaderFactory = Callable[[str], Any]
# (host, connector, url) of the viewer request being served: DEFAULT_STREAM's payload.
_viewer: contextvars.ContextVar[tuple[str, str, str]] = contextvars.ContextVar("viewer")


def default_reader_factory() -> tuple[ReaderFactory, type[BaseException]]:
    """``shm.StreamReader`` and its not-found error (imported lazily: the bus may be absent)."""
    import shm

    return shm.StreamReader, shm.StreamNotFound


class HttpApp:
    def __init__(
        self,
        open_reader: ReaderFactory | None = None,
        not_found: type[BaseException] | None = None,
        *,
        input_wait_s: float = 20.0,
        track_wait_s: float = 10.0,
        use_controller: bool = True,
        public_url: str = "",
    ) -> None:
        if open_reader is None or not_found is None:
            open_reader, not_found = default_reader_factory()
        self.open_reader = open_reader
        self.not_found = not_found
        self.hub = FanoutHub(open_reader)
        self.input_wait_s = input_wait_s
        self.track_wait_s = track_wait_s
        self.use_controller = use_controller and os.environ.get("MIST_CONTROL") != "none"
        self.public_url = public_url.rstrip("/")
        self._player = resources.files("outputs.http").joinpath("player.html").read_text()

    async def __call__(self, req: Request) -> Response:
        if req.method == "OPTIONS":
            return Response(204, {"Access-Control-Max-Age": "600"})
        r = route(req.path)
        if isinstance(r, ErrorRoute):
            return error_response(r.status, r.message)
        if isinstance(r, PrefixRoute):
            handler = REGISTRY.prefixes.get(r.prefix)
            if handler is None:
                status = RESERVED_PREFIXES.get(r.prefix, 404)
                return error_response(
                    status, f"/{r.prefix}/ output is not available in this server"
                )
            req.app = self
            prefix_route = r
            return await self._gated(
                req,
                r.stream,
                r.prefix.upper(),
                lambda name: handler.handle(req, name, prefix_route.rest),
                reuse=True,
            )
        if req.method not in ("GET", "HEAD"):
            return error_response(405, f"{req.method} is not allowed here")
        if isinstance(r, StaticRoute):
            plugin = REGISTRY.static.get(r.name)
            return plugin(req) if plugin is not None else self._static(r.name)
        if isinstance(r, PlayerRoute):
            return self._player_page(r.stream)
        if isinstance(r, InfoRoute):
            return await self._info(req, r)
        media_route = r
        return await self._gated(
            req, r.stream, "HTTP", lambda name: self._media(req, media_route, name)
        )

    async def _gated(
        self,
        req: Request,
        stream: str,
        connector: str,
        respond: Callable[[str], Awaitable[Response]],
        reuse: bool = False,
    ) -> Response:
        """Sessions and access triggers around one viewer request (``common.sessions``):
        PLAY_REWRITE, USER_NEW/CONN_OPEN, CONN_PLAY; bytes are counted and a kicked
        viewer's connection is closed. Request-based outputs (HLS, CMAF) share one
        session connection per viewer."""
        if not self.use_controller:
            return await respond(stream)
        token = sessions.http_token(req.query, req.headers)
        gate = await sessions.admit_viewer(stream, req.peer, connector, req.target, token, reuse)
        if gate.conn is None:
            return error_response(403, f"Stream {stream!r}: {gate.refused}")
        conn = gate.conn
        _viewer.set((req.peer, connector, req.target))
        try:
            resp = await respond(gate.stream)
        except BaseException:
            if not conn.shared:
                conn.close()
            raise
        if resp.stream is not None:
            resp.stream = sessions.track_body(resp.stream, conn)
        else:
            conn.down += len(resp.body)
            if not conn.shared:
                conn.close()
        return resp

    # ---- small answers -------------------------------------------------------------------
    def _static(self, name: str) -> Response:
        if name == "crossdomain.xml":
            return text_response(200, CROSSDOMAIN, "text/xml")
        if name == "clientaccesspolicy.xml":
            return text_response(200, CLIENTACCESS, "text/xml")
        return Response(200, {"Content-Type": "image/x-icon"}, FAVICON)

    def _player_page(self, stream: str) -> Response:
        from html import escape

        page = self._player.replace("{{stream_html}}", escape(stream))
        page = page.replace("{{stream_js}}", info.json.dumps(stream).replace("<", "\\u003c"))
        page = page.replace("{{player_scripts}}", "\n".join(REGISTRY.player_scripts))
        return text_response(200, page, "text/html; charset=utf-8")

    async def _info(self, req: Request, r: InfoRoute) -> Response:
        reader = await self.find_stream(r.stream, wait=False)
        try:
            if reader is None:
                body = info.status_json(r.stream, None, StreamState.OFF, 0, self._base(req))
            else:
                meta = reader.meta
                body = info.status_json(r.stream, meta, meta.state, meta.progress, self._base(req))
        finally:
            if reader is not None:
                reader.close()
        ctype = "application/javascript" if r.javascript else "application/json"
        return Response(
            200,
            {"Content-Type": ctype, "Cache-Control": "no-cache"},
            info.render(r.stream, body, r.javascript).encode(),
        )

    def _base(self, req: Request) -> str:
        """Scheme and host for absolute URLs: ``--pubaddr`` or the request's Host."""
        if self.public_url:
            return self.public_url
        return f"http://{req.host}" if req.host else ""

    # ---- media --------------------------------------------------------------------------
    async def _media(self, req: Request, r: FormatRoute, name: str = "") -> Response:
        try:
            opts = parse_query(req.query)
        except BadQuery as exc:
            return error_response(400, str(exc))
        stream = name or r.stream
        reader = await self.find_stream(stream, wait=True)
        if reader is None:
            return error_response(404, f"Stream {stream!r} not found (offline or not configured)")
        handed_off = False
        try:
            meta = await self._wait_tracks(reader)
            if meta is None:
                return error_response(503, f"Stream {r.stream!r} has no playable data yet")
            spec = r.spec
            try:
                tracks = spec.select(meta.tracks, opts.selectors)
            except BadQuery as exc:
                return error_response(400, str(exc))
            if not tracks:
                have = ", ".join(sorted({t.codec for t in meta.tracks.values()})) or "none"
                return error_response(
                    415,
                    f"Stream {r.stream!r} has no track {spec.name.upper()} can carry (stream codecs: {have})",
                )
            problem = _check_muxer(spec, tracks, meta.live)
            if problem:
                return error_response(415, problem)
            headers = {"Content-Type": spec.mime, "Cache-Control": "no-cache"}
            if meta.live and opts.start is None:
                reader.close()
                handed_off = True
                hub = self.hub

                async def live_body(sink: Sink) -> None:
                    await hub.watch(sink, stream, spec, tracks)  # type: ignore[arg-type]

                return Response(200, headers, stream=live_body)
            handed_off = True
            return await vod.respond(
                req, reader, spec, tracks, opts, meta.live, headers, self.open_reader, stream
            )
        finally:
            if not handed_off:
                reader.close()

    async def find_stream(self, stream: str, wait: bool = True) -> Any | None:
        """A reader for ``stream`` (the caller closes it), asking the controller to start
        its input if needed, else for a fallback (DEFAULT_STREAM / ``defaultStream``);
        ``None`` when neither is available."""
        reader = await self._find_stream(stream, wait)
        if reader is not None or not self.use_controller:
            return reader
        from common.triggers import default_stream_async

        host, connector, url = _viewer.get(("", "HTTP", ""))
        fallback = await default_stream_async(stream, host, connector, url)
        if fallback and fallback != stream:
            log.info("stream %s unavailable; serving fallback %s", stream, fallback)
            return await self._find_stream(fallback, wait)
        return None

    async def _find_stream(self, stream: str, wait: bool) -> Any | None:
        try:
            return self.open_reader(stream)
        except self.not_found:
            pass
        if not self.use_controller:
            return None
        from common.control import NO_CONTROLLER, ensure_input_async

        result = await ensure_input_async(stream, timeout=5.0)
        if result.get("status") == "error":
            if result.get("error") != NO_CONTROLLER:
                log.info("stream %s: input not started: %s", stream, result.get("error"))
            return None
        deadline = time.monotonic() + (self.input_wait_s if wait else 2.0)
        while time.monotonic() < deadline:
            try:
                return self.open_reader(stream)
            except self.not_found:
                await asyncio.sleep(0.05)
        return None

    async def _wait_tracks(self, reader: Any) -> Any | None:
        """The stream's metadata once it is ready with at least one track (or None)."""
        deadline = time.monotonic() + self.track_wait_s
        while True:
            meta = reader.meta
            if meta.tracks and meta.state in (StreamState.READY, StreamState.SHUTDOWN):
                return meta
            if meta.state in (StreamState.OFF, StreamState.INVALID) or time.monotonic() > deadline:
                return None
            await reader.wait(0.1)


def _check_muxer(spec: FormatSpec, tracks: list[TrackMeta], live: bool) -> str:
    """Build a throw-away muxer to learn whether the format can carry the tracks."""
    try:
        spec.build(tracks, live)
    except FormatUnavailable as exc:
        return f"{spec.name.upper()} output is not available: {exc}"
    except (FormatError, UsageError, ValueError) as exc:
        return f"{spec.name.upper()} cannot carry these tracks: {exc}"
    return ""
