"""Helpers for formats indexed by demuxing the file once from start to end (FLV, TS,
EBML): damage handling that keeps what was read before it, and warning summaries."""

from __future__ import annotations

from collections.abc import Callable

from common.errors import MediaError
from inputs.base import SourceError
from inputs.index import TrackIndex
from mistcodecs.errors import Truncated

MAX_WARNINGS = 20


def demux_file(
    feed_all: Callable[[], None],
    end: Callable[[], None],
    frames: dict[int, TrackIndex],
    what: str,
) -> list[str]:
    """Run ``feed_all`` (the whole file into the demuxer) and ``end``. Damage after the
    first frames is a warning (the frames before it still play); damage before any frame
    is a :class:`SourceError`."""
    warnings: list[str] = []
    try:
        feed_all()
        end()
    except MediaError as exc:
        count = sum(len(f) for f in frames.values())
        if not count:
            raise SourceError(f"not a playable {what} file: {exc}") from exc
        kind = "truncated" if isinstance(exc, Truncated) else "damaged"
        warnings.append(f"{kind}: {exc}; serving the {count} complete frames before it")
    return warnings


def summarise(problems: list[str], what: str) -> list[str]:
    """At most MAX_WARNINGS problem lines, plus how many more there were."""
    out = [f"{what}: {p}" for p in problems[:MAX_WARNINGS]]
    if len(problems) > MAX_WARNINGS:
        out.append(f"{what}: {len(problems) - MAX_WARNINGS} more problems")
    return out
