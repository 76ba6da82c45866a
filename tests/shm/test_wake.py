"""Wake-up paths: the futex word (wait_sync) and the sockets (asyncio wait) side by side.

Sleepers get long timeouts and the test a shorter deadline: a lost wake-up shows as a
reader still asleep when the deadline passes, not as a tight timing assertion.
"""

from __future__ import annotations

import asyncio
import mmap
import threading
import time

from shm import StreamReader, StreamWriter
from shm.futex import Futex
from shm.layout import OFF_FUTEX, OFF_SLEEPERS, U32
from shm.model import Packet, TrackMeta

SLEEP_S = 60.0  # how long a sleeper would sleep without a wake-up
DEADLINE_S = 20.0  # how long the test waits for it (generous on a loaded machine)


def test_futex_wait_checks_the_value_and_wake_counts_sleepers() -> None:
    buf = mmap.mmap(-1, 4096)  # MAP_SHARED: the futex is keyed as shared, like on the bus
    fx = Futex(buf, OFF_FUTEX)
    assert fx.wait(1, SLEEP_S) is False  # the word holds 0, not 1: no sleep at all
    woke: list[bool] = []
    t = threading.Thread(target=lambda: woke.append(fx.wait(0, SLEEP_S)))
    t.start()
    deadline = time.monotonic() + DEADLINE_S
    n = 0
    while n == 0 and time.monotonic() < deadline:  # until the thread is in the kernel
        n = fx.wake()
        if n == 0:
            time.sleep(0.001)
    t.join(DEADLINE_S)
    assert n == 1 and woke == [True]
    assert fx.wake() == 0
    fx.close()
    buf.close()  # possible only once the futex released the buffer


def _sync_reader(r: StreamReader, got: list[Packet]) -> None:
    deadline = time.monotonic() + SLEEP_S
    while not got and time.monotonic() < deadline:
        p = r.read()
        if p is None:
            r.wait_sync(SLEEP_S)
        else:
            got.append(p)


async def test_one_append_wakes_futex_and_socket_sleepers(stream: str) -> None:
    with StreamWriter(stream) as w:
        v = w.add_track(TrackMeta(0, "video", "H264"))
        w.append(v, 0, 0, True, b"first")
        readers = [StreamReader(stream) for _ in range(4)]
        for r in readers:
            r.seek_live()
            assert r.read() is not None and r.read() is None
        got: list[list[Packet]] = [[] for _ in readers]
        threads = [
            threading.Thread(target=_sync_reader, args=(r, g))
            for r, g in zip(readers[:3], got[:3], strict=True)
        ]
        for t in threads:
            t.start()
        # the threads are going to sleep on the futex once the flag says so
        deadline = time.monotonic() + DEADLINE_S
        while U32.unpack_from(w.users.view, OFF_SLEEPERS)[0] != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, w.append, v, 33, 0, False, b"second")
        await readers[3].wait(SLEEP_S)  # the asyncio reader sleeps on its socket
        p = readers[3].read()
        for t in threads:
            t.join(DEADLINE_S)
        assert p is not None and bytes(p.data) == b"second"
        assert [[bytes(x.data) for x in g] for g in got[:3]] == [[b"second"]] * 3
        for r in readers:
            r.close()


def test_close_wakes_futex_sleepers(stream: str) -> None:
    w = StreamWriter(stream)
    w.add_track(TrackMeta(0, "video", "H264"))
    r = StreamReader(stream)
    r.seek_live()
    assert r.read() is None
    t = threading.Thread(target=r.wait_sync, args=(SLEEP_S,))
    t.start()
    deadline = time.monotonic() + DEADLINE_S
    while U32.unpack_from(w.users.view, OFF_SLEEPERS)[0] != 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    w.close()
    t.join(DEADLINE_S)
    assert not t.is_alive() and r.at_end()
    r.close()
