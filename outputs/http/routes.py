"""Pure routing of MistOutHTTP: a request path becomes a route record (no I/O here).

URL layout as MistServer (reference section 4):

* ``/<s>.<ext>`` -- a progressive format from :mod:`outputs.formats` (415 if unknown ext)
* ``/json_<s>.js`` / ``/info_<s>.js`` -- stream info as JSON / as ``mistvideo[...] = ...``
* ``/<s>.html`` -- the player page
* ``/crossdomain.xml``, ``/clientaccesspolicy.xml``, ``/favicon.ico`` -- static answers
* ``/<prefix>/<s>[/<rest>]`` -- a plug-in handler (HLS, CMAF, WebRTC/WHIP/WHEP)

Stream names are sanitised with :func:`common.streamname.sanitize`; names that would
be path tricks (empty, leading dot, ``..``) are refused with 404.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.streamname import sanitize
from outputs.formats import REGISTRY, FormatSpec, format_for_ext

# Prefixes MistServer reserves for outputs that plug into the HTTP port. A prefix without a
# registered handler answers ``status`` (the output does not exist in this server).
RESERVED_PREFIXES = {
    "hls": 415,
    "cmaf": 415,
    "dynamic": 415,
    "webrtc": 501,
    "whip": 501,
    "whep": 501,
}
STATIC_FILES = ("crossdomain.xml", "clientaccesspolicy.xml", "favicon.ico")


@dataclass(frozen=True)
class FormatRoute:
    stream: str
    spec: FormatSpec
    ext: str


@dataclass(frozen=True)
class InfoRoute:
    stream: str
    javascript: bool  # info_<s>.js (JS assignment) rather than json_<s>.js


@dataclass(frozen=True)
class PlayerRoute:
    stream: str


@dataclass(frozen=True)
class StaticRoute:
    name: str


@dataclass(frozen=True)
class PrefixRoute:
    prefix: str
    stream: str
    rest: str  # path after /<prefix>/<stream>/ ("" when none)


@dataclass(frozen=True)
class ErrorRoute:
    status: int
    message: str


Route = FormatRoute | InfoRoute | PlayerRoute | StaticRoute | PrefixRoute | ErrorRoute


def clean_stream(raw: str) -> str | None:
    """The canonical stream name, or ``None`` if the name is not acceptable."""
    if not raw or raw.startswith(".") or ".." in raw or "/" in raw or "\\" in raw:
        return None
    name = sanitize(raw)
    if not name or name.startswith(".") or ".." in name:
        return None
    return name


def _bad_name(raw: str) -> ErrorRoute:
    return ErrorRoute(404, f"Invalid stream name {raw[:60]!r}")


def route(path: str) -> Route:
    """Map a (percent-decoded) request path to a route."""
    if not path.startswith("/"):
        return ErrorRoute(400, "Request path must start with /")
    segments = path[1:].split("/")
    if len(segments) > 1:
        prefix = segments[0].lower()
        if prefix in REGISTRY.prefixes or prefix in RESERVED_PREFIXES:
            stream = clean_stream(segments[1])
            if stream is None:
                return _bad_name(segments[1])
            return PrefixRoute(prefix, stream, "/".join(segments[2:]))
        return ErrorRoute(404, f"No such resource: {path[:100]}")
    leaf = segments[0]
    if leaf in STATIC_FILES or leaf in REGISTRY.static:
        return StaticRoute(leaf)
    if leaf in REGISTRY.prefixes or leaf in RESERVED_PREFIXES:
        return ErrorRoute(404, f"/{leaf}/ needs a stream name: /{leaf}/<stream>/...")
    for head, javascript in (("json_", False), ("info_", True)):
        if leaf.startswith(head) and leaf.endswith(".js") and len(leaf) > len(head) + 3:
            raw = leaf[len(head) : -3]
            stream = clean_stream(raw)
            return InfoRoute(stream, javascript) if stream else _bad_name(raw)
    if "." not in leaf:
        return ErrorRoute(
            404, f"No such resource: {path[:100]} (stream URLs are /<stream>.<format>)"
        )
    raw, ext = leaf.rsplit(".", 1)
    stream = clean_stream(raw)
    if stream is None:
        return _bad_name(raw)
    if ext.lower() in ("html", "htm"):
        return PlayerRoute(stream)
    spec = format_for_ext(ext)
    if spec is None:
        known = ", ".join(sorted(REGISTRY.by_ext))
        return ErrorRoute(415, f"Unsupported format {ext[:20]!r}: this server plays {known}")
    return FormatRoute(stream, spec, ext.lower())
