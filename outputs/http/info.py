"""``/json_<s>.js`` and ``/info_<s>.js``: the stream description players read.

Fields as MistServer's ``OutHTTP::getStatusJSON`` (reference section 4). Tracks are keyed
``<type>_<codec>_<id>`` (``video_H264_1``) as MistServer's ``getWritableIdentifier``;
``init`` is the codec private data as a binary string (each byte one code point, so JSON
escapes it as ``\\u00XX``, as MistServer prints it). ``source`` lists the playable URLs:
each registered format whose codecs match at least one track of the stream, sorted as
MistServer (most simultaneous tracks, then priority, then matches, then URL).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol
from urllib.parse import quote

from outputs.formats import REGISTRY, FormatSpec, SourceEntry
from shm.model import StreamState, TrackMeta

STATE_ERRORS = {
    StreamState.OFF: "Stream is offline",
    StreamState.INIT: "Stream is initializing",
    StreamState.BOOT: "Stream is booting",
    StreamState.WAIT: "Stream is waiting for data",
    StreamState.SHUTDOWN: "Stream is shutting down",
    StreamState.INVALID: "Stream is offline",
}


class MetaLike(Protocol):
    live: bool
    tracks: dict[int, TrackMeta]
    version: int


def codec_string(t: TrackMeta) -> str:
    """RFC 6381 codec string for the browser (``avc1.64001f``), as our MP4 muxer writes it."""
    try:
        from mistcodecs.mp4.codecs import codec_string as mp4_codec_string

        return mp4_codec_string(t)
    except (ValueError, ImportError):
        return FALLBACK_CODEC_STRINGS.get(t.codec, t.codec.lower())


FALLBACK_CODEC_STRINGS = {
    "H264": "avc1.42E01E",
    "HEVC": "hev1.1.6.L93.B0",
    "AV1": "av01.0.08M.08",
    "VP8": "vp8",
    "VP9": "vp09.00.10.08",
    "AAC": "mp4a.40.2",
    "MP3": "mp4a.40.34",
    "opus": "opus",
    "vorbis": "vorbis",
    "AC3": "ac-3",
    "EAC3": "ec-3",
    "FLAC": "flac",
}


def track_key(t: TrackMeta) -> str:
    return f"{t.type}_{t.codec}_{t.id}"


def track_json(t: TrackMeta, idx: int, live: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "codec": t.codec,
        "codecstring": codec_string(t),
        "type": t.type,
        "idx": idx,
        "trackid": t.id,
        "init": bytes(t.init).decode("latin-1"),
        "firstms": t.firstms,
        "lastms": t.lastms,
        "bps": t.bps,
        "maxbps": t.maxbps or t.bps,
        "jitter": 0,
    }
    if live:
        out["nowms"] = t.lastms
    if t.lang:
        out["lang"] = t.lang
        out["language"] = t.lang
    if t.type == "video":
        out.update(width=t.width, height=t.height, fpks=t.fpks, fps=round(t.fpks / 1000, 3))
        out["bframes"] = int(bool(t.extra.get("bframes", 0)))
    elif t.type == "audio":
        out.update(rate=t.rate, size=t.size or 16, channels=t.channels)
    return out


def _playable(
    video: frozenset[str],
    audio: frozenset[str],
    tracks: Iterable[TrackMeta],
    meta: frozenset[str] = frozenset(),
) -> tuple[int, int]:
    """(simultaneous tracks, total matching tracks) for a format's codec sets; ``meta``
    are the subtitle codecs of SRT/WebVTT, which play one track at a time."""
    tracks = list(tracks)
    v = [t for t in tracks if t.type == "video" and t.codec in video]
    a = [t for t in tracks if t.type == "audio" and t.codec in audio]
    m = [t for t in tracks if t.type == "meta" and t.codec in meta]
    return (min(len(v), 1) + min(len(a), 1) + min(len(m), 1), len(v) + len(a) + len(m))


def sources(stream: str, tracks: list[TrackMeta], base: str) -> list[dict[str, Any]]:
    """Playable URLs; ``base`` is the scheme and host (``http://h:8080``) or empty."""
    name = quote(stream, safe="+")
    out: list[dict[str, Any]] = []
    entries: list[FormatSpec | SourceEntry] = [*REGISTRY.formats.values(), *REGISTRY.sources]
    for e in entries:
        meta = e.meta if isinstance(e, FormatSpec) else frozenset()
        simul, total = _playable(e.video, e.audio, tracks, meta)
        if total == 0:
            continue
        if isinstance(e, FormatSpec):
            rel = f"/{name}.{e.exts[0]}"
            stype, hrn, prio = e.source_type, e.hrn, e.priority
        else:
            rel = e.path.format(s=name)
            stype, hrn, prio = e.source_type, e.hrn, e.priority
        out.append(
            {
                "type": stype,
                "hrn": hrn,
                "relurl": rel,
                "url": base + rel,
                "priority": prio,
                "simul_tracks": simul,
                "total_matches": total,
            }
        )
    out.sort(key=lambda s: (-s["simul_tracks"], -s["priority"], -s["total_matches"], s["url"]))
    return out


def status_json(
    stream: str, meta: MetaLike | None, state: StreamState, progress: int, base: str
) -> dict[str, Any]:
    """The body of ``/json_<s>.js`` for a stream (``meta`` None when it is not on the bus)."""
    if meta is None or state != StreamState.READY or not meta.tracks:
        err = STATE_ERRORS.get(state, "Stream is offline")
        if meta is not None and state == StreamState.READY and not meta.tracks:
            err = STATE_ERRORS[StreamState.WAIT]
        reason = getattr(meta, "error", "")  # why the input gave up (shm StreamMeta.error)
        if state == StreamState.INVALID and isinstance(reason, str) and reason:
            err = reason
        out: dict[str, Any] = {"error": err, "on_error": err}
        if state in (StreamState.INIT, StreamState.BOOT):
            out["perc"] = progress
        return out
    tracks = sorted(meta.tracks.values(), key=lambda t: t.id)
    videos = [t for t in tracks if t.type == "video"]
    if videos:
        width = max(t.width for t in videos) or 640
        height = max(t.height for t in videos) or 480
    else:
        width, height = 640, 20  # MistServer's audio-only player size
    first = min((t.firstms for t in tracks), default=0)
    last = max((t.lastms for t in tracks), default=0)
    meta_out: dict[str, Any] = {
        "tracks": {track_key(t): track_json(t, i, meta.live) for i, t in enumerate(tracks)},
        "bframes": int(any(t.extra.get("bframes") for t in videos)),
        "jitter": 0,
        "version": meta.version,
        "buffer_window": last - first,
    }
    meta_out["live" if meta.live else "vod"] = 1
    if meta.live:
        meta_out["maxkeepaway"] = 45_000
    return {
        "selver": 2,
        "capa": {"selver": 2, "ssl": False, "datachannels": False},
        "type": "live" if meta.live else "vod",
        "width": width,
        "height": height,
        "unixoffset": 0,
        "meta": meta_out,
        "source": sources(stream, tracks, base),
    }


def render(stream: str, body: dict[str, Any], javascript: bool) -> str:
    text = json.dumps(body, separators=(",", ":"))
    if not javascript:
        return text
    key = json.dumps(stream)
    return f"if (!mistvideo) {{ var mistvideo = {{}}; }}\nmistvideo[{key}] = {text};\n"
