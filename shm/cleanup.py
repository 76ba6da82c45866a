"""Finding and removing what crashed writers and readers left under /dev/shm.

A stream's writer is alive exactly while it holds ``flock`` on ``/MstLock<s>``: the
kernel drops that lock when the process dies however it dies, so probing it with a
non-blocking shared lock tells a dead writer from a live one without pid guessing.
A reader's slot is dead when its pid is gone (its wake-up socket went with it).
"""

from __future__ import annotations

import os

import posix_ipc

from . import layout as L
from .segment import Segment, unlink
from .users import UserPage


def _shm_names() -> list[str]:
    try:
        return sorted(n for n in os.listdir(L.SHM_DIR) if n.startswith("Mst"))
    except FileNotFoundError:
        return []


def list_streams() -> list[str]:
    """Streams with a metadata page on the bus."""
    return [L.unescape(n[len("MstMeta") :]) for n in _shm_names() if n.startswith("MstMeta")]


def stream_page_names(stream: str) -> list[str]:
    """Every /dev/shm entry (without ``/``) that belongs to ``stream``."""
    prefixes = L.stream_prefixes(stream)
    exact = {p for p in prefixes if not p.endswith("@")}
    out = []
    for n in _shm_names():
        if n in exact or any(p.endswith("@") and n.startswith(p) for p in prefixes):
            out.append(n)
    return out


def unlink_stream_pages(stream: str, keep_lock: bool = False) -> int:
    lock = L.lock_name(stream).lstrip("/")
    n = 0
    for name in stream_page_names(stream):
        if keep_lock and name == lock:
            continue
        n += unlink("/" + name)
    return n


def writer_alive(stream: str) -> bool:
    """True if a live process holds the stream's writer lock."""
    try:
        seg = Segment.open(L.lock_name(stream))
    except posix_ipc.ExistentialError:
        return False
    try:
        got = seg.lock(exclusive=False, blocking=False)
        if got:
            seg.unlock()
        return not got
    finally:
        seg.close()


def cleanup_stream(stream: str, force: bool = False) -> int:
    """Remove every page of ``stream`` if its writer is dead (or ``force``); returns count."""
    if not force and writer_alive(stream):
        return 0
    try:
        seg = Segment.open(L.meta_name(stream), min_size=L.META_HDR.size)
    except (posix_ipc.ExistentialError, ValueError):
        pass
    else:
        from .meta import MetaPage

        MetaPage(seg).mark_closed()  # readers still attached learn the stream is gone
        seg.close()
    return unlink_stream_pages(stream)


def _streams_with_pages() -> set[str]:
    out = set()
    for n in _shm_names():
        for kind in ("MstMeta", "MstLock", "MstUser", "MstSTATE"):
            if n.startswith(kind):
                out.add(L.unescape(n[len(kind) :]))
        for kind in ("MstTrak", "MstData"):
            if n.startswith(kind) and "@" in n:
                out.add(L.unescape(n[len(kind) : n.rindex("@")]))
    return out


def cleanup_dead() -> int:
    """Remove dead writers' streams and dead readers' slots; returns pages+slots removed."""
    n = 0
    for stream in sorted(_streams_with_pages()):
        if not writer_alive(stream):
            n += cleanup_stream(stream)
            continue
        try:
            seg = Segment.open(L.user_name(stream), min_size=L.USER_SIZE)
        except (posix_ipc.ExistentialError, ValueError):
            continue
        try:
            n += UserPage(seg).reap_dead()
        finally:
            seg.close()
    return n
