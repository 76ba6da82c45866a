"""Stream names as MistServer sanitises them (reference 6.7).

The base name is lowercased and keeps only ``a-z 0-9 _ . -``; anything after the
first ``+`` (a wildcard stream, ``base+name``) or space is kept verbatim. Names are
capped at 100 characters. Path tricks (``..``, ``/``) cannot survive this.
"""

from __future__ import annotations

import re

MAX_STREAM_NAME = 100
_BASE_ALLOWED = re.compile(r"[^a-z0-9_.\-]")
_WILD_FORBIDDEN = re.compile(r"[/\\\x00-\x1f]")


def sanitize(name: str) -> str:
    """Return the canonical form of a stream name (may be empty if nothing valid is left)."""
    cut = len(name)
    for sep in ("+", " "):
        pos = name.find(sep)
        if pos != -1:
            cut = min(cut, pos)
    base = _BASE_ALLOWED.sub("", name[:cut].lower())
    rest = name[cut:]
    if rest:
        rest = rest[0] + _WILD_FORBIDDEN.sub("", rest[1:]).replace("..", "")
    return (base + rest)[:MAX_STREAM_NAME]


def base_name(name: str) -> str:
    """The configured stream a (possibly wildcard) name belongs to: the part before ``+``/space."""
    for sep in ("+", " "):
        pos = name.find(sep)
        if pos != -1:
            name = name[:pos]
    return name


def shm_safe(name: str) -> str:
    """A form usable inside a POSIX shm name (no ``/``); wildcard suffixes are hex-escaped."""
    return "".join(c if c.isalnum() or c in "_.-+" else f"%{ord(c):02x}" for c in name)
