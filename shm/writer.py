"""StreamWriter: the one process (an input) that publishes a stream on the bus.

Live: :meth:`StreamWriter.append` copies the payload into the track's current data
page, writes a part record, then publishes it by storing the new ``parts end``
(payload first, index last: readers never see half a packet). Keys, fragments and
pages are maintained on the way; retention drops whole fragments from the front once
the rest still covers the DVR window and unlinks data pages nobody can reach anymore.

VoD: the input computes the whole index once (:meth:`set_index`); pages are planned
but empty; readers announce the key they want on the user page and the input loads
the pages :meth:`wanted_pages` names (:meth:`load_page`), unloading idle ones.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import posix_ipc

from common.defaults import AUDIO_KEY_INTERVAL_MS, DVR_MS, FRAGMENT_MS, PAGE_TIMEOUT_S
from common.errors import UsageError

from . import layout as L
from .errors import ShmFormatError, StreamBusy
from .meta import MetaPage, StreamMeta, write_state
from .model import StreamState, TrackMeta
from .segment import Segment, unlink
from .track import TrackPage
from .users import UserPage, Waker, pid_alive

FLIP_BYTES = 8 * 1024 * 1024
FLIP_MS = 60_000
VOD_MIN_PAGE_MS = 20_000
LIVE_PAGE_SIZE = 16 * 1024 * 1024  # nominal; tmpfs backs only written bytes
MIN_FRAGMENTS = 3  # retention never leaves fewer (MistServer boots playback at 3)
DEFAULT_CAPS = (4096, 256, 128, 16)  # parts, keys, fragments, pages
M32 = L.MASK32
_PART_PACK = L.PART.pack_into
_U32_UNPACK = L.U32.unpack_from
_OFF_PARTS_END = L.OFF_PARTS_END  # module constants: no attribute lookups in append
_OFF_EPOCH = L.OFF_EPOCH
_OFF_SLEEPERS = L.OFF_SLEEPERS
BACK_AHEAD = 1 << 20  # live data pages get memory this much at a time (see _back)
_U64_PACK = L.U64.pack_into


class _Track:
    """Writer-private mirror of one track page (shared memory is written, not read)."""

    __slots__ = (
        "bps",
        "data",
        "data_cap",
        "data_pos",
        "data_ready",
        "data_view",
        "dropped",
        "firstms",
        "frag_first_key",
        "frag_size",
        "frag_time",
        "frags_end",
        "frags_mask",
        "frags_off",
        "frags_start",
        "is_video",
        "key_lo",
        "key_parts",
        "key_size",
        "key_time",
        "keys_end",
        "keys_mask",
        "keys_off",
        "keys_start",
        "last_dts",
        "lastms",
        "loaded",
        "maxbps",
        "meta",
        "name",
        "page",
        "page_first_key",
        "page_first_part",
        "page_first_time",
        "page_lo",
        "pages_end",
        "pages_mask",
        "pages_off",
        "pages_start",
        "parts_end",
        "parts_mask",
        "parts_off",
        "parts_start",
        "used",
        "view",
        "window_bytes",
    )

    def __init__(self, meta: TrackMeta, page: TrackPage, name: str) -> None:
        self.meta = meta
        self.is_video = meta.type == "video"
        self.name = name
        self.attach(page)
        self.parts_start = self.parts_end = 0
        self.keys_start = self.keys_end = 0
        self.frags_start = self.frags_end = 0
        self.pages_start = self.pages_end = 0
        self.last_dts: int | None = None
        self.key_time = self.key_parts = self.key_size = 0
        self.frag_time = self.frag_first_key = self.frag_size = 0
        self.firstms = self.lastms = self.bps = self.maxbps = 0
        self.window_bytes = 0
        self.dropped = 0
        self.page_lo = self.key_lo = 0  # low 32 bits of the current page and key numbers
        # current live data page
        self.data: Segment | None = None
        self.data_view = memoryview(b"")
        self.data_pos = 0
        self.data_cap = 0
        self.data_ready = 0  # bytes of the current live page already backed (fallocate)
        self.page_first_time = 0
        self.page_first_part = 0
        self.page_first_key = 0
        # VoD: loaded data pages and when a reader last wanted them
        self.loaded: dict[int, Segment] = {}
        self.used: dict[int, float] = {}

    def attach(self, page: TrackPage) -> None:
        self.page = page
        self.view = page.view
        self.parts_off, self.keys_off, self.frags_off, self.pages_off = (
            page.parts_off,
            page.keys_off,
            page.frags_off,
            page.pages_off,
        )
        self.parts_mask = page.parts_cap - 1
        self.keys_mask = page.keys_cap - 1
        self.frags_mask = page.frags_cap - 1
        self.pages_mask = page.pages_cap - 1

    def publish_counters(self) -> None:
        L.COUNTERS.pack_into(
            self.view,
            L.OFF_COUNTERS,
            self.parts_start,
            self.parts_end,
            self.keys_start,
            self.keys_end,
            self.frags_start,
            self.frags_end,
            self.pages_start,
            self.pages_end,
        )

    def publish_stats(self) -> None:
        L.STATS.pack_into(self.view, L.OFF_STATS, self.firstms, self.lastms, self.bps, self.maxbps)


class StreamWriter:
    """Exclusive writer of one stream's pages (see module docstring)."""

    def __init__(
        self,
        stream: str,
        *,
        live: bool = True,
        dvr_ms: int = DVR_MS,
        fragment_ms: int = FRAGMENT_MS,
        source: str = "",
    ) -> None:
        self.stream = stream
        self.live = live
        self.dvr_ms = dvr_ms
        self.fragment_ms = fragment_ms
        self._closed = False
        self._lock = self._take_lock(stream)
        self._meta_seg = Segment.create(L.meta_name(stream), L.META_SIZE, exclusive=False)
        self._state_seg = Segment.create(L.state_name(stream), L.STATE_SIZE, exclusive=False)
        self._user_seg = Segment.create(L.user_name(stream), L.USER_SIZE, exclusive=False)
        self._metapage = MetaPage(self._meta_seg)
        self.users = UserPage(self._user_seg)
        self._waker = Waker(self.users)
        self._wake = self._waker.wake
        self._wake_futex = self._waker.wake_futex
        self._user_view = self.users.view
        self.meta = StreamMeta(live=live, source=source, fragment_ms=fragment_ms, dvr_ms=dvr_ms)
        self._tracks: dict[int, _Track] = {}
        self._gen = 0
        self._appends = 0
        self._last_housekeeping = time.monotonic()
        self.last_viewer_time = time.monotonic()
        self.set_state(StreamState.INIT)
        self._metapage.publish(self.meta)

    # -- lifetime -----------------------------------------------------------------------
    @staticmethod
    def _take_lock(stream: str) -> Segment:
        name = L.lock_name(stream)
        for _ in range(100):
            reclaimed = True
            try:
                seg = Segment.open(name, min_size=L.LOCK_SIZE)
            except posix_ipc.ExistentialError:
                try:
                    seg = Segment.create(name, L.LOCK_SIZE)
                    reclaimed = False
                except posix_ipc.ExistentialError:
                    continue  # lost a creation race: open the winner's
            if not _lock_briefly(seg):
                pid = L.LOCK.unpack_from(seg.view, 0)[0]
                seg.close()
                raise StreamBusy(f"stream {stream!r} is already written by pid {pid}")
            if not seg.same_inode_as_name():
                seg.close()  # its owner unlinked it while we waited: start over
                continue
            if reclaimed:
                _remove_leftovers(stream)
            L.LOCK.pack_into(seg.view, 0, os.getpid(), time.time())
            return seg
        raise StreamBusy(f"could not settle the writer lock of {stream!r}")

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, unlink: bool = True) -> None:
        """Stop writing; with ``unlink`` nothing of the stream stays under /dev/shm."""
        if self._closed:
            return
        self._closed = True
        self._metapage.mark_closed()
        try:
            self._waker.wake_all()
        finally:
            self._waker.close()
        for t in self._tracks.values():
            self._drop_track_pages(t, unlink)
        segs = (self._meta_seg, self._state_seg, self._user_seg)
        for seg in segs:
            if unlink:
                seg.unlink()
            seg.close()
        if unlink:
            self._lock.unlink()
        self._lock.close()  # closing the fd releases the flock

    def _drop_track_pages(self, t: _Track, unlink_pages: bool) -> None:
        if t.data is not None:
            t.data.close()
            t.data = None
        for seg in t.loaded.values():
            seg.close()
        t.loaded.clear()
        if unlink_pages:
            for n in range(t.pages_start, t.pages_end):
                unlink(L.data_name(self.stream, t.meta.id, n))
            t.page.seg.unlink()
        t.page.seg.close()

    # -- metadata -----------------------------------------------------------------------
    def set_state(self, state: StreamState, progress: int = 0) -> None:
        write_state(self._state_seg, state, progress)
        self.meta.state = state
        self.meta.progress = progress
        if self._tracks or state != StreamState.INIT:
            self._waker.wake_all()

    def set_error(self, text: str) -> None:
        """Leave a reason readers can show (``StreamMeta.error``) and set state INVALID."""
        self.meta.error = text
        self._metapage.publish(self.meta)
        self.set_state(StreamState.INVALID)  # wakes every reader

    def error_seen(self) -> bool:
        """True once a live reader has loaded the metadata carrying the error."""
        return any(s.flags & L.SLOT_FLAG_SAW_ERROR and pid_alive(s.pid) for s in self.users.slots())

    def linger(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Keep the stream (and its error) on the bus until a reader has seen the error,
        ``seconds`` pass or ``stop`` is set; True if a reader saw it. Polls every 20 ms:
        this runs once, on the way out of a failed input."""
        deadline = time.monotonic() + seconds
        while not self.error_seen():
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                return False
            if stop is not None:
                stop.wait(min(0.02, left))
            else:
                time.sleep(min(0.02, left))
        return True

    def _publish_meta(self) -> None:
        self._metapage.publish(self.meta)
        self._waker.wake_all()

    def add_track(self, meta: TrackMeta) -> int:
        tid = (
            meta.id if meta.id and meta.id not in self._tracks else max(self._tracks, default=0) + 1
        )
        meta = replace(meta, id=tid)
        name = L.track_name(self.stream, tid, self._next_gen())
        caps = DEFAULT_CAPS
        seg = Segment.create(name, L.track_page_size(*caps), exclusive=False)
        page = TrackPage.create(seg, tid, self._gen, caps, L.TRACK_STATUS_READY)
        self._tracks[tid] = _Track(meta, page, name)
        self.meta.tracks[tid] = meta
        self.meta.pages[tid] = name
        self._publish_meta()
        return tid

    def update_track(self, track: int, **fields: Any) -> None:
        t = self._track(track)
        for k in fields:
            if k not in TrackMeta.__dataclass_fields__ or k == "id":
                raise UsageError(f"TrackMeta has no settable field {k!r}")
        t.meta = replace(t.meta, **fields)
        t.is_video = t.meta.type == "video"
        self.meta.tracks[track] = t.meta
        self._publish_meta()

    def remove_track(self, track: int) -> None:
        t = self._tracks.pop(track)
        del self.meta.tracks[track]
        del self.meta.pages[track]
        self._publish_meta()
        t.page.set_status(L.TRACK_STATUS_RELOAD)
        self._drop_track_pages(t, True)

    def _track(self, track: int) -> _Track:
        try:
            return self._tracks[track]
        except KeyError:
            raise UsageError(f"stream {self.stream!r} has no track {track}") from None

    def _next_gen(self) -> int:
        self._gen += 1
        return self._gen

    @property
    def tracks(self) -> dict[int, TrackMeta]:
        return {tid: t.meta for tid, t in self._tracks.items()}

    def stats(self, track: int) -> tuple[int, int, int, int]:
        """(firstms, lastms, bps, maxbps) of a track as published."""
        t = self._track(track)
        return t.firstms, t.lastms, t.bps, t.maxbps

    # -- live ---------------------------------------------------------------------------
    def append(
        self, track: int, dts: int, offset: int, keyframe: bool, data: bytes | memoryview
    ) -> None:
        t = self._tracks.get(track)
        if t is None:
            raise UsageError(f"stream {self.stream!r} has no track {track}")
        last = t.last_dts
        if last is not None and dts < last:
            t.dropped += 1
            L.U32.pack_into(t.view, 28, t.dropped & M32)
            return
        n = len(data)
        if last is None:
            t.firstms = dts
            self._start_key(t, dts, n)
        elif (keyframe if t.is_video else dts - t.key_time >= AUDIO_KEY_INTERVAL_MS) and (
            dts > t.key_time or t.key_parts == 0
        ):
            self._start_key(t, dts, n)
        pos = t.data_pos
        if pos + n > t.data_ready:
            if pos + n > t.data_cap:
                self._new_live_page(t, dts, n, t.keys_end - 1)
                pos = 0
            self._back(t, pos + n)
        t.data_view[pos : pos + n] = data
        end = t.parts_end
        if end - t.parts_start > t.parts_mask:
            self._grow(t, parts=2)
        view = t.view
        _PART_PACK(view, t.parts_off + (end & t.parts_mask) * 32, dts, pos, t.page_lo, n, offset,
                   t.key_lo, keyframe)  # fmt: skip
        _U64_PACK(view, _OFF_PARTS_END, end + 1)  # publish
        t.parts_end = end + 1
        t.last_dts = dts
        t.data_pos = pos + n
        t.key_parts += 1
        t.key_size += n
        t.frag_size += n
        t.window_bytes += n
        # A reader about to sleep raises the sleepers flag, fences, then checks for data
        # (reader._sleep); we stored data, now we check the flag. No fence here: it
        # would cost a tenth of an append, and our store is visible within nanoseconds
        # while the reader spends microseconds between its store and its look. Were a
        # wake-up missed all the same, the next packet's check wakes the reader.
        uv = self._user_view
        if _U32_UNPACK(uv, _OFF_SLEEPERS)[0]:
            self._wake_futex()  # blocked readers: one syscall wakes them all
        if _U32_UNPACK(uv, _OFF_EPOCH)[0] != self._waker.epoch:
            self._wake()  # a socket (asyncio) reader started waiting since the last look
        self._appends += 1
        if not self._appends & 0xFF and time.monotonic() - self._last_housekeeping > 1.0:
            self._housekeeping()

    @staticmethod
    def _back(t: _Track, upto: int) -> None:
        """Allocate the live page's memory ``BACK_AHEAD`` at a time: one ``fallocate``
        instead of a page fault (allocate + zero) every 4 KiB inside the copy, about
        twice as cheap per byte, and a full /dev/shm fails here with an OSError instead
        of killing the writer with SIGBUS in the middle of a copy."""
        if t.data is None:
            return
        new = min(t.data_cap, max(upto, t.data_ready + BACK_AHEAD))
        os.posix_fallocate(t.data.fd, t.data_ready, new - t.data_ready)
        t.data_ready = new

    def _housekeeping(self) -> None:
        """Free the slots of readers that died (their wake-up socket or pid is gone)."""
        self._last_housekeeping = time.monotonic()
        self._waker.dead = []  # refused wake-ups only hint; the pid check below decides
        self.users.reap_dead()

    def _start_key(self, t: _Track, dts: int, size: int) -> None:
        if t.keys_end > t.keys_start:  # close the open key
            k = t.keys_end - 1
            L.KEY.pack_into(
                t.view,
                t.keys_off + (k & t.keys_mask) * 32,
                t.key_time,
                t.parts_end - t.key_parts,
                t.key_parts,
                t.key_size,
                max(1, dts - t.key_time),
                (t.pages_end - 1) & M32,
            )
        if (
            t.data is None
            or t.data_pos > FLIP_BYTES
            or dts - t.page_first_time > FLIP_MS
            or t.data_pos + size > t.data_cap
        ):
            self._new_live_page(t, dts, size, t.keys_end)
        if t.keys_end - t.keys_start > t.keys_mask:
            self._grow(t, keys=2)
        k = t.keys_end
        L.KEY.pack_into(
            t.view,
            t.keys_off + (k & t.keys_mask) * 32,
            dts,
            t.parts_end,
            0,
            0,
            0,
            (t.pages_end - 1) & M32,
        )
        t.keys_end = k + 1
        t.key_lo = k & M32
        L.U64.pack_into(t.view, L.OFF_KEYS_END, k + 1)
        t.key_time, t.key_parts, t.key_size = dts, 0, 0
        t.lastms = dts
        self._write_page_rec(t, t.pages_end - 1, L.PAGE_LOADED)
        if t.frags_end == t.frags_start or dts - t.frag_time >= self.fragment_ms:
            self._start_fragment(t, dts, k)

    def _start_fragment(self, t: _Track, dts: int, key: int) -> None:
        if t.frags_end > t.frags_start:  # close the open fragment
            f = t.frags_end - 1
            dur = max(1, dts - t.frag_time)
            L.FRAG.pack_into(
                t.view, t.frags_off + (f & t.frags_mask) * 32, t.frag_time, t.frag_first_key,
                key - t.frag_first_key, t.frag_size, dur,
            )  # fmt: skip
            t.maxbps = max(t.maxbps, t.frag_size * 1000 // dur)
            t.bps = t.window_bytes * 1000 // max(1, dts - t.firstms)
        if t.frags_end - t.frags_start > t.frags_mask:
            self._grow(t, frags=2)
        f = t.frags_end
        L.FRAG.pack_into(t.view, t.frags_off + (f & t.frags_mask) * 32, dts, key, 0, 0, 0)
        t.frags_end = f + 1
        L.U64.pack_into(t.view, L.OFF_FRAGS_END, f + 1)
        t.frag_time, t.frag_first_key, t.frag_size = dts, key, 0
        if self.live:
            self._retain(t, dts)
        t.publish_stats()

    def _retain(self, t: _Track, now: int) -> None:
        """Drop whole fragments from the front while the rest still covers the DVR window.

        Non-video tracks also keep data from before the oldest video key, so a reader
        starting there finds audio for it.
        """
        limit = now - self.dvr_ms
        if not t.is_video:
            video_first = [
                v.firstms for v in self._tracks.values() if v.is_video and v.last_dts is not None
            ]
            if video_first:
                limit = min(limit, *video_first)
        changed = False
        while t.frags_end - t.frags_start > MIN_FRAGMENTS:
            nxt = L.FRAG.unpack_from(
                t.view, t.frags_off + ((t.frags_start + 1) & t.frags_mask) * 32
            )
            if nxt[0] > limit:
                break
            first_key = nxt[1]
            for k in range(t.keys_start, first_key):
                t.window_bytes -= L.KEY.unpack_from(t.view, t.keys_off + (k & t.keys_mask) * 32)[3]
            key = L.KEY.unpack_from(t.view, t.keys_off + (first_key & t.keys_mask) * 32)
            t.frags_start += 1
            t.keys_start = first_key
            t.parts_start = key[1]
            t.firstms = key[0]
            changed = True
        if not changed:
            return
        t.publish_counters()
        # unlink data pages whose every part is gone (never the page being written)
        while t.pages_start < t.pages_end - 1:
            rec = L.PAGE.unpack_from(t.view, t.pages_off + (t.pages_start & t.pages_mask) * 64)
            if rec[1] + rec[4] > t.parts_start:
                break
            unlink(L.data_name(self.stream, t.meta.id, t.pages_start))
            t.pages_start += 1
        t.publish_counters()

    def _new_live_page(self, t: _Track, dts: int, size: int, first_key: int) -> None:
        if t.data is not None:  # finalise the page we leave
            self._write_page_rec(t, t.pages_end - 1, L.PAGE_FULL)
            t.data.close()
        if t.pages_end - t.pages_start > t.pages_mask:
            self._grow(t, pages=2)
        n = t.pages_end
        cap = max(LIVE_PAGE_SIZE, 2 * size)
        seg = Segment.create(L.data_name(self.stream, t.meta.id, n), cap, exclusive=False)
        t.data, t.data_view, t.data_pos, t.data_cap = seg, seg.view, 0, cap
        t.data_ready = 0
        t.page_first_time, t.page_first_part, t.page_first_key = dts, t.parts_end, first_key
        self._write_page_rec(t, n, L.PAGE_LOADED)
        t.pages_end = n + 1
        t.page_lo = n & M32
        L.U64.pack_into(t.view, L.OFF_PAGES_END, n + 1)

    def _write_page_rec(self, t: _Track, n: int, state: int) -> None:
        L.PAGE.pack_into(
            t.view, t.pages_off + (n & t.pages_mask) * 64, t.page_first_key, t.page_first_part,
            t.page_first_time, max(t.page_first_time, t.last_dts or 0),
            t.parts_end - t.page_first_part, t.keys_end - t.page_first_key, t.data_cap,
            t.data_pos, state,
        )  # fmt: skip

    # -- growth -------------------------------------------------------------------------
    def _grow(
        self, t: _Track, parts: int = 1, keys: int = 1, frags: int = 1, pages: int = 1
    ) -> None:
        """Move the track to a bigger page (readers follow through the metadata)."""
        old = t.page
        caps = (
            old.parts_cap * parts,
            old.keys_cap * keys,
            old.frags_cap * frags,
            old.pages_cap * pages,
        )
        self._resize(t, caps)

    def _resize(self, t: _Track, caps: tuple[int, int, int, int], copy: bool = True) -> None:
        old = t.page
        name = L.track_name(self.stream, t.meta.id, self._next_gen())
        seg = Segment.create(name, L.track_page_size(*caps), exclusive=False)
        new = TrackPage.create(seg, t.meta.id, self._gen, caps, L.TRACK_STATUS_READY)
        if copy:
            rings = (
                (
                    t.parts_start,
                    t.parts_end,
                    old.parts_off,
                    old.parts_cap,
                    new.parts_off,
                    new.parts_cap,
                    32,
                ),
                (
                    t.keys_start,
                    t.keys_end,
                    old.keys_off,
                    old.keys_cap,
                    new.keys_off,
                    new.keys_cap,
                    32,
                ),
                (
                    t.frags_start,
                    t.frags_end,
                    old.frags_off,
                    old.frags_cap,
                    new.frags_off,
                    new.frags_cap,
                    32,
                ),
                (
                    t.pages_start,
                    t.pages_end,
                    old.pages_off,
                    old.pages_cap,
                    new.pages_off,
                    new.pages_cap,
                    64,
                ),
            )
            for start, end, ooff, ocap, noff, ncap, size in rings:
                n = start
                while n < end:  # copy runs that are contiguous in both rings
                    oslot, nslot = n & (ocap - 1), n & (ncap - 1)
                    run = min(ocap - oslot, ncap - nslot, end - n)
                    a, b = ooff + oslot * size, noff + nslot * size
                    new.view[b : b + run * size] = old.view[a : a + run * size]
                    n += run
        t.attach(new)
        t.name = name
        t.publish_counters()
        t.publish_stats()
        L.U32.pack_into(t.view, 28, t.dropped & M32)
        self.meta.pages[t.meta.id] = name
        self._publish_meta()
        old.set_status(L.TRACK_STATUS_RELOAD)
        old.seg.unlink()
        old.seg.close()

    # -- VoD ----------------------------------------------------------------------------
    def set_index(self, track: int, parts: Sequence[tuple[int, int, int, bool]]) -> None:
        """Write the complete index of a VoD track and plan its data pages."""
        t = self._track(track)
        keys: list[list[int]] = []  # time, first part, parts, size, page
        pages: list[list[int]] = []  # first key, first part, first time, last time, size
        frags: list[list[int]] = []  # time, first key, size
        part_recs: list[tuple[int, int, int, int, int, int, int]] = []
        pos = 0
        last_key_time = 0
        for i, (dts, off, size, kf) in enumerate(parts):
            if i and dts < parts[i - 1][0]:
                raise UsageError(f"set_index: track {track} part {i} dts {dts} goes backwards")
            is_key = not keys or (
                kf if t.is_video else dts - last_key_time >= AUDIO_KEY_INTERVAL_MS
            )
            if is_key:
                if not pages or (
                    (pages[-1][4] > FLIP_BYTES or dts - pages[-1][2] > FLIP_MS)
                    and dts - pages[-1][2] >= VOD_MIN_PAGE_MS
                ):
                    pages.append([len(keys), i, dts, dts, 0])
                    pos = 0
                if not frags or dts - frags[-1][0] >= self.fragment_ms:
                    frags.append([dts, len(keys), 0])
                keys.append([dts, i, 0, 0, len(pages) - 1])
                last_key_time = dts
            part_recs.append((dts, pos, len(pages) - 1, size, off, len(keys) - 1, 1 if kf else 0))
            pos += size
            keys[-1][2] += 1
            keys[-1][3] += size
            pages[-1][3] = dts
            pages[-1][4] += size
            frags[-1][2] += size
        need = tuple(
            max(L.next_pow2(max(1, n)), d)
            for n, d in zip(
                (len(part_recs), len(keys), len(frags), len(pages)), DEFAULT_CAPS, strict=True
            )
        )
        for n in range(t.pages_start, t.pages_end):
            unlink(L.data_name(self.stream, track, n))
        for seg in t.loaded.values():
            seg.close()
        t.loaded.clear()
        t.used.clear()
        if any(
            n > c
            for n, c in zip(
                need,
                (t.page.parts_cap, t.page.keys_cap, t.page.frags_cap, t.page.pages_cap),
                strict=True,
            )
        ):
            self._resize(t, need, copy=False)  # type: ignore[arg-type]
        v = t.view
        for n, rec in enumerate(part_recs):
            L.PART.pack_into(v, t.parts_off + (n & t.parts_mask) * 32, *rec)
        end_time = part_recs[-1][0] if part_recs else 0
        for n, (ktime, kfirst, kparts, ksize, kpage) in enumerate(keys):
            nxt = keys[n + 1][0] if n + 1 < len(keys) else end_time
            L.KEY.pack_into(
                v,
                t.keys_off + (n & t.keys_mask) * 32,
                ktime,
                kfirst,
                kparts,
                ksize,
                max(1, nxt - ktime),
                kpage,
            )
        t.maxbps = 0
        for n, (ftime, fkey, fsize) in enumerate(frags):
            nkey = frags[n + 1][1] if n + 1 < len(frags) else len(keys)
            nxt = frags[n + 1][0] if n + 1 < len(frags) else end_time
            dur = max(1, nxt - ftime)
            t.maxbps = max(t.maxbps, fsize * 1000 // dur)
            L.FRAG.pack_into(
                v, t.frags_off + (n & t.frags_mask) * 32, ftime, fkey, nkey - fkey, fsize, dur
            )
        for n, (pkey, ppart, ptime, plast, psize) in enumerate(pages):
            nkey = pages[n + 1][0] if n + 1 < len(pages) else len(keys)
            npart = pages[n + 1][1] if n + 1 < len(pages) else len(part_recs)
            L.PAGE.pack_into(v, t.pages_off + (n & t.pages_mask) * 64, pkey, ppart, ptime, plast,
                             npart - ppart, nkey - pkey, psize, 0, L.PAGE_PLANNED)  # fmt: skip
        t.parts_start, t.parts_end = 0, len(part_recs)
        t.keys_start, t.keys_end = 0, len(keys)
        t.frags_start, t.frags_end = 0, len(frags)
        t.pages_start, t.pages_end = 0, len(pages)
        t.firstms = part_recs[0][0] if part_recs else 0
        t.lastms = end_time
        total = sum(r[3] for r in part_recs)
        t.bps = total * 1000 // max(1, end_time - t.firstms)
        t.last_dts = end_time
        t.publish_stats()
        t.publish_counters()
        self._waker.wake_all()

    def page_parts(self, track: int, page_no: int) -> range:
        t = self._track(track)
        rec = t.page.page(page_no)
        return range(rec.first_part, rec.first_part + rec.parts)

    def load_page(self, track: int, page_no: int, payloads: Iterable[bytes | memoryview]) -> None:
        """Fill data page ``page_no`` with its parts' payloads, in order, and publish it."""
        t = self._track(track)
        if not t.pages_start <= page_no < t.pages_end:
            raise UsageError(f"track {track} has no page {page_no}")
        if page_no in t.loaded:
            return
        rec = t.page.page(page_no)
        seg = Segment.create(
            L.data_name(self.stream, track, page_no), max(1, rec.size), exclusive=False
        )
        view = seg.view
        it = iter(payloads)
        for n in range(rec.first_part, rec.first_part + rec.parts):
            _dts, pos, _pg, size, _o, _k, _f = L.PART.unpack_from(
                t.view, t.parts_off + (n & t.parts_mask) * 32
            )
            try:
                data = next(it)
            except StopIteration:
                seg.unlink()
                seg.close()
                raise UsageError(
                    f"load_page: track {track} page {page_no} ran out of payloads at part {n}"
                ) from None
            if len(data) != size:
                seg.unlink()
                seg.close()
                raise UsageError(
                    f"load_page: track {track} part {n} is {len(data)} bytes, index says {size}"
                )
            view[pos : pos + size] = data
        L.PAGE.pack_into(t.view, t.pages_off + (page_no & t.pages_mask) * 64, rec.first_key, rec.first_part,
                         rec.first_time, rec.last_time, rec.parts, rec.keys, rec.size, rec.size, L.PAGE_LOADED)  # fmt: skip
        t.loaded[page_no] = seg
        t.used[page_no] = time.monotonic()
        self._waker.wake_all()

    def _scan_viewers(self) -> list[tuple[int, int]]:
        """(track, key) wants of live readers; frees dead readers' slots."""
        wants: list[tuple[int, int]] = []
        any_alive = False
        for s in self.users.slots():
            if not pid_alive(s.pid):
                self.users.release(s.index)
                continue
            any_alive = True
            wants.extend(s.wants.items())
        if any_alive:
            self.last_viewer_time = time.monotonic()
        return wants

    def wanted_pages(self) -> list[tuple[int, int]]:
        """Not-yet-loaded (track, page) pairs readers wait for or reach next, most urgent first."""
        now = time.monotonic()
        out: list[tuple[int, int]] = []
        later: list[tuple[int, int]] = []
        for track, key in self._scan_viewers():
            t = self._tracks.get(track)
            if t is None or t.keys_end == 0:
                continue
            key = min(max(key, t.keys_start), t.keys_end - 1)
            page = t.page.page_of_key(key)
            for p, dest in ((page, out), (page + 1, later)):
                if p >= t.pages_end:
                    continue
                t.used[p] = now
                if p not in t.loaded and (track, p) not in out and (track, p) not in dest:
                    dest.append((track, p))
        return out + [w for w in later if w not in out]

    def unload_unused(self, timeout_s: float = PAGE_TIMEOUT_S) -> int:
        """Unload VoD pages no reader wanted for ``timeout_s``; returns how many."""
        self.wanted_pages()  # refreshes the use times
        now = time.monotonic()
        n = 0
        for t in self._tracks.values():
            for page_no in [p for p in t.loaded if now - t.used.get(p, 0) > timeout_s]:
                rec = t.page.page(page_no)
                L.PAGE.pack_into(t.view, t.pages_off + (page_no & t.pages_mask) * 64, rec.first_key, rec.first_part,
                                 rec.first_time, rec.last_time, rec.parts, rec.keys, rec.size, 0, L.PAGE_UNLOADED)  # fmt: skip
                seg = t.loaded.pop(page_no)
                seg.unlink()
                seg.close()
                t.used.pop(page_no, None)
                n += 1
        return n

    def loaded_pages(self, track: int) -> list[int]:
        return sorted(self._track(track).loaded)

    def has_viewers(self) -> bool:
        for s in self.users.slots():
            if pid_alive(s.pid):
                self.last_viewer_time = time.monotonic()
                return True
        return False


def _lock_briefly(seg: Segment) -> bool:
    """Take the writer lock; a liveness probe (shared lock) may hold it for microseconds."""
    for _ in range(5):
        if seg.lock(blocking=False):
            return True
        if not pid_alive(L.LOCK.unpack_from(seg.view, 0)[0]):
            time.sleep(0.002)  # owner gone: only a probe can be holding it
            continue
        return False
    return False


def _remove_leftovers(stream: str) -> None:
    """Tell readers of a dead writer's pages that they are gone, then unlink them."""
    try:
        seg = Segment.open(L.meta_name(stream), min_size=L.META_HDR.size)
    except (posix_ipc.ExistentialError, ShmFormatError):
        seg = None
    if seg is not None:
        MetaPage(seg).mark_closed()
        seg.close()
    from .cleanup import unlink_stream_pages

    unlink_stream_pages(stream, keep_lock=True)
