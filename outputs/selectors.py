"""Query parameters of HTTP outputs: time range and MistServer-style track selectors.

A selector (``?video=``, ``?audio=``, ``?subtitle=``) is a comma-separated list of terms,
the union of whose matches is played (MistServer's ``Util::findTracks`` subset):

============================  ==================================================
``none`` / ``-1``             no track of this type
``all`` / ``*``               every track of this type
``<n>``                       the track with id ``n``
``<codec>``                   tracks with that codec (case-insensitive: ``h264``)
``maxbps`` / ``highbps``      the highest bit rate track (``minbps``/``lowbps``: lowest)
``<N``/``>N``/``=N`` + unit   bit rate comparisons (``>500kbps``; units bps/kbps/mbps)
``maxres`` / ``minres``       the largest / smallest picture (video)
``<lang>``                    2- or 3-letter language code
``!<term>``                   every track of this type except the term's matches
============================  ==================================================

An absent selector picks the default: the highest bit rate track of the type the format
can carry (MistServer picks one video and one audio track by default).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.errors import MediaError
from common.text import is_decimal
from shm.model import TrackMeta

SELECTOR_KEYS = ("video", "audio", "subtitle")
_TYPE_OF_KEY = {"video": "video", "audio": "audio", "subtitle": "meta"}
_BPS_RE = re.compile(r"^([<>=])(\d+(?:\.\d+)?)(bps|kbps|mbps|kbit|mbit|bit)?$")
_UNITS = {
    None: 1,
    "bps": 1,
    "bit": 1,
    "kbps": 1000,
    "kbit": 1000,
    "mbps": 1_000_000,
    "mbit": 1_000_000,
}


class BadQuery(MediaError):
    """A query parameter cannot be understood (answered with 400)."""


@dataclass(frozen=True)
class PlayOptions:
    """What a viewer asked for in the query string."""

    start: int | None = None  # ms; negative: that far behind the live edge / the end
    stop: int | None = None  # ms
    selectors: dict[str, str] = field(default_factory=dict)  # key -> raw selector text
    buffer_ms: int | None = None  # ``buffer`` (seconds in MistServer) as ms
    token: str = ""  # ``tkn``/``sid``/``sessId``/``jwt``, kept for sessions


def parse_query(query: Mapping[str, str]) -> PlayOptions:
    def ms(name: str) -> int | None:
        raw = query.get(name)
        if raw is None or raw == "":
            return None
        try:
            return int(float(raw))
        except ValueError as exc:
            raise BadQuery(f"{name}={raw[:30]!r} is not a number of milliseconds") from exc

    # A negative start counts back from the live edge (or the end of a VoD stream).
    start, stop = ms("start"), ms("stop")
    if stop is not None and stop < 0:
        raise BadQuery("stop must not be negative")
    if start is not None and start >= 0 and stop is not None and stop < start:
        raise BadQuery(f"stop ({stop}) is before start ({start})")
    buffer_ms = None
    if query.get("buffer"):
        try:
            buffer_ms = int(float(query["buffer"]) * 1000)
        except ValueError as exc:
            raise BadQuery(f"buffer={query['buffer'][:30]!r} is not a number of seconds") from exc
    token = next((query[k] for k in ("tkn", "sid", "sessId", "jwt") if query.get(k)), "")
    sel = {k: query[k] for k in SELECTOR_KEYS if k in query}
    return PlayOptions(start, stop, sel, buffer_ms, token)


def _bps(t: TrackMeta) -> int:
    return t.maxbps or t.bps


def _match_term(term: str, tracks: list[TrackMeta]) -> list[TrackMeta]:
    low = term.lower()
    if low in ("all", "*"):
        return list(tracks)
    if low in ("none", "-1", ""):
        return []
    if is_decimal(term):
        return [t for t in tracks if t.id == int(term)]
    if low in ("maxbps", "highbps", "bestbps"):
        return [max(tracks, key=_bps)] if tracks else []
    if low in ("minbps", "lowbps", "worstbps"):
        return [min(tracks, key=_bps)] if tracks else []
    if low in ("maxres", "highres", "bestres"):
        return [max(tracks, key=lambda t: t.width * t.height)] if tracks else []
    if low in ("minres", "lowres", "worstres"):
        return [min(tracks, key=lambda t: t.width * t.height)] if tracks else []
    m = _BPS_RE.match(low)
    if m:
        limit = float(m.group(2)) * _UNITS[m.group(3)] / 8  # bits/s -> bytes/s (track bps unit)
        op = m.group(1)
        if op == "<":
            return [t for t in tracks if _bps(t) < limit]
        if op == ">":
            return [t for t in tracks if _bps(t) > limit]
        return [t for t in tracks if abs(_bps(t) - limit) < max(1.0, limit * 0.05)]
    by_codec = [t for t in tracks if t.codec.lower() == low]
    if by_codec:
        return by_codec
    if re.fullmatch(r"[a-z]{2,3}", low):
        return [t for t in tracks if t.lang.lower().startswith(low)]
    raise BadQuery(f"track selector term {term[:30]!r} is not understood")


def select_type(selector: str, tracks: list[TrackMeta]) -> list[TrackMeta]:
    """Apply one selector to the candidate tracks of one type (already format-filtered)."""
    chosen: dict[int, TrackMeta] = {}
    for raw in selector.split(","):
        term = raw.strip()
        if term.startswith("!"):
            excluded = {t.id for t in _match_term(term[1:], tracks)}
            hits = [t for t in tracks if t.id not in excluded]
        else:
            hits = _match_term(term, tracks)
        for t in hits:
            chosen.setdefault(t.id, t)
    return sorted(chosen.values(), key=lambda t: t.id)


def select_tracks(
    tracks: Mapping[int, TrackMeta],
    selectors: Mapping[str, str],
    carries: object = None,
    limits: Mapping[str, int] | None = None,
) -> list[TrackMeta]:
    """The tracks to play: selector (or default) per type, restricted to what the format carries.

    ``carries`` is a predicate ``TrackMeta -> bool`` (a :class:`~outputs.formats.FormatSpec`'s
    ``carries``) or ``None`` for every track; ``limits`` caps the count per type (``video``/
    ``audio``), keeping the first tracks by id.
    """
    pred = carries if callable(carries) else (lambda _t: True)
    out: list[TrackMeta] = []
    for key in SELECTOR_KEYS:
        ttype = _TYPE_OF_KEY[key]
        cands = [
            t for t in sorted(tracks.values(), key=lambda t: t.id) if t.type == ttype and pred(t)
        ]
        if key in selectors:
            picked = select_type(selectors[key], cands)
        elif key == "subtitle" or not cands:
            picked = []
        else:
            picked = [max(cands, key=lambda t: (_bps(t), -t.id))]
        cap = (limits or {}).get(key)
        if cap is not None:
            picked = picked[:cap]
        out.extend(picked)
    return out
