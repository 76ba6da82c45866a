"""Registry of HTTP output formats and URL-prefix handlers.

Two kinds of entries live here, both looked up by :mod:`outputs.http.routes` and by the
``/json_<s>.js`` source list:

* :class:`FormatSpec` -- a progressive format served as ``/<s>.<ext>`` (FLV, TS, MP4...).
  It names the codecs the container carries, the MIME type, the player "source type"
  MistServer advertises, and a ``build`` function that returns a sans-IO muxer
  (``header()/packet(p)/end()``) for a track list. Muxers are imported lazily so a
  missing codec module only disables its format (:class:`FormatUnavailable`).
* :class:`PrefixHandler` -- a handler that owns every path under ``/<prefix>/`` (HLS, CMAF,
  WebRTC/WHIP/WHEP). Other outputs plug in by calling :func:`register_prefix` from a module
  listed in :data:`PLUGIN_MODULES` (its ``register()`` is called once at start-up), and add
  the entries they want in the player source list with :func:`register_source`.

Key alignment tells the live fan-out where a new viewer may join: ``"packet"`` means the
bytes returned for a video keyframe packet begin a decodable point (FLV, TS, MKV, audio);
``"output"`` means every non-empty output starts at a keyframe (fragmented MP4 fragments).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from outputs.selectors import select_tracks
from shm.model import Packet, TrackMeta

if TYPE_CHECKING:
    from outputs.http.message import Request, Response

log = logging.getLogger(__name__)


class FormatUnavailable(Exception):
    """The muxer for a format is not installed or cannot carry the selected tracks."""


class Muxer(Protocol):
    """What a format's ``build`` returns: bytes for the header, each packet, the end."""

    def header(self) -> bytes: ...

    def packet(self, p: Packet) -> bytes: ...

    def end(self) -> bytes: ...


Builder = Callable[[list[TrackMeta], bool], Muxer]


@dataclass(frozen=True)
class FormatSpec:
    """A progressive HTTP format (``/<s>.<ext>``)."""

    name: str
    exts: tuple[str, ...]
    mime: str
    source_type: str  # MistServer's player "type", e.g. html5/video/mp4
    hrn: str  # human readable name in the source list
    priority: int
    video: frozenset[str]
    audio: frozenset[str]
    build: Builder
    key_alignment: str = "packet"
    max_video: int = 1
    max_audio: int = 1
    connector: str = ""  # MistServer's standalone program name (capabilities)
    meta: frozenset[str] = frozenset()  # subtitle formats: the meta codecs carried

    def carries(self, track: TrackMeta) -> bool:
        if track.type == "video":
            return track.codec in self.video
        if track.type == "audio":
            return track.codec in self.audio
        return track.codec in self.meta

    def select(
        self, tracks: Mapping[int, TrackMeta], selectors: Mapping[str, str]
    ) -> list[TrackMeta]:
        """The tracks a viewer gets (``?video=``/``?audio=`` or the defaults), limited to
        what this format carries and how many of each; raises ``BadQuery``."""
        limits = {"video": self.max_video, "audio": self.max_audio, "subtitle": 1}
        chosen = select_tracks(tracks, selectors, self.carries, limits)
        if not chosen and self.meta and "subtitle" not in selectors:  # SRT/WebVTT: the first
            chosen = select_tracks(tracks, {"subtitle": "all"}, self.carries, limits)
        return chosen


@dataclass(frozen=True)
class SourceEntry:
    """One entry offered in the ``source`` list of ``/json_<s>.js`` by a plug-in."""

    source_type: str
    hrn: str
    priority: int
    path: str  # with ``{s}`` for the (URL-quoted) stream name, e.g. /hls/{s}/index.m3u8
    video: frozenset[str]
    audio: frozenset[str]
    max_video: int = 8
    max_audio: int = 8


PrefixCallable = Callable[["Request", str, str], Awaitable["Response"]]
"""``handler(request, stream, rest_of_path)`` for a path ``/<prefix>/<stream>/<rest>``."""
StaticCallable = Callable[["Request"], "Response"]


@dataclass(frozen=True)
class PrefixHandler:
    prefix: str
    handle: PrefixCallable
    name: str = ""


@dataclass
class Registry:
    formats: dict[str, FormatSpec] = field(default_factory=dict)
    by_ext: dict[str, FormatSpec] = field(default_factory=dict)
    prefixes: dict[str, PrefixHandler] = field(default_factory=dict)
    sources: list[SourceEntry] = field(default_factory=list)
    player_scripts: list[str] = field(default_factory=list)  # HTML put in the player's <head>
    static: dict[str, StaticCallable] = field(default_factory=dict)  # /<name> files of plug-ins


REGISTRY = Registry()

# Modules of other outputs that extend MistOutHTTP: each defines ``register() -> None``.
PLUGIN_MODULES = ("outputs.hls.http", "outputs.cmaf.http", "outputs.webrtc.http")
_plugins_loaded = False


def register_format(spec: FormatSpec) -> None:
    REGISTRY.formats[spec.name] = spec
    for ext in spec.exts:
        REGISTRY.by_ext[ext] = spec


def register_prefix(prefix: str, handle: PrefixCallable, name: str = "") -> None:
    """Route every request under ``/<prefix>/`` to ``handle`` (replaces a previous one)."""
    REGISTRY.prefixes[prefix] = PrefixHandler(prefix, handle, name or prefix)


def register_source(entry: SourceEntry) -> None:
    REGISTRY.sources.append(entry)


def register_static(name: str, handle: StaticCallable) -> None:
    """Serve ``/<name>`` (e.g. ``/hlsjs.js``) with ``handle(request)``."""
    REGISTRY.static[name] = handle


def register_player_script(html: str) -> None:
    """Add a ``<script>`` (e.g. hls.js plus a handler in ``window.mistPlayers``) to the player page."""
    if html not in REGISTRY.player_scripts:
        REGISTRY.player_scripts.append(html)


def format_for_ext(ext: str) -> FormatSpec | None:
    return REGISTRY.by_ext.get(ext.lower())


def load_plugins(modules: Iterable[str] = PLUGIN_MODULES) -> list[str]:
    """Import each plug-in module that exists and call its ``register()``; return the loaded."""
    global _plugins_loaded
    loaded: list[str] = []
    if _plugins_loaded:
        return loaded
    _plugins_loaded = True
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # the plug-in is simply not there (yet)
            raise
        register = getattr(mod, "register", None)
        if callable(register):
            register()
            loaded.append(name)
    return loaded


# --- built-in progressive formats ------------------------------------------------------


def _import(module: str, attr: str) -> Any:
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise FormatUnavailable(f"muxer {module}.{attr} is not available: {exc}") from exc


def _build_flv(tracks: list[TrackMeta], live: bool) -> Muxer:
    return _import("mistcodecs.flv", "FlvMuxer")(tracks)


def _build_ts(tracks: list[TrackMeta], live: bool) -> Muxer:
    return _import("mistcodecs.ts", "TsMuxer")(tracks)


def _build_fmp4(tracks: list[TrackMeta], live: bool) -> Muxer:
    # Fragments cut on each video keyframe: every output of packet() starts at a key.
    return _import("mistcodecs.mp4.fragment", "FragmentStream")(tracks)


def _build_mkv(tracks: list[TrackMeta], live: bool) -> Muxer:
    return _import("mistcodecs.ebml", "EbmlMuxer")(tracks, webm=False)


def _build_webm(tracks: list[TrackMeta], live: bool) -> Muxer:
    return _import("mistcodecs.ebml", "EbmlMuxer")(tracks, webm=True)


def _build_ogg(tracks: list[TrackMeta], live: bool) -> Muxer:
    return _import("mistcodecs.ogg", "OggMuxer")(tracks)


def _build_wav(tracks: list[TrackMeta], live: bool) -> Muxer:
    return _import("mistcodecs.wav", "WavMuxer")(tracks)


class AdtsMuxer:
    """AAC as ADTS: each raw frame behind its 7-byte header."""

    def __init__(self, tracks: list[TrackMeta]) -> None:
        aac = [t for t in tracks if t.codec == "AAC" and t.init]
        if not aac:
            raise FormatUnavailable("AAC output needs an AAC track with its AudioSpecificConfig")
        self.track = aac[0]
        self.adts = _import("mistcodecs.aac", "adts_header")

    def header(self) -> bytes:
        return b""

    def packet(self, p: Packet) -> bytes:
        if p.track != self.track.id:
            return b""
        return bytes(self.adts(self.track.init, len(p.data))) + bytes(p.data)

    def end(self) -> bytes:
        return b""


def _build_srt(tracks: list[TrackMeta], live: bool) -> Muxer:
    return _import("outputs.http.subrip", "SubtitleMuxer")(tracks, webvtt=False)


def _build_vtt(tracks: list[TrackMeta], live: bool) -> Muxer:
    return _import("outputs.http.subrip", "SubtitleMuxer")(tracks, webvtt=True)


def _build_mp3(tracks: list[TrackMeta], live: bool) -> Muxer:
    return _import("mistcodecs.mp3", "Mp3Muxer")(tracks)


def _build_aac(tracks: list[TrackMeta], live: bool) -> Muxer:
    return AdtsMuxer(tracks)


_V_MP4 = frozenset({"H264", "HEVC", "AV1", "VP9"})
_A_MP4 = frozenset({"AAC", "MP3", "AC3", "EAC3", "opus", "FLAC"})

BUILTIN_FORMATS: tuple[FormatSpec, ...] = (
    FormatSpec(
        "mp4", ("mp4", "fmp4"), "video/mp4", "html5/video/mp4", "MP4 progressive", 9,
        _V_MP4, _A_MP4, _build_fmp4, key_alignment="output", connector="MP4",
    ),
    FormatSpec(
        "webm", ("webm",), "video/webm", "html5/video/webm", "WebM progressive", 9,
        frozenset({"VP8", "VP9", "AV1"}), frozenset({"opus", "vorbis"}), _build_webm,
        connector="EBML",
    ),
    FormatSpec(
        "mkv", ("mkv",), "video/x-matroska", "html5/video/x-matroska", "MKV progressive", 7,
        frozenset({"H264", "HEVC", "AV1", "VP8", "VP9", "MPEG2"}),
        frozenset({"AAC", "MP3", "AC3", "EAC3", "opus", "vorbis", "FLAC", "PCM"}),
        _build_mkv, connector="EBML",
    ),
    FormatSpec(
        "flv", ("flv",), "video/x-flv", "flash/7", "Flash progressive", 5,
        frozenset({"H264", "HEVC", "AV1", "VP8", "VP9"}),
        frozenset({"AAC", "MP3", "opus", "FLAC", "AC3", "EAC3", "PCM", "ALAW", "ULAW"}), _build_flv,
        connector="FLV",
    ),
    FormatSpec(
        "ts", ("ts",), "video/mp2t", "html5/video/mpeg", "TS HTTP progressive", 1,
        frozenset({"H264", "HEVC"}), frozenset({"AAC", "MP3", "AC3", "EAC3"}),
        _build_ts, connector="HTTPTS",
    ),
    FormatSpec(
        "ogg", ("ogg",), "audio/ogg", "html5/audio/ogg", "OGG progressive", 8,
        frozenset(), frozenset({"opus", "vorbis"}), _build_ogg, connector="OGG",
    ),
    FormatSpec(
        "wav", ("wav",), "audio/wav", "html5/audio/wav", "WAV progressive", 1,
        frozenset(), frozenset({"PCM"}), _build_wav, connector="WAV",
    ),
    FormatSpec(
        "mp3", ("mp3",), "audio/mpeg", "html5/audio/mp3", "MP3 progressive", 8,
        frozenset(), frozenset({"MP3"}), _build_mp3, connector="MP3",
    ),
    FormatSpec(
        "aac", ("aac",), "audio/aac", "html5/audio/aac", "AAC progressive", 8,
        frozenset(), frozenset({"AAC"}), _build_aac, connector="AAC",
    ),
    FormatSpec(
        "srt", ("srt",), "text/plain; charset=utf-8", "html5/text/plain", "SRT subtitles", 1,
        frozenset(), frozenset(), _build_srt, connector="SubRip",
        meta=frozenset({"subtitle"}),
    ),
    FormatSpec(
        "vtt", ("vtt", "webvtt"), "text/vtt; charset=utf-8", "html5/text/vtt",
        "WebVTT subtitles", 1, frozenset(), frozenset(), _build_vtt, connector="SubRip",
        meta=frozenset({"subtitle"}),
    ),
)  # fmt: skip

for _spec in BUILTIN_FORMATS:
    register_format(_spec)
