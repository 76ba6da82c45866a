"""RTMP publish/play names -> stream names (reference 4, RTMP row)."""

from __future__ import annotations

from common.streamname import sanitize

PREFIXES = ("flv:", "mp4:", "mp3:", "f4v:")


def stream_name(raw: str) -> str:
    """The stream a publish/play name refers to ("" if none): ``?query`` is already
    split off by the session layer; ``flv:``/``mp4:`` prefixes are dropped, and so is
    anything after the first ``/``; then MistServer's sanitising applies."""
    name = raw.strip()
    low = name.lower()
    for prefix in PREFIXES:
        if low.startswith(prefix):
            name = name[len(prefix) :]
            break
    name = name.split("/", 1)[0]
    if name.endswith((".flv", ".mp4")):
        name = name[:-4]
    name = sanitize(name)
    return "" if not name.strip(".") else name  # "." and ".." are no stream names
