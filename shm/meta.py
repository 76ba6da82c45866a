"""The stream metadata page (``/MstMeta<s>``) and the state page (``/MstSTATE<s>``).

Metadata changes rarely (a track added, init data arriving), so it is one msgpack
blob behind a seqlock: the writer makes the version odd, rewrites the blob, makes it
even again; a reader copies the blob and retries if the version moved or was odd.
Per-packet figures (firstms/lastms/bps) live in each track page's header instead and
are merged in by :meth:`StreamMeta` consumers (see ``reader.StreamReader.meta``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .errors import ShmFormatError
from .layout import META_HDR, META_STATUS_CLOSED, META_STATUS_READY, STATE, U64
from .model import StreamState, TrackMeta
from .segment import Segment


@dataclass
class StreamMeta:
    """A stream's description as readers see it."""

    live: bool = True
    tracks: dict[int, TrackMeta] = field(default_factory=dict)
    version: int = 0
    state: StreamState = StreamState.OFF
    progress: int = 0
    source: str = ""
    fragment_ms: int = 1_900
    dvr_ms: int = 50_000
    # track id -> name of its current track page (changes when the page grows)
    pages: dict[int, str] = field(default_factory=dict)
    # why the stream cannot be played (set with state INVALID by ``StreamWriter.set_error``)
    error: str = ""

    def to_record(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "source": self.source,
            "fragment_ms": self.fragment_ms,
            "dvr_ms": self.dvr_ms,
            "tracks": {tid: t.to_record() for tid, t in self.tracks.items()},
            "pages": self.pages,
            "error": self.error,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any], version: int) -> StreamMeta:
        try:
            tracks = {int(k): TrackMeta.from_record(v) for k, v in rec["tracks"].items()}
            return cls(
                live=bool(rec["live"]),
                tracks=tracks,
                version=version,
                source=str(rec.get("source", "")),
                fragment_ms=int(rec.get("fragment_ms", 1_900)),
                dvr_ms=int(rec.get("dvr_ms", 50_000)),
                pages={int(k): str(v) for k, v in rec.get("pages", {}).items()},
                error=str(rec.get("error", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ShmFormatError(f"metadata record malformed: {exc!r}") from exc


class MetaPage:
    """Seqlocked msgpack blob. One writer (``publish``), many readers (``load``)."""

    def __init__(self, seg: Segment) -> None:
        self.seg = seg

    @property
    def version(self) -> int:
        return U64.unpack_from(self.seg.view, 0)[0]

    @property
    def status(self) -> int:
        return META_HDR.unpack_from(self.seg.view, 0)[1]

    def publish(self, meta: StreamMeta) -> int:
        blob = msgpack.packb(meta.to_record(), use_bin_type=True)
        view = self.seg.view
        if META_HDR.size + len(blob) > len(view):
            raise ShmFormatError(f"metadata of {len(blob)} bytes exceeds the meta page")
        version = self.version
        U64.pack_into(view, 0, version + 1)  # odd: being rewritten
        view[META_HDR.size : META_HDR.size + len(blob)] = blob
        META_HDR.pack_into(view, 0, version + 1, META_STATUS_READY, len(blob), os.getpid())
        U64.pack_into(view, 0, version + 2)
        meta.version = (version + 2) // 2
        return meta.version

    def mark_closed(self) -> None:
        view = self.seg.view
        _v, _s, length, pid = META_HDR.unpack_from(view, 0)
        META_HDR.pack_into(view, 0, _v, META_STATUS_CLOSED, length, pid)

    def load(self, tries: int = 1000) -> StreamMeta:
        view = self.seg.view
        for _ in range(tries):
            v1, _status, length, _pid = META_HDR.unpack_from(view, 0)
            if v1 & 1:
                os.sched_yield()
                continue
            if META_HDR.size + length > len(view):
                raise ShmFormatError(f"meta page {self.seg.name}: blob length {length} too big")
            blob = bytes(view[META_HDR.size : META_HDR.size + length])
            if U64.unpack_from(view, 0)[0] != v1:
                continue
            if v1 == 0:
                raise ShmFormatError(f"meta page {self.seg.name} not yet published")
            try:
                rec = msgpack.unpackb(blob, raw=False, strict_map_key=False)
            except (ValueError, msgpack.UnpackException) as exc:
                raise ShmFormatError(f"meta page {self.seg.name}: bad msgpack: {exc}") from exc
            return StreamMeta.from_record(rec, v1 // 2)
        raise ShmFormatError(f"meta page {self.seg.name}: writer never finished an update")


def read_state(seg: Segment) -> tuple[StreamState, int]:
    status, progress = STATE.unpack_from(seg.view, 0)
    try:
        return StreamState(status), progress
    except ValueError:
        return StreamState.INVALID, progress


def write_state(seg: Segment, state: StreamState, progress: int) -> None:
    STATE.pack_into(seg.view, 0, int(state), max(0, min(255, progress)))
