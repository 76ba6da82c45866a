"""A futex word in shared memory: one syscall wakes every process blocked on it.

Linux only (``syscall(SYS_futex)`` through ctypes; the bus needs ``/dev/shm`` anyway).
The word must live in a ``MAP_SHARED`` mapping: the kernel keys shared futexes by
inode and offset, so every process mapping the page waits on the same queue. ctypes
releases the GIL for the call, so other threads of a waiting process keep running.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import threading

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "riscv64": 98, "ppc64le": 221, "s390x": 238}
_FUTEX_WAIT = 0  # shared (not FUTEX_PRIVATE_FLAG): waiters sit in other processes
_FUTEX_WAKE = 1
WAKE_ALL = 0x7FFFFFFF

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_NR = _SYS_FUTEX.get(platform.machine(), 202)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_fence_lock = threading.Lock()


def fence() -> None:
    """Full memory barrier: the lock's atomic read-modify-write instruction orders every
    earlier store before every later load (x86 lets a load pass a buffered store, and a
    "store my flag, then read yours" hand-off could lose a wake-up without it)."""
    _fence_lock.acquire()
    _fence_lock.release()


class Futex:
    """The u32 at ``offset`` of ``buf`` (a writable mmap) as a futex word."""

    __slots__ = ("_anchor", "_timeout", "_ts", "_ts_ref", "addr")

    def __init__(self, buf: mmap.mmap, offset: int) -> None:
        if offset % 4:
            raise ValueError("a futex word must be 4-byte aligned")
        # the ctypes object pins the mapping's buffer: the address stays valid until close
        self._anchor: ctypes.c_uint32 | None = ctypes.c_uint32.from_buffer(buf, offset)
        self.addr = ctypes.c_void_p(ctypes.addressof(self._anchor))
        self._ts = _Timespec()
        self._ts_ref = ctypes.byref(self._ts)
        self._timeout = -1.0  # the timeout self._ts holds (callers repeat theirs)

    def wait(self, expected: int, timeout: float | None) -> bool:
        """Sleep while the word holds ``expected`` (checked atomically by the kernel)
        for at most ``timeout`` seconds; False if the word had already changed."""
        ts = None
        if timeout is not None:
            if timeout != self._timeout:
                self._timeout = timeout
                t = max(timeout, 0.0)
                self._ts.tv_sec = int(t)
                self._ts.tv_nsec = int((t - int(t)) * 1e9)
            ts = self._ts_ref
        r = _syscall(_NR, self.addr, _FUTEX_WAIT, ctypes.c_uint32(expected), ts, None, 0)
        # EAGAIN: the value moved before we slept; woken, timed out or interrupted: the
        # caller re-checks either way
        return not (r < 0 and ctypes.get_errno() == errno.EAGAIN)

    def wake(self, count: int = WAKE_ALL) -> int:
        """Wake up to ``count`` waiters; returns how many were woken."""
        r = int(_syscall(_NR, self.addr, _FUTEX_WAKE, count, None, None, 0))
        if r < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return r

    def close(self) -> None:
        self._anchor = None  # releases the buffer export; the mapping may now be closed
