"""Sans-IO HTTP/1.x request parser with hard limits.

Feed bytes with :meth:`RequestParser.feed`; it returns complete :class:`Request` records
and raises :class:`HttpError` (carrying the status to answer: 400, 413, 431, 501, 505)
when the peer sends something we will not serve. Limits bound memory per connection:
the request line, each header line, the whole header block, the header count and the
body. Bodies are supported with ``Content-Length`` only (WHIP/WHEP offers are small);
chunked request bodies get 501. Pipelined requests stay buffered for the next ``feed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import MediaError
from common.text import is_decimal
from outputs.http.message import Request

METHODS = frozenset({"GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"})


class HttpError(MediaError):
    """The request is malformed or too large; ``status`` is the answer to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_line: int = 8192
    max_header_bytes: int = 16384
    max_headers: int = 100
    max_body: int = 1 << 20


class RequestParser:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._head: Request | None = None  # parsed head waiting for its body
        self._body_left = 0

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet part of a complete request (for timeouts)."""
        return len(self._buf)

    @property
    def in_request(self) -> bool:
        return self._head is not None or bool(self._buf.strip(b"\r\n"))

    def feed(self, data: bytes) -> list[Request]:
        self._buf += data
        out: list[Request] = []
        while True:
            if self._head is None:
                head = self._parse_head()
                if head is None:
                    break
                self._head = head
            if len(self._buf) < self._body_left:
                break
            req = self._head
            req.body = bytes(self._buf[: self._body_left])
            del self._buf[: self._body_left]
            self._head = None
            self._body_left = 0
            out.append(req)
        return out

    def _parse_head(self) -> Request | None:
        # Tolerate stray CRLFs between pipelined requests (RFC 9112 section 2.2).
        while self._buf[:2] == b"\r\n":
            del self._buf[:2]
        end = self._buf.find(b"\r\n\r\n")
        if end == -1:
            first = self._buf.find(b"\r\n")
            if first == -1 and len(self._buf) > self.limits.max_line:
                raise HttpError(431 if self._buf[:1].isupper() else 400, "request line too long")
            if len(self._buf) > self.limits.max_header_bytes:
                raise HttpError(
                    431, f"request header larger than {self.limits.max_header_bytes} bytes"
                )
            return None
        if end > self.limits.max_header_bytes:
            raise HttpError(431, f"request header larger than {self.limits.max_header_bytes} bytes")
        block = bytes(self._buf[:end])
        del self._buf[: end + 4]
        try:
            text = block.decode("latin-1")
        except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes anything
            raise HttpError(400, "undecodable header") from exc
        lines = text.split("\r\n")
        req = self._request_line(lines[0])
        if len(lines) - 1 > self.limits.max_headers:
            raise HttpError(431, f"more than {self.limits.max_headers} header fields")
        for line in lines[1:]:
            if len(line) > self.limits.max_line:
                raise HttpError(431, "header line too long")
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or not _is_token(name):
                raise HttpError(400, f"malformed header line {line[:40]!r}")
            key = name.lower()
            value = value.strip()
            req.headers[key] = f"{req.headers[key]}, {value}" if key in req.headers else value
        if "chunked" in req.headers.get("transfer-encoding", "").lower():
            raise HttpError(501, "chunked request bodies are not supported")
        length = req.headers.get("content-length", "0").strip() or "0"
        if not is_decimal(length):
            raise HttpError(400, f"bad Content-Length {length[:20]!r}")
        self._body_left = int(length)
        if self._body_left > self.limits.max_body:
            raise HttpError(413, f"request body larger than {self.limits.max_body} bytes")
        return req

    def _request_line(self, line: str) -> Request:
        if len(line) > self.limits.max_line:
            raise HttpError(431, "request line too long")
        parts = line.split(" ")
        if len(parts) != 3:
            raise HttpError(400, f"malformed request line {line[:60]!r}")
        method, target, version = parts
        if method not in METHODS:
            raise HttpError(
                501 if _is_token(method) and method.isupper() else 400,
                f"method {method[:20]!r} not supported",
            )
        if not version.startswith("HTTP/1."):
            raise HttpError(
                505 if version.startswith("HTTP/") else 400, f"bad version {version[:20]!r}"
            )
        if not target.startswith("/") and target != "*":
            # Absolute-form targets (proxies) are reduced to their path.
            if "://" in target:
                rest = target.split("://", 1)[1]
                target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
            else:
                raise HttpError(400, f"bad request target {target[:60]!r}")
        return Request(method, target, version, {})


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _is_token(s: str) -> bool:
    return bool(s) and all(c in _TOKEN_CHARS for c in s)
