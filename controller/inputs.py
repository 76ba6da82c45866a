"""Which ``MistIn*`` program handles a stream source (reference 1.2 / 6.7), without I/O.

Each input's capa lists ``source_match`` glob patterns (only ``*`` is special) and a
``priority``; the highest priority among the matching inputs wins (ties: the name that
sorts first, so the choice is stable). A ``<name>:`` prefix (lowercase input name, e.g.
``ts:/x.bin``) forces that input with priority 99; the prefix is stripped from the
source given to it, unless what follows is ``//`` (then the prefix is the URL scheme
the input reads, as ``rtsp://`` for RTSP, and the source is passed whole).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

FORCED_PRIORITY = 99


@dataclass(frozen=True)
class InputChoice:
    name: str  # short name: "MP4", "Buffer"
    source: str  # what to pass to the input
    priority: int


@lru_cache(maxsize=512)
def _pattern(glob: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in glob.split("*")) + "$", re.DOTALL)


def matches(glob: str, source: str) -> bool:
    return bool(_pattern(glob).match(source))


def choose_input(inputs: dict[str, dict[str, Any]], source: str) -> InputChoice | None:
    """The input for ``source`` among ``inputs`` (short name -> capa), or None."""
    best: InputChoice | None = None
    for name in sorted(inputs):
        capa = inputs[name]
        prefix = name.lower() + ":"
        if source.startswith(prefix):
            rest = source[len(prefix) :]
            cand = InputChoice(name, source if rest.startswith("//") else rest, FORCED_PRIORITY)
        else:
            patterns = capa.get("source_match", [])
            if isinstance(patterns, str):
                patterns = [patterns]
            if not any(isinstance(p, str) and matches(p, source) for p in patterns):
                continue
            try:
                prio = int(capa.get("priority", 0))
            except (TypeError, ValueError):
                prio = 0
            cand = InputChoice(name, source, prio)
        if best is None or cand.priority > best.priority:
            best = cand
    return best
