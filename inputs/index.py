"""The VoD index of a media file and its sidecar header (MistServer's ``.dtsh`` idea).

A :class:`MediaIndex` holds the tracks and, per track, one row per frame in decode
order: ``dts``/``offset`` (ms), payload ``size`` as it goes on the bus, ``keyframe``,
and where to find the frame again: ``pos``/``rsize`` (bytes in the file) and ``aux``
(a format-specific number: lace index, ordinal inside a PES, PyAV timestamp...).

The header is msgpack: ``{"v": HEADER_VERSION, "format", "size", "mtime_ns",
"byteorder", "tracks", "frames", "warnings"}`` with the columns stored as raw array
bytes. It is valid only for the same format, version and source size + mtime; anything
else (or a header that does not unpack) means "index again".
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from shm.model import TrackMeta

# 2: MP4 timed text is a "subtitle" track of cue payloads (version 1 headers say "tx3g"
# and hold the raw sample sizes); bump whenever what an input indexes changes meaning
HEADER_VERSION = 2
HEADER_SUFFIX = ".dtsh"
_COLUMNS = ("dts", "offset", "size", "pos", "rsize", "aux")


@dataclass
class TrackIndex:
    """Frames of one track as parallel columns (decode order)."""

    dts: array = field(default_factory=lambda: array("q"))
    offset: array = field(default_factory=lambda: array("q"))
    size: array = field(default_factory=lambda: array("q"))
    keyframe: bytearray = field(default_factory=bytearray)
    pos: array = field(default_factory=lambda: array("q"))
    rsize: array = field(default_factory=lambda: array("q"))
    aux: array = field(default_factory=lambda: array("q"))

    def __len__(self) -> int:
        return len(self.dts)

    def append(
        self,
        dts: int,
        offset: int,
        size: int,
        keyframe: bool,
        pos: int,
        rsize: int,
        aux: int = 0,
    ) -> None:
        self.dts.append(dts)
        self.offset.append(offset)
        self.size.append(size)
        self.keyframe.append(1 if keyframe else 0)
        self.pos.append(pos)
        self.rsize.append(rsize)
        self.aux.append(aux)

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` frames."""
        for name in _COLUMNS:
            del getattr(self, name)[n:]
        del self.keyframe[n:]

    def make_monotonic(self) -> int:
        """Clamp decode times that go backwards (keeping pts); returns how many moved."""
        moved = 0
        dts, off = self.dts, self.offset
        for i in range(1, len(dts)):
            if dts[i] < dts[i - 1]:
                off[i] += dts[i] - dts[i - 1]
                dts[i] = dts[i - 1]
                moved += 1
        return moved

    def parts(self) -> list[tuple[int, int, int, bool]]:
        """What ``StreamWriter.set_index`` takes."""
        kf = self.keyframe
        return [
            (d, o, s, bool(kf[i]))
            for i, (d, o, s) in enumerate(zip(self.dts, self.offset, self.size, strict=True))
        ]

    def to_record(self) -> dict[str, bytes]:
        rec = {name: getattr(self, name).tobytes() for name in _COLUMNS}
        rec["keyframe"] = bytes(self.keyframe)
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any], swap: bool) -> TrackIndex:
        out = cls()
        for name in _COLUMNS:
            col = array("q")
            col.frombytes(rec[name])
            if swap:
                col.byteswap()
            setattr(out, name, col)
        out.keyframe = bytearray(rec["keyframe"])
        if any(len(getattr(out, n)) != len(out.keyframe) for n in _COLUMNS):
            raise ValueError("index columns differ in length")
        return out


@dataclass
class MediaIndex:
    """Everything an input needs to publish a file: tracks, frames, what was wrong."""

    format: str
    tracks: list[TrackMeta]
    frames: dict[int, TrackIndex]
    warnings: list[str] = field(default_factory=list)

    def track_frames(self) -> Iterator[tuple[TrackMeta, TrackIndex]]:
        for meta in self.tracks:
            idx = self.frames.get(meta.id)
            if idx is not None:
                yield meta, idx

    def to_record(self, size: int, mtime_ns: int) -> dict[str, Any]:
        return {
            "v": HEADER_VERSION,
            "format": self.format,
            "size": size,
            "mtime_ns": mtime_ns,
            "byteorder": sys.byteorder,
            "tracks": [t.to_record() for t in self.tracks],
            "frames": {tid: idx.to_record() for tid, idx in self.frames.items()},
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> MediaIndex:
        swap = rec["byteorder"] != sys.byteorder
        return cls(
            str(rec["format"]),
            [TrackMeta.from_record(t) for t in rec["tracks"]],
            {int(k): TrackIndex.from_record(v, swap) for k, v in rec["frames"].items()},
            [str(w) for w in rec.get("warnings", [])],
        )


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mistpy" / "dtsh"


def header_candidates(source: str, cache_dir: str | None = None) -> list[Path]:
    """Where the header of ``source`` may live: next to it first, then the cache dir."""
    src = Path(source).resolve()
    digest = hashlib.sha1(str(src).encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    return [src.with_name(src.name + HEADER_SUFFIX), cache / f"{src.name}.{digest}{HEADER_SUFFIX}"]


def load_header(path: Path, fmt: str, size: int, mtime_ns: int) -> tuple[MediaIndex | None, str]:
    """The cached index at ``path`` if it still describes the source, else (None, why)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, "no header"
    except OSError as exc:
        return None, f"header unreadable: {exc.strerror or exc}"
    try:
        rec = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        if not isinstance(rec, dict):
            return None, "header is not a map"
        if rec.get("v") != HEADER_VERSION:
            return None, f"header version {rec.get('v')!r} is not {HEADER_VERSION}"
        if rec.get("format") != fmt:
            return None, f"header was made by the {rec.get('format')} input"
        if rec.get("size") != size or rec.get("mtime_ns") != mtime_ns:
            return None, "source changed since the header was written"
        return MediaIndex.from_record(rec), "ok"
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
        return None, f"header damaged: {exc}"


def save_header(path: Path, index: MediaIndex, size: int, mtime_ns: int) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a header."""
    blob = msgpack.packb(index.to_record(size, mtime_ns), use_bin_type=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)  # mkstemp makes it private; a header is not secret
            fh.write(blob)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
