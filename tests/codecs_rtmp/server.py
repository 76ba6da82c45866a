"""A tiny asyncio RTMP relay around RtmpServerConnection, for tests: one publisher
per key, any number of players; players get the stream from the next keyframe."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mistcodecs.rtmp import (
    Connect,
    DeleteStream,
    Error,
    MediaMessage,
    Play,
    Publish,
    RtmpServerConnection,
)


@dataclass
class _Channel:
    header: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # data/video/audio configs
    players: list[tuple[RtmpServerConnection, asyncio.StreamWriter, int, list[bool]]] = field(
        default_factory=list
    )
    ended: bool = False


class RelayServer:
    def __init__(self) -> None:
        self.channels: dict[str, _Channel] = {}
        self.handshakes: list[bool] = []  # complex flag per connection
        self.errors: list[str] = []
        self.published: dict[str, int] = {}  # key -> media messages received
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RtmpServerConnection()
        publishing: str | None = None
        try:
            while data := await reader.read(65536):
                for ev in conn.receive_data(data):
                    if isinstance(ev, Connect):
                        conn.accept_connect(ev)
                    elif isinstance(ev, Publish):
                        if ev.name in self.channels and not self.channels[ev.name].ended:
                            conn.refuse_publish(ev)
                        else:
                            publishing = ev.name
                            self.channels[ev.name] = _Channel()
                            self.published[ev.name] = 0
                            conn.accept_publish(ev)
                    elif isinstance(ev, Play):
                        ch = self.channels.get(ev.name)
                        if ch is None:
                            conn.refuse_play(ev)
                        else:
                            conn.accept_play(ev)
                            for kind, (ts, body) in ch.header.items():
                                conn.send_media(
                                    ev.stream_id, kind if kind != "meta" else "data", ts, body
                                )
                            ch.players.append((conn, writer, ev.stream_id, [False]))
                    elif isinstance(ev, MediaMessage) and publishing is not None:
                        self._relay(publishing, ev)
                    elif isinstance(ev, DeleteStream) and publishing is not None:
                        self._end(publishing)
                    elif isinstance(ev, Error):
                        self.errors.append(ev.message)
                    if type(ev).__name__ == "HandshakeComplete":
                        self.handshakes.append(ev.complex)  # type: ignore[attr-defined]
                out = conn.data_to_send()
                if out:
                    writer.write(out)
                    await writer.drain()
                if conn.closed:
                    break
        finally:
            if publishing is not None:
                self._end(publishing)
            writer.close()

    def _relay(self, key: str, ev: MediaMessage) -> None:
        ch = self.channels[key]
        self.published[key] += 1
        p = ev.payload
        is_config = (ev.kind == "video" and (p[:2] == b"\x17\x00" or (p[0] & 0x8F) == 0x80)) or (
            ev.kind == "audio" and (p[:2] == b"\xaf\x00" or (p[0] & 0xFF) == 0x90)
        )
        if ev.kind == "data":
            ch.header["meta"] = (ev.timestamp, p)
        elif is_config:
            ch.header[ev.kind] = (ev.timestamp, p)
        keyframe = ev.kind == "video" and (p[0] >> 4) & 7 == 1
        for conn, writer, sid, started in ch.players:
            if writer.is_closing():
                continue
            if not started[0]:
                if not keyframe or is_config:
                    continue
                started[0] = True
            conn.send_media(sid, ev.kind, ev.timestamp, p)
            writer.write(conn.data_to_send())

    def _end(self, key: str) -> None:
        ch = self.channels.get(key)
        if ch is None or ch.ended:
            return
        ch.ended = True
        for conn, writer, sid, _ in ch.players:
            if not writer.is_closing():
                conn.end_play(sid, key)
                writer.write(conn.data_to_send())
                writer.close()
