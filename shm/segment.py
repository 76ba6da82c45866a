"""Thin wrappers over ``posix_ipc`` shared memory: create/open a named page and map it.

A :class:`Segment` owns the mmap; ``view`` is a memoryview of the whole page that
the hot paths read and write with ``struct.pack_into``/``unpack_from``. Closing the
Segment drops our references only: memoryviews handed out (packet payloads) keep the
mapping alive until they die, so a reader's caller never sees a dangling buffer.
"""

from __future__ import annotations

import fcntl
import mmap
import os

import posix_ipc

from .errors import ShmFormatError
from .layout import SHM_DIR


class Segment:
    """One mapped POSIX shared-memory object."""

    __slots__ = ("fd", "map", "name", "size", "view")

    def __init__(self, name: str, fd: int, size: int) -> None:
        self.name = name
        self.fd = fd
        self.size = size
        self.map = mmap.mmap(fd, size) if size else None
        self.view = memoryview(self.map) if self.map is not None else memoryview(b"")

    @classmethod
    def create(cls, name: str, size: int, *, exclusive: bool = True) -> Segment:
        """Create (or, with ``exclusive=False``, replace) a page of ``size`` bytes."""
        flags = posix_ipc.O_CREX if exclusive else posix_ipc.O_CREAT
        if not exclusive:
            unlink(name)
        mem = posix_ipc.SharedMemory(name, flags, mode=0o600, size=size)
        fd = mem.fd
        return cls(name, fd, size)

    @classmethod
    def open(cls, name: str, *, min_size: int = 0, keep_fd: bool = True) -> Segment:
        """Map an existing page; raises ``posix_ipc.ExistentialError`` if it is gone."""
        mem = posix_ipc.SharedMemory(name)
        fd = mem.fd
        size = os.fstat(fd).st_size
        if size < min_size:
            os.close(fd)
            raise ShmFormatError(f"shm page {name} is {size} bytes, expected >= {min_size}")
        seg = cls(name, fd, size)
        if not keep_fd:  # data pages: the mapping is enough, save the fd
            os.close(fd)
            seg.fd = -1
        return seg

    def lock(self, exclusive: bool = True, blocking: bool = True) -> bool:
        """``flock`` the page's fd; the kernel drops it when the process dies."""
        op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if not blocking:
            op |= fcntl.LOCK_NB
        try:
            fcntl.flock(self.fd, op)
        except BlockingIOError:
            return False
        return True

    def unlock(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def same_inode_as_name(self) -> bool:
        """True if the name still refers to the object we have open (not replaced/unlinked)."""
        try:
            st = os.stat(os.path.join(SHM_DIR, self.name.lstrip("/")))
        except FileNotFoundError:
            return False
        return st.st_ino == os.fstat(self.fd).st_ino

    def close(self) -> None:
        """Drop the mapping (lazily, if payload views still use it) and the fd."""
        try:
            self.view.release()
        except BufferError:
            pass  # slices still exported; the mmap goes away with the last of them
        self.view = memoryview(b"")
        self.map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def unlink(self) -> None:
        unlink(self.name)


def unlink(name: str) -> bool:
    """Remove a page by name; False if it did not exist."""
    try:
        posix_ipc.unlink_shared_memory(name)
    except posix_ipc.ExistentialError:
        return False
    return True


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(SHM_DIR, name.lstrip("/")))
