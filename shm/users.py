"""The viewer page (``/MstUser<s>``): one slot per reader, and the wake-up protocol.

Blocking readers (``wait_sync``) sleep on one shared *futex word*: the writer wakes all
of them with one syscall (see :mod:`shm.futex` and docs/architecture.md). Readers that
need a file descriptor (asyncio ``wait``, ``fileno``) use per-reader sockets instead:

Each slot records the reader's pid, the token naming its abstract-namespace unix
datagram socket, a heartbeat and per-track "wants key N" entries (a VoD input loads
pages from them). A separate compact array holds one u32 *wait sequence* per slot,
written only by that slot's reader: it bumps the number right before it blocks.
After publishing, the writer compares the array with its private copy (one slice and
one bytes compare for all slots) and sends one byte to each reader whose number moved.
Nobody else ever writes the same word, so no atomic read-modify-write is needed.
To keep the no-waiter case to one load, a reader also stores a fresh value into a
shared *epoch* word after bumping its number; the writer scans the slots only when the
epoch differs from what it saw last.
Slot claims are serialised with ``flock`` on the page, which the kernel releases if a
reader dies mid-claim.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .layout import (
    FUTEX_WAIT_FLAG,
    MAX_SLOTS,
    MAX_WANTS,
    NO_TRACK,
    OFF_EPOCH,
    OFF_FUTEX,
    OFF_SLEEPERS,
    OFF_SLOT_FLAGS,
    OFF_WAITS,
    SLOT,
    SLOT_ACTIVE,
    SLOT_FREE,
    U32,
    USER_HDR,
    WANT,
    slot_offset,
    socket_address,
)
from .segment import Segment

if TYPE_CHECKING:
    from .futex import Futex

_U32_UNPACK = U32.unpack_from
_U32_PACK = U32.pack_into
_FLAG_BYTE = FUTEX_WAIT_FLAG >> 24  # the flag within a little-endian wait number's top byte


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class SlotInfo:
    index: int
    pid: int
    token: int
    heartbeat: float
    wants: dict[int, int]  # track -> wanted key number
    flags: int = 0  # SLOT_FLAG_* bits


class UserPage:
    def __init__(self, seg: Segment) -> None:
        self.seg = seg
        self.view = seg.view

    @property
    def high_water(self) -> int:
        return min(USER_HDR.unpack_from(self.view, 0)[0], MAX_SLOTS)

    # -- reader side --------------------------------------------------------------------
    def claim(self, pid: int, token: int) -> int:
        """Take a free (or dead reader's) slot; returns its index."""
        self.seg.lock()
        try:
            hwm = self.high_water
            for i in range(MAX_SLOTS):
                status, spid, _tok, _hb, _n = SLOT.unpack_from(self.view, slot_offset(i))
                if i >= hwm or status == SLOT_FREE or not pid_alive(spid):
                    self._init_slot(i, pid, token)
                    if i >= hwm:
                        USER_HDR.pack_into(self.view, 0, i + 1)
                    return i
        finally:
            self.seg.unlock()
        raise OSError(f"no free viewer slot on {self.seg.name} ({MAX_SLOTS} in use)")

    def _init_slot(self, i: int, pid: int, token: int) -> None:
        off = slot_offset(i)
        for w in range(MAX_WANTS):
            WANT.pack_into(self.view, off + SLOT.size + w * WANT.size, NO_TRACK, 0, 0)
        SLOT.pack_into(self.view, off, SLOT_ACTIVE, pid, token, time.time(), 0)

    def release(self, i: int) -> None:
        off = slot_offset(i)
        SLOT.pack_into(self.view, off, SLOT_FREE, 0, 0, 0.0, 0)

    def set_want(self, i: int, entry: int, track: int, key: int) -> None:
        WANT.pack_into(self.view, slot_offset(i) + SLOT.size + entry * WANT.size, track, 0, key)

    def heartbeat(self, i: int) -> None:
        status, pid, token, _hb, n = SLOT.unpack_from(self.view, slot_offset(i))
        SLOT.pack_into(self.view, slot_offset(i), status, pid, token, time.time(), n)

    def set_flag(self, i: int, flag: int) -> None:
        off = slot_offset(i) + OFF_SLOT_FLAGS
        U32.pack_into(self.view, off, _U32_UNPACK(self.view, off)[0] | flag)

    def bump_wait(self, i: int, seq: int, token: int) -> None:
        U32.pack_into(self.view, OFF_WAITS + 4 * i, seq & 0xFFFFFFFF)
        U32.pack_into(self.view, OFF_EPOCH, (token + seq) & 0xFFFFFFFF)

    # -- writer / tools side -------------------------------------------------------------
    def slots(self) -> Iterator[SlotInfo]:
        """Active slots (dead ones included; check ``pid_alive``)."""
        for i in range(self.high_water):
            off = slot_offset(i)
            status, pid, token, hb, flags = SLOT.unpack_from(self.view, off)
            if status != SLOT_ACTIVE:
                continue
            wants: dict[int, int] = {}
            for w in range(MAX_WANTS):
                track, _pad, key = WANT.unpack_from(self.view, off + SLOT.size + w * WANT.size)
                if track != NO_TRACK:
                    wants[track] = key
            yield SlotInfo(i, pid, token, hb, wants, flags)

    def reap_dead(self) -> int:
        """Free the slots of readers that no longer exist; returns how many."""
        n = 0
        for s in list(self.slots()):
            if not pid_alive(s.pid):
                self.release(s.index)
                n += 1
        return n


class Waker:
    """Writer side of the wake-up protocol (see module docstring)."""

    def __init__(self, users: UserPage) -> None:
        self.users = users
        self.view = users.view
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.seen = b""
        self.epoch = 0
        self.addrs: dict[int, bytes] = {}  # token -> socket address
        self.dead: list[int] = []
        self.futex: Futex | None = None  # made on first use: ctypes costs ~300 KB
        self.generation = 0
        _U32_PACK(self.view, OFF_SLEEPERS, 0)
        _U32_PACK(self.view, OFF_FUTEX, 0)

    def wake_futex(self) -> None:
        """Wake every reader sleeping on the futex word (one of them raised the flag)."""
        _U32_PACK(self.view, OFF_SLEEPERS, 0)  # before the generation (see reader._sleep)
        self.generation = (self.generation + 1) & 0xFFFFFFFF
        _U32_PACK(self.view, OFF_FUTEX, self.generation)  # a sleeper-to-be sees it moved
        if self.futex is None:
            from .futex import Futex

            assert self.users.seg.map is not None
            self.futex = Futex(self.users.seg.map, OFF_FUTEX)
        self.futex.wake()

    def wake(self) -> None:
        view = self.view
        epoch = _U32_UNPACK(view, OFF_EPOCH)[0]
        if epoch == self.epoch:
            return  # no reader started waiting since the last look
        self.epoch = epoch
        hwm = _U32_UNPACK(view, 0)[0]
        now = bytes(view[OFF_WAITS : OFF_WAITS + 4 * hwm])
        if now == self.seen:
            return
        seen = self.seen
        for i in range(min(hwm, MAX_SLOTS)):
            a = 4 * i
            if now[a : a + 4] != seen[a : a + 4] and not now[a + 3] & _FLAG_BYTE:
                self._poke(i)  # (not a futex sleeper: they are all woken at once)
        self.seen = now

    def _poke(self, i: int) -> None:
        status, _pid, token, _hb, _n = SLOT.unpack_from(self.view, slot_offset(i))
        if status != SLOT_ACTIVE:
            return
        addr = self.addrs.get(token)
        if addr is None:
            if len(self.addrs) > 4 * MAX_SLOTS:
                self.addrs.clear()
            addr = self.addrs[token] = socket_address(token)
        try:
            self.sock.sendto(b"\1", addr)
        except BlockingIOError:
            pass  # its queue is full: it has wake-ups pending anyway
        except (ConnectionRefusedError, FileNotFoundError):
            self.dead.append(i)  # socket gone: the reader died

    def wake_all(self) -> None:
        """Wake every reader, sleeping on the futex or on its socket (metadata change, close)."""
        self.wake_futex()
        now = bytes(self.view[OFF_WAITS : OFF_WAITS + 4 * self.users.high_water])
        for s in self.users.slots():
            a = 4 * s.index + 3
            if a >= len(now) or not now[a] & _FLAG_BYTE:  # a futex sleeper has no use for it
                self._poke(s.index)
        self.seen = now

    def close(self) -> None:
        self.sock.close()
        if self.futex is not None:
            self.futex.close()
