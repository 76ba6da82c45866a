"""StreamReader: an output's view of one stream on the bus.

``read()`` merges the selected tracks in decode order. Per track it holds the next
part number; a part is visible once the writer stored a larger ``parts end``. After
copying a part record it re-reads ``parts start``: if the number fell below it the
slot may have been recycled, and the reader re-seeks to the oldest keyframe
(``skipped`` counts this). Payloads are memoryviews straight into the data page.

Interleaving: a live track that is empty but behind the packet we would return may
still get an earlier packet, so strict order waits for it (up to ``GIVE_UP_MS`` of the
other tracks' media time). Live outputs opt out of most of that wait with
``lag_wait_s``: a lagging track is waited for only while its expected next dts (its
newest dts plus its last step) would come first, and at most ``lag_wait_s`` of
wall-clock time per episode (``wait``/``wait_sync`` return by then); the episode lasts
until the track delivers a packet that is not late. Each track's own order is always
kept; VoD is always strictly ordered.

Waiting: ``wait_sync`` sleeps on the stream's futex word (one writer syscall wakes
every sleeper). ``fileno()``/``wait`` use a unix datagram socket in the abstract
namespace instead: before blocking the reader bumps its wait number on the user page
and re-checks for data; the writer sends a byte to readers whose number moved.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import struct
import time
from collections.abc import Iterable

import posix_ipc

from common.errors import UsageError

from . import layout as L
from .errors import ShmFormatError, StreamNotFound
from .futex import Futex, fence
from .meta import MetaPage, StreamMeta, read_state
from .model import Packet
from .segment import Segment
from .track import FragmentInfo, KeyInfo, TrackPage
from .users import UserPage

_U64_UNPACK = L.U64.unpack_from
_I64_UNPACK = L.I64.unpack_from
_PART_UNPACK = L.PART.unpack_from
_QQ_UNPACK = struct.Struct("<QQ").unpack_from
_OFF_PARTS_START = L.OFF_PARTS_START  # module constants: no attribute lookups when reading
_OFF_PARTS_END = L.OFF_PARTS_END
_MASK32 = L.MASK32
_U32_UNPACK = L.U32.unpack_from
_U32_PACK = L.U32.pack_into
_OFF_FUTEX = L.OFF_FUTEX
_OFF_SLEEPERS = L.OFF_SLEEPERS
_VS_UNPACK = struct.Struct("<QI").unpack_from  # meta page: version, status
_CLOSED = L.META_STATUS_CLOSED
SPIN_S = 50e-6  # wait_sync polls this long before it blocks ...
BUSY_READS = 4  # ... when it read more packets than this since its last wake-up
BUSY_GAP_S = 1e-3  # ... or its last blocking wait was shorter than this
SPIN_BACKOFF = 8  # waits without the quick-wake spin after a spin that found nothing
GIVE_UP_MS = 5_000  # a selected track silent this long (in others' media time) is not waited for
LIVE_LAG_WAIT_S = 0.005  # what live outputs pass as ``lag_wait_s``
META_CHECK_EVERY = 64  # reads between metadata version checks while data flows
SEEK_SLACK_MS = 50  # VoD seek: another track's frame starting this much before a key is kept


class _RTrack:
    """Reader-private state of one selected track."""

    __slots__ = (
        "end",
        "entry",
        "lag_since",
        "last_dts",
        "mask",
        "next_dts",
        "page",
        "page_no",
        "page_view",
        "parts_off",
        "pos",
        "tid",
        "view",
        "want_key",
    )

    def __init__(self, tid: int, page: TrackPage, entry: int) -> None:
        self.tid = tid
        self.entry = entry  # index of this track's want entry in our slot
        self.pos = 0
        self.last_dts = 0
        self.lag_since: float | None = None  # when we began waiting for this track
        self.want_key = -1
        self.end = 0  # cached parts end (re-read when pos reaches it)
        self.next_dts: int | None = None  # cached dts of part ``pos``
        self.page_no = -1
        self.page_view = memoryview(b"")
        self.attach(page)

    def attach(self, page: TrackPage) -> None:
        self.page = page
        self.view = page.view
        self.parts_off = page.parts_off
        self.mask = page.parts_cap - 1
        self.end = 0
        self.next_dts = None
        self.page_no = -1  # data page numbers stay valid, but re-check state once
        self.page_view = memoryview(b"")


class StreamReader:
    """Reads one stream (see module docstring)."""

    def __init__(self, stream: str, *, lag_wait_s: float | None = None) -> None:
        self.stream = stream
        # None: strict decode order; else the bounded live wait (module docstring)
        self.lag_wait_s = lag_wait_s
        self._lag_until: float | None = None  # while read() waits for a lagging track
        try:
            self._meta_seg = Segment.open(L.meta_name(stream), min_size=L.META_HDR.size)
        except posix_ipc.ExistentialError:
            raise StreamNotFound(f"stream {stream!r} is not on the bus") from None
        self._metapage = MetaPage(self._meta_seg)
        self._meta_view = self._meta_seg.view
        try:
            if self._metapage.status == L.META_STATUS_CLOSED:
                raise StreamNotFound(f"stream {stream!r} has ended")
            self._meta = self._metapage.load()
            self._state_seg = Segment.open(L.state_name(stream), min_size=L.STATE_SIZE)
            self._user_seg = Segment.open(L.user_name(stream), min_size=L.USER_SIZE)
        except (posix_ipc.ExistentialError, ShmFormatError):
            self._meta_seg.close()
            raise StreamNotFound(f"stream {stream!r} is not (yet) complete on the bus") from None
        self._meta_raw = self._meta.version * 2
        self._users = UserPage(self._user_seg)
        self._user_view = self._user_seg.view
        assert self._user_seg.map is not None
        self._futex = Futex(self._user_seg.map, L.OFF_FUTEX)
        self._token = secrets.randbits(63) | 1
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(L.socket_address(self._token))
        self._sock.setblocking(False)
        self._slot = self._users.claim(os.getpid(), self._token)
        self._wait_seq = 0
        self._pages: dict[int, TrackPage] = {}
        self._sel: list[_RTrack] = []
        self._follow_all = True
        self._positioned = False
        self._reads = 0
        self._waiting_on: list[_RTrack] | None = None
        self._blocked_page: tuple[_RTrack, int] | None = None
        self.closed = False
        self._saw_error = False
        self.skipped = 0
        self._reads_at_wake = 0  # self._reads when wait_sync last woke up
        self._quick_wake = False
        self._backoff = 0  # waits left before a quick wake-up may start a spin again
        self._map_tracks()
        self.select(None)

    # -- metadata -----------------------------------------------------------------------
    def _map_tracks(self) -> None:
        for tid, name in self._meta.pages.items():
            cur = self._pages.get(tid)
            if cur is not None and cur.seg.name == name:
                continue
            try:
                page = TrackPage(Segment.open(name, min_size=L.TRACK_HDR_SIZE, keep_fd=False))
            except posix_ipc.ExistentialError:
                continue  # replaced again meanwhile; the next version names the new one
            self._pages[tid] = page
            for rt in self._sel:
                if rt.tid == tid:
                    rt.attach(page)
        for tid in [t for t in self._pages if t not in self._meta.pages]:
            del self._pages[tid]
            self._sel = [rt for rt in self._sel if rt.tid != tid]

    def refresh(self) -> bool:
        """Reload the metadata if the writer changed it; True if it did."""
        raw, status = _VS_UNPACK(self._meta_view, 0)
        if status == _CLOSED:
            self.closed = True
        if raw == self._meta_raw or raw & 1:
            return False
        try:
            self._meta = self._metapage.load()
        except ShmFormatError:
            return False
        self._meta_raw = raw
        self._drain()  # the writer pokes every socket on a change; a futex sleeper's piles up
        self._map_tracks()
        if self._follow_all:
            known = {rt.tid for rt in self._sel}
            start = max((rt.last_dts for rt in self._sel), default=0)
            for tid in sorted(self._pages):
                if tid not in known:
                    rt = self._add_sel(tid)
                    if rt is not None:
                        rt.pos = self._pages[tid].find_part(start) if self._positioned else rt.pos
                        rt.last_dts = start
        return True

    @property
    def meta(self) -> StreamMeta:
        """Current metadata, with per-track figures and state merged in."""
        self.refresh()
        m = self._meta
        for tid, page in self._pages.items():
            tm = m.tracks.get(tid)
            if tm is not None:
                tm.firstms, tm.lastms, tm.bps, tm.maxbps = page.stats()
        m.state, m.progress = read_state(self._state_seg)
        # flag that we saw the error: a failed input lingers until someone has
        if m.error and not self._saw_error and self._slot >= 0:
            self._saw_error = True
            self._users.set_flag(self._slot, L.SLOT_FLAG_SAW_ERROR)
        return m

    # -- selection and seeking ----------------------------------------------------------
    def _add_sel(self, tid: int) -> _RTrack | None:
        page = self._pages.get(tid)
        if page is None:
            return None
        entry = len(self._sel)
        if entry >= L.MAX_WANTS:
            raise UsageError(f"a reader can select at most {L.MAX_WANTS} tracks")
        rt = _RTrack(tid, page, entry)
        rt.pos = page.counters()[1] if self._meta.live else 0
        self._sel.append(rt)
        return rt

    def select(self, tracks: Iterable[int] | None = None) -> None:
        """Read these tracks (None: all, including tracks added later)."""
        self._follow_all = tracks is None
        wanted = sorted(self._pages) if tracks is None else list(tracks)
        for tid in wanted:
            if tid not in self._pages:
                raise UsageError(f"stream {self.stream!r} has no track {tid}")
        for i in range(L.MAX_WANTS):
            self._users.set_want(self._slot, i, L.NO_TRACK, 0)
        self._sel = []
        for tid in wanted:
            self._add_sel(tid)
        self._positioned = False

    @property
    def selected(self) -> list[int]:
        return [rt.tid for rt in self._sel]

    def _main(self) -> _RTrack | None:
        for rt in self._sel:
            tm = self._meta.tracks.get(rt.tid)
            if tm is not None and tm.type == "video":
                return rt
        return None

    def _position(
        self, start: int, anchor: _RTrack | None, anchor_part: int, others: str = "at"
    ) -> None:
        """Anchor at ``anchor_part``; each other track at its first part with dts >=
        ``start`` (``others="at"``), at its part playing at ``start`` ("covering") or at
        its oldest part ("beginning")."""
        for rt in self._sel:
            if rt is anchor:
                rt.pos = anchor_part
            elif others == "beginning":
                rt.pos = rt.page.counters()[0]
            elif others == "covering":
                rt.pos = self._covering_part(rt, start)
            else:
                rt.pos = rt.page.find_part(start)
            rt.next_dts = None
            rt.last_dts = start
            rt.lag_since = None
            self._announce(rt, rt.pos)
        self._positioned = True
        self._waiting_on = None

    @staticmethod
    def _covering_part(rt: _RTrack, ms: int) -> int:
        """The part playing at ``ms``: the first at ``ms``, else the one just before
        (if it starts at most ``SEEK_SLACK_MS`` earlier), else the first after."""
        page = rt.page
        n = page.find_part(ms)
        start, end = page.counters()[:2]
        at = page.part(n).dts if n < end else None
        if (at is None or at > ms) and n > start and page.part(n - 1).dts >= ms - SEEK_SLACK_MS:
            return n - 1
        return n

    def seek(self, ms: int) -> int:
        """Start every selected track at the main video keyframe at or before ``ms``.

        VoD: the other tracks start with their frame that plays at the key's time (it may
        start up to ``SEEK_SLACK_MS`` earlier), and with their very first packet when
        the key is the stream's first (AAC priming, Opus pre-skip at -7 ms).
        """
        self.refresh()
        main = self._main()
        c = main.page.counters() if main is not None else None
        if main is not None and c is not None and c[3] > c[2]:
            key_no = main.page.find_key(ms)
            key = main.page.key(key_no)
            others = "at"
            if not self._meta.live:
                others = "beginning" if key_no == c[2] else "covering"
            self._position(key.time, main, key.first_part, others)
            return key.time
        self._position(ms, None, 0)
        return ms

    def seek_live(self, behind_ms: int = 0) -> int:
        """Start at the newest keyframe at least ``behind_ms`` behind the live edge."""
        self.refresh()
        main = self._main() or (self._sel[0] if self._sel else None)
        if main is None:
            self._positioned = True
            return 0
        last = main.page.stats()[1]
        c = main.page.counters()
        if c[3] == c[2]:  # nothing yet: start with whatever comes
            for rt in self._sel:
                rt.pos = rt.page.counters()[1]
                rt.next_dts = None
            self._positioned = True
            return last
        key = main.page.key(main.page.find_key(last - behind_ms))
        if main is self._main():
            self._position(key.time, main, key.first_part)
        else:
            self._position(key.time, None, 0)
        return key.time

    def seek_key(self, track: int, key_no: int) -> int:
        rt = next((r for r in self._sel if r.tid == track), None)
        if rt is None:
            raise UsageError(f"track {track} is not selected")
        key = rt.page.key(key_no)
        self._position(key.time, rt, key.first_part)
        return key.time

    def _announce(self, rt: _RTrack, part: int) -> None:
        """Publish which key this track needs next (VoD inputs load pages from it)."""
        c = rt.page.counters()
        if c[0] <= part < c[1]:
            key = L.unwrap32(
                c[2], L.PART.unpack_from(rt.view, rt.parts_off + (part & rt.mask) * 32)[5]
            )
        else:
            key = max(c[3] - 1, 0)
        if key != rt.want_key:
            rt.want_key = key
            self._users.set_want(self._slot, rt.entry, rt.tid, key)

    # -- reading ------------------------------------------------------------------------
    def read(self) -> Packet | None:
        """The next packet in decode order, or None if nothing can be returned right now."""
        if not self._positioned:
            if self._meta.live:
                self.seek_live(0)
            else:
                self.seek(0)
        self._reads += 1
        self._lag_until = None
        if not self._reads % META_CHECK_EVERY:
            self.refresh()
        sel = self._sel
        while True:
            best: _RTrack | None = None
            best_dts = 0
            empty: list[_RTrack] | None = None
            for rt in sel:
                pos = rt.pos
                if pos >= rt.end:
                    rt.end = _U64_UNPACK(rt.view, _OFF_PARTS_END)[0]
                    if pos >= rt.end:
                        if empty is None:
                            empty = [rt]
                        else:
                            empty.append(rt)
                        continue
                dts = rt.next_dts
                if dts is None:
                    dts = rt.next_dts = _I64_UNPACK(rt.view, rt.parts_off + (pos & rt.mask) * 32)[0]
                if best is None or dts < best_dts:
                    best, best_dts = rt, dts
            if best is None:
                self._waiting_on = sel
                if self.refresh() and self._sel is not sel:
                    sel = self._sel
                    continue
                return None
            if empty is not None and self._meta.live and not self.closed:
                # the silence is measured against the newest data of the track we would emit
                newest = _I64_UNPACK(best.view, best.parts_off + ((best.end - 1) & best.mask) * 32)[
                    0
                ]
                lagging = [
                    rt
                    for rt in empty
                    if rt.last_dts < best_dts and newest - rt.last_dts <= GIVE_UP_MS
                ]
                if lagging and self.lag_wait_s is not None:
                    lagging = self._worth_waiting(lagging, best_dts)
                if lagging:
                    self._waiting_on = lagging
                    return None
            pkt = self._take(best)
            if pkt is not None or self._blocked_page is not None:
                return pkt

    def _worth_waiting(self, lagging: list[_RTrack], best_dts: int) -> list[_RTrack]:
        """The lagging tracks still worth waiting for (bounded live wait); notes in
        ``_lag_until`` when the first of those waits runs out."""
        assert self.lag_wait_s is not None
        now = time.monotonic()
        keep = []
        for rt in lagging:
            # its next packet is expected one step after its newest: past the candidate, it
            # cannot come first (the last two records of the ring give the step)
            n, view, off, mask = rt.pos, rt.view, rt.parts_off, rt.mask
            if n - 2 >= _U64_UNPACK(view, _OFF_PARTS_START)[0]:
                last = _I64_UNPACK(view, off + ((n - 1) & mask) * 32)[0]
                if 2 * last - _I64_UNPACK(view, off + ((n - 2) & mask) * 32)[0] > best_dts:
                    continue
            if rt.lag_since is None:
                rt.lag_since = now
            until = rt.lag_since + self.lag_wait_s
            if now < until:
                keep.append(rt)
                if self._lag_until is None or until < self._lag_until:
                    self._lag_until = until
        return keep

    def _take(self, rt: _RTrack) -> Packet | None:
        n = rt.pos
        view = rt.view
        dts, pos, page, size, off, key, flags = _PART_UNPACK(
            view, rt.parts_off + (n & rt.mask) * 32
        )
        start, rt.end = _QQ_UNPACK(view, _OFF_PARTS_START)
        if n < start:  # the slot may have been recycled while we copied it
            self._fell_behind()
            return None
        if page != rt.page_no and not self._map_page(rt, page, n):
            return None
        rt.pos = n + 1
        rt.next_dts = None
        if rt.lag_since is not None and dts >= max(o.last_dts for o in self._sel):
            rt.lag_since = None  # on time again: a later lag is a new episode
        rt.last_dts = dts
        if key != rt.want_key & _MASK32:
            self._announce(rt, n)
        return Packet(rt.tid, dts, off, flags == 1, rt.page_view[pos : pos + size])

    def _map_page(self, rt: _RTrack, page_lo: int, part: int) -> bool:
        c = rt.page.counters()
        page_no = L.unwrap32(c[6], page_lo)
        if not self._meta.live:
            state = rt.page.page(page_no).state
            if state != L.PAGE_LOADED:
                self._announce(rt, part)
                self._blocked_page = (rt, page_no)
                self._waiting_on = [rt]
                return False
        try:
            seg = Segment.open(L.data_name(self.stream, rt.tid, page_no), keep_fd=False)
        except posix_ipc.ExistentialError:
            if part < rt.page.counters()[0]:
                self._fell_behind()
            else:  # VoD page unloaded between the check and the open
                self._announce(rt, part)
                self._blocked_page = (rt, page_no)
            return False
        rt.page_no = page_lo
        rt.page_view = seg.view  # fd already closed; the view keeps the mapping
        self._blocked_page = None
        return True

    def _fell_behind(self) -> None:
        self.skipped += 1
        main = self._main() or (self._sel[0] if self._sel else None)
        if main is None:
            return
        c = main.page.counters()
        key = main.page.key(c[2])
        if main is self._main():
            self._position(key.time, main, key.first_part)
        else:
            self._position(key.time, None, 0)
        self._blocked_page = None

    def at_end(self) -> bool:
        """True when every selected track is fully read and no more can come."""
        if self._meta.live and not self.closed:
            self.refresh()
            if not self.closed:
                return False
        return all(rt.pos >= rt.page.counters()[1] for rt in self._sel)

    # -- index access for segmenters ----------------------------------------------------
    def _page_of(self, track: int) -> TrackPage:
        self.refresh()
        try:
            return self._pages[track]
        except KeyError:
            raise UsageError(f"stream {self.stream!r} has no track {track}") from None

    def keys(self, track: int) -> list[KeyInfo]:
        return self._page_of(track).keys()

    def fragments(self, track: int) -> list[FragmentInfo]:
        return self._page_of(track).fragments()

    def track_page(self, track: int) -> TrackPage:
        return self._page_of(track)

    @property
    def first_ms(self) -> int:
        firsts = [rt.page.stats()[0] for rt in self._sel if rt.page.counters()[1]]
        return min(firsts, default=0)

    @property
    def last_ms(self) -> int:
        lasts = [rt.page.stats()[1] for rt in self._sel if rt.page.counters()[1]]
        return max(lasts, default=0)

    # -- waiting ------------------------------------------------------------------------
    def fileno(self) -> int:
        return self._sock.fileno()

    def _drain(self) -> None:
        try:
            while True:
                self._sock.recv(64)
        except BlockingIOError:
            pass

    def _ready(self) -> bool:
        """True if what we would wait for is there (or the stream changed or ended)."""
        raw, status = _VS_UNPACK(self._meta_view, 0)
        if status == _CLOSED:
            self.closed = True
            return True
        if raw != self._meta_raw:
            return True
        if self._blocked_page is not None:
            rt, page_no = self._blocked_page
            return rt.page.page(page_no).state == L.PAGE_LOADED
        watch = self._waiting_on if self._waiting_on is not None else self._sel
        for rt in watch:  # noqa: SIM110 (a loop, not any(): this runs on every wake-up)
            if rt.pos < _U64_UNPACK(rt.view, _OFF_PARTS_END)[0]:
                return True
        return False

    def prepare_wait(self) -> bool:
        """Announce we are about to block on :meth:`fileno`; True if there is no need to
        (data is there)."""
        self._drain()
        self._wait_seq += 1
        self._users.bump_wait(self._slot, self._wait_seq & ~L.FUTEX_WAIT_FLAG, self._token)
        fence()  # our announcement before our look at the data (see writer.append)
        return self._ready()

    def _lag_timeout(self, timeout: float | None) -> float | None:
        """``timeout`` cut to when read() stops waiting for a lagging track."""
        if self._lag_until is None:
            return timeout
        left = self._lag_until - time.monotonic()
        return left if timeout is None else min(timeout, left)

    def _sleep(self, timeout: float | None) -> bool:
        """Block on the futex word until the writer publishes (or ``timeout``); False if
        there was no need to (data is there)."""
        uv = self._user_view
        # The generation first: if the writer wakes anyone after this load, the kernel
        # sees the word moved and does not let us sleep. (A fixed "I sleep" value would
        # not do: others could store it again after a wake-up we missed.)
        gen = _U32_UNPACK(uv, _OFF_FUTEX)[0]
        if not _U32_UNPACK(uv, _OFF_SLEEPERS)[0]:
            _U32_PACK(uv, _OFF_SLEEPERS, 1)  # "someone sleeps": the writer wakes us all
        if not self._meta.live or self._blocked_page is not None:
            # a VoD input watches the epoch word to load wanted pages without delay
            self._wait_seq += 1
            self._users.bump_wait(self._slot, self._wait_seq | L.FUTEX_WAIT_FLAG, self._token)
        fence()  # our store before our look at the data (see writer.append)
        if self._ready() or (timeout is not None and timeout <= 0):
            return False
        # the kernel sleeps only while the generation is still ``gen``: a writer that
        # published and woke sleepers after our load has moved it, and we return at once
        self._futex.wait(gen, timeout)
        return True

    def wait_sync(self, timeout: float | None = None, spin_s: float = SPIN_S) -> None:
        """Block until the writer may have published something (or ``timeout``).

        When the stream runs about as fast as we wake (the last wake-up found a burst of
        packets, or came within ``BUSY_GAP_S``), it first polls for ``spin_s``: then the
        writer never has to wake us, which quadruples throughput on a busy stream. A
        poll that found nothing turns the quick-wake hint off for the next
        ``SPIN_BACKOFF`` waits: with many readers on few cores (where a paced stream's
        wake-ups come late, hence "quickly" before the next packet) a vain spin only
        delays the other readers. Idle and paced streams block at once and cost nothing.
        Async callers use :meth:`wait`, which never spins (it would stall the event loop).
        """
        timeout = self._lag_timeout(timeout)
        if timeout is not None and timeout <= 0:
            return
        busy = self._reads - self._reads_at_wake  # read() calls since the last wake-up
        if spin_s > 0 and (busy > BUSY_READS or (self._quick_wake and self._backoff <= 0)):
            until = time.perf_counter() + spin_s
            while time.perf_counter() < until:
                if self._ready():
                    return  # still busy: _reads_at_wake stays, so we spin next time too
            self._backoff = SPIN_BACKOFF
        self._backoff -= 1
        t0 = time.perf_counter()
        if not self._sleep(timeout):
            return
        self._quick_wake = time.perf_counter() - t0 < BUSY_GAP_S
        self._reads_at_wake = self._reads

    async def wait(self, timeout: float | None = None) -> None:
        """Asyncio flavour of :meth:`wait_sync`."""
        timeout = self._lag_timeout(timeout)
        if (timeout is not None and timeout <= 0) or self.prepare_wait():
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        fd = self._sock.fileno()
        loop.add_reader(fd, ready)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(fd)
        self._drain()

    def close(self) -> None:
        if self._slot < 0:
            return
        self._users.release(self._slot)
        self._slot = -1
        self._sock.close()
        self._futex.close()
        for seg in (self._meta_seg, self._state_seg, self._user_seg):
            seg.close()
        for page in self._pages.values():
            page.seg.close()
        self._pages.clear()

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @property
    def slot(self) -> int:
        return self._slot

    def heartbeat(self) -> None:
        self._users.heartbeat(self._slot)
