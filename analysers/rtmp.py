"""MistAnalyserRTMP: connect to ``rtmp://host[:port]/app/stream``, play, and report.

Detail levels: 1 connection and status events, codec configs and the timeline; 2 every
audio/video/data message; 3 control and command messages too; 4 chunk counts.
``-R FILE`` writes what arrived as an FLV file (tag bodies copied as received), valid
at any moment, so a ``-T`` timeout still leaves a playable file.

The socket adapter is a thin blocking loop in :func:`rtmp_chunks`; everything else is
the sans-IO :class:`RtmpClientConnection` and the FLV analyser's tag checks.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urlsplit

import click

from analysers.common import Analyser, make_main, output_path
from analysers.flv import FlvAnalyser
from mistcodecs import flv
from mistcodecs.rtmp import (
    CloseStream,
    Command,
    ConnectResult,
    Error,
    HandshakeComplete,
    MediaMessage,
    MessageTrace,
    RtmpClientConnection,
    Status,
    StreamCreated,
    StreamEvent,
)
from mistcodecs.rtmp.chunks import AUDIO, VIDEO

TAG_OF_KIND = {"audio": flv.TAG_AUDIO, "video": flv.TAG_VIDEO, "data": flv.TAG_SCRIPT}
END_CODES = ("NetStream.Play.Stop", "NetStream.Play.Complete", "NetStream.Play.UnpublishNotify")


def parse_rtmp_url(url: str) -> tuple[str, int, str, str, str]:
    """(host, port, app, stream, tcUrl) of ``rtmp://host[:port]/app[/inst]/stream``."""
    parts = urlsplit(url)
    if parts.scheme != "rtmp" or not parts.hostname:
        raise click.BadParameter(f"not an rtmp:// URL: {url}")
    path = parts.path.lstrip("/")
    app, _, stream = path.partition("/")
    if parts.query:
        stream += "?" + parts.query
    port = parts.port or 1935
    return parts.hostname, port, app, stream, f"rtmp://{parts.hostname}:{port}/{app}"


class RtmpAnalyser(Analyser):
    name = "MistAnalyserRTMP"

    def __init__(
        self, detail: int, as_json: bool, reconstruct: str | None = None, **options: Any
    ) -> None:
        super().__init__(detail, as_json, **options)
        self.conn = RtmpClientConnection(trace=True)
        self.flv = FlvAnalyser(detail, as_json, out=self.out)
        self.flv.problems = self.problems  # one list: tag checks count as ours
        self.summary = self.flv.summary
        self.stream_name = ""
        self.done = False
        self.started = False
        self.messages = 0
        self._send: Any = None
        self._file: IO[bytes] | None = open(reconstruct, "wb") if reconstruct else None  # noqa: SIM115
        if self._file is not None:
            self._file.write(bytes(flv.FlvHeader(True, True)))

    def start(self, app: str, tc_url: str, stream: str, send: Any) -> None:
        self.stream_name = stream
        self._send = send
        self.conn.connect(app, tc_url)
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self._send is not None:
            self._send(data)

    def feed(self, data: bytes) -> None:
        if not data:
            return
        for ev in self.conn.receive_data(data):
            self.event(ev)
        self._flush()

    def event(self, ev: Any) -> None:
        if isinstance(ev, HandshakeComplete):
            self.emit(
                f"handshake complete ({'digest' if ev.complex else 'plain'})",
                {"handshake": "digest" if ev.complex else "plain"},
                1,
            )
        elif isinstance(ev, MessageTrace):
            msg = ev.message
            self.messages += 1
            if msg.type not in (AUDIO, VIDEO):
                self.emit(
                    f"message {msg.type_name} csid={msg.csid} stream={msg.stream_id} ts={msg.timestamp} size={len(msg.payload)}",
                    {
                        "message": msg.type_name,
                        "csid": msg.csid,
                        "stream": msg.stream_id,
                        "timestamp": msg.timestamp,
                        "size": len(msg.payload),
                    },
                    3,
                )
            self.emit(f"  chunks read: {ev.chunks}", {"chunks": ev.chunks}, 4)
        elif isinstance(ev, ConnectResult):
            self.emit(
                f"connect: {'accepted' if ev.ok else 'refused'} {ev.info.get('code', '')}",
                {"connect": ev.ok, "info": ev.info},
                1,
            )
            if not ev.ok:
                self.problem(
                    f"connect refused: {ev.info.get('code', '')} {ev.info.get('description', '')}"
                )
                self.done = True
            else:
                self.conn.create_stream()
        elif isinstance(ev, StreamCreated):
            self.conn.play(ev.stream_id, self.stream_name)
        elif isinstance(ev, Status):
            self.emit(f"onStatus {ev.level} {ev.code} {ev.description}", {"status": ev.info}, 1)
            if ev.level == "error":
                self.problem(f"{ev.code}: {ev.description}")
                self.done = True
            elif ev.code in END_CODES and self.started:
                self.done = True
            elif ev.code == "NetStream.Play.Start":
                self.started = True
        elif isinstance(ev, StreamEvent):
            self.emit(
                f"user control {ev.name} stream={ev.stream_id}",
                {"user_control": ev.name, "stream": ev.stream_id},
                3,
            )
            if ev.name == "StreamEOF" and self.started:
                self.done = True
        elif isinstance(ev, MediaMessage):
            self.media(ev)
        elif isinstance(ev, CloseStream | Command):
            self.emit(f"command {ev}", {"command": str(ev)}, 3)
        elif isinstance(ev, Error):
            self.problem(f"RTMP error: {ev.message}")
            self.done = True

    def media(self, ev: MediaMessage) -> None:
        tag_type = TAG_OF_KIND[ev.kind]
        if ev.kind == "data" and not ev.payload.startswith(b"\x02\x00\x0aonMetaData"):
            return  # |RtmpSampleAccess and friends are not part of the media
        tag = flv.FlvTag(tag_type, ev.timestamp, ev.payload, self.flv.total_bytes)
        self.flv.total_bytes += tag.size
        self.flv.tag(tag)
        self.media_ms = self.flv.media_ms
        if self._file is not None:
            self._file.write(bytes(tag))
            self._file.flush()

    def finish(self) -> None:
        self.flv._timeline()
        self.summary["messages"] = self.messages
        if not self.started and not self.problems:
            self.problem("stream never started playing")
        elif not self.flv.stats[8].frames and not self.flv.stats[9].frames and not self.problems:
            self.problem("no media received")
        if self._file is not None:
            self._file.close()
            self._file = None


def rtmp_chunks(holder: list[RtmpAnalyser]) -> Any:
    """The source callable for :func:`make_main`: connect, play, yield received bytes
    (``b""`` every quarter second so the timeout is checked on a silent connection)."""

    def chunks(source: str, timeout: float, _opts: dict[str, Any]) -> Iterator[bytes]:
        host, port, app, stream, tc_url = parse_rtmp_url(source)
        sock = socket.create_connection((host, port), timeout=timeout or 10)
        analyser = holder[-1]

        def gen() -> Iterator[bytes]:
            try:
                sock.settimeout(0.25)
                analyser.start(app, tc_url, stream, sock.sendall)
                # End just before the frame's own -T check so finish() still runs.
                deadline = time.monotonic() + (max(timeout - 0.6, 0.1) if timeout else 1e12)
                while not analyser.done and time.monotonic() < deadline:
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        yield b""
                        continue
                    if not data:
                        return
                    yield data
            finally:
                sock.close()

        return gen()

    return chunks


def _build() -> Any:
    holder: list[RtmpAnalyser] = []

    def factory(**kwargs: Any) -> RtmpAnalyser:
        analyser = RtmpAnalyser(**kwargs)
        holder.append(analyser)
        return analyser

    return make_main(
        factory,
        "Connect to rtmp://host[:port]/app/stream, play it and analyse what arrives.",
        [
            click.option(
                "-R",
                "--reconstruct",
                "reconstruct",
                default=None,
                type=click.Path(dir_okay=False, writable=True),
                callback=output_path,
                help="Write the received stream to this FLV file.",
            )
        ],
        rtmp_chunks(holder),
    )


main = _build()

if __name__ == "__main__":
    main()
