"""The pusher side of the ingest socket (:mod:`inputs.live_ingest`): an asyncio protocol.

A protocol process (MistOutRTMP...) opens one :class:`IngestClient` per publisher. Media
is queued with :meth:`IngestClient.send_packet` and written with :meth:`flush`, which
the caller runs once per batch of input it parsed (one ``data_received``): one write
system call, and one wake-up of the buffer, per batch instead of per packet, with no
added delay.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from inputs.live_ingest import (
    Accept,
    Bye,
    Hello,
    RecordReader,
    Refuse,
    Track,
    packet_header,
    socket_address,
)
from mistcodecs.errors import FormatError
from shm.model import TrackMeta


class IngestRefused(Exception):
    """The buffer refused the push; the message says why."""


class IngestClient(asyncio.Protocol):
    """A pusher's connection to the buffer (asyncio protocol, see :meth:`open`)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = RecordReader()
        self.answer: asyncio.Future[Accept | Refuse] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_pause: Any = None  # callables the pusher sets for back-pressure
        self.on_resume: Any = None
        self.on_lost: Any = None
        self._out: list[bytes | memoryview] = []

    @classmethod
    async def open(
        cls, stream: str, hello: Hello, timeout: float = 10.0, answer_timeout: float = 10.0
    ) -> tuple[IngestClient, Accept]:
        """Connect to the buffer of ``stream`` (retrying for ``timeout`` s while it starts)
        and introduce us (its answer may take ``answer_timeout`` s on a loaded machine).
        Raises :class:`IngestRefused` or ``TimeoutError``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, socket_address(stream))
                break
            except (ConnectionRefusedError, FileNotFoundError):
                sock.close()
                if loop.time() > deadline:
                    raise TimeoutError(f"no live buffer for {stream!r}") from None
                await asyncio.sleep(0.05)
        _tr, proto = await loop.create_unix_connection(cls, sock=sock)
        assert proto.transport is not None
        proto.transport.write(bytes(hello))
        try:
            answer = await asyncio.wait_for(asyncio.shield(proto.answer), answer_timeout)
        except BaseException:
            proto.close()
            raise
        if isinstance(answer, Refuse):
            proto.close()
            raise IngestRefused(answer.reason)
        return proto, answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            records = self.reader.feed(data)
        except FormatError:
            self.close()
            return
        for rec in records:
            if isinstance(rec, Accept | Refuse) and not self.answer.done():
                self.answer.set_result(rec)

    def connection_lost(self, exc: Exception | None) -> None:
        self._out.clear()
        if not self.answer.done():
            self.answer.set_exception(ConnectionError("live buffer closed the connection"))
        if not self.closed.done():
            self.closed.set_result(None)
        if self.on_lost is not None:
            self.on_lost()

    def pause_writing(self) -> None:
        if self.on_pause is not None:
            self.on_pause()

    def resume_writing(self) -> None:
        if self.on_resume is not None:
            self.on_resume()

    def send_track(self, meta: TrackMeta) -> None:
        self._out.append(bytes(Track(meta)))

    def send_packet(
        self, track: int, dts: int, offset: int, keyframe: bool, data: bytes | memoryview
    ) -> None:
        """Queue one packet; :meth:`flush` writes the queue."""
        out = self._out
        out.append(packet_header(track, dts, offset, keyframe, len(data)))
        out.append(data)

    def flush(self) -> None:
        out = self._out
        if not out:
            return
        tr = self.transport
        if tr is not None and not tr.is_closing():
            tr.write(b"".join(out))
        out.clear()

    def close(self, reason: str = "") -> None:
        self.flush()
        tr = self.transport
        if tr is not None and not tr.is_closing():
            tr.write(bytes(Bye(reason)))
            tr.close()
