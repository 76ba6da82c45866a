"""HTTP request and response records shared by MistOutHTTP and the outputs that plug into it.

A handler gets a :class:`Request` and returns a :class:`Response`. A response either has a
complete ``body`` (sent with ``Content-Length``; the connection stays alive) or a
``stream`` coroutine that writes the body itself through a :class:`Sink` (no length; the
connection closes at the end, as MistServer does for progressive media).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

REASONS = {
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Expose-Headers": "*, Content-Length, Content-Range, Accept-Ranges, Date",
}


@dataclass
class Request:
    method: str
    target: str  # raw request target, e.g. /live.flv?start=100
    version: str  # "HTTP/1.1"
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes = b""
    peer: str = ""
    # The MistOutHTTP application handling the request (``outputs.http.app.HttpApp``):
    # plug-in handlers use ``await req.app.find_stream(name)`` to get a bus reader.
    app: Any = None

    @property
    def path(self) -> str:
        return unquote(self.target.split("?", 1)[0].split("#", 1)[0])

    @property
    def query(self) -> dict[str, str]:
        if "?" not in self.target:
            return {}
        return dict(parse_qsl(self.target.split("?", 1)[1], keep_blank_values=True))

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn

    @property
    def host(self) -> str:
        return self.headers.get("host", "")


class Sink(Protocol):
    """Where a streamed body goes: the viewer's connection."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None:
        """Wait until the connection's write buffer is below its limit (or it closed)."""

    @property
    def closed(self) -> bool: ...


StreamBody = Callable[[Sink], Awaitable[None]]


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # A streamed body; without a Content-Length header the connection closes after it.
    stream: StreamBody | None = None

    def head_bytes(self, keep_alive: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}"]
        headers = dict(CORS_HEADERS)
        headers.update(self.headers)
        if self.stream is None and self.status not in (204, 304):
            headers.setdefault("Content-Length", str(len(self.body)))
        sized = self.stream is None or "Content-Length" in headers
        headers["Connection"] = "keep-alive" if keep_alive and sized else "close"
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def text_response(
    status: int, text: str, content_type: str = "text/plain; charset=utf-8"
) -> Response:
    return Response(status, {"Content-Type": content_type}, text.encode())


def error_response(status: int, message: str) -> Response:
    return text_response(status, message + "\n")
