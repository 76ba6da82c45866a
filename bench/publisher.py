"""The live source of the benchmarks: a real FLV (ffmpeg) published over RTMP in real time.

* ``make_flv`` -- an H264 + AAC FLV at a given bitrate (CBR with filler), made once;
* ``read_flv_tags`` -- its audio/video tags, read before the clock starts;
* ``rtmp_publisher`` -- publishes prepared chunks paced by the tags' timestamps, looping
  with continuing timestamps for as long as asked; no per-packet work in the load path;
* timestamped source (``stamp_tags`` + ``stamp=True``): every video frame carries an SEI
  (user data unregistered, ``STAMP_UUID``) holding its send time as 16 ASCII hex digits
  of ``time.monotonic_ns()``, written into the prepared bytes just before they are sent.
  Servers pass NAL units through untouched, so the stamp arrives in every output format
  (RTMP, FLV, MPEG-TS, fMP4) and ``StampScanner`` finds it in a raw byte stream: packet
  in to packet out, measured on one clock;
* ``PublisherProcess`` -- the publisher in its own process (its pacing never competes
  with the viewers' event loop), with its progress.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.rtmpclient import Client
from mistcodecs.rtmp.chunks import standalone_chunks

_TAG = struct.Struct(">BHBHBBHB")  # type, size (24 bits), ts (24 + 8), stream id (24)
STAMP_UUID = b"MiStPyTs\x5e\x1a\x7e\x9c\x04\x2b\x33\x10"
_PLACEHOLDER = STAMP_UUID + b"0" * 16
# SEI NAL: type 6, payload type 5 (user data unregistered), 32 bytes, RBSP stop bit
_SEI = b"\x06\x05\x20" + _PLACEHOLDER + b"\x80"


class LoadError(RuntimeError):
    """A load client could not get its stream going (refused, closed, bad reply)."""


def make_flv(out: Path, seconds: float, kbps: int = 1000, size: str = "640x360") -> Path:
    """A CBR H264 (2 s GOP at 25 fps) + 64 kbit/s AAC FLV of ``kbps`` in total."""
    video = max(100, kbps - 64)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
         "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", f"{video}k", "-maxrate", f"{video}k",
         "-bufsize", f"{video}k", "-x264-params", "nal-hrd=cbr:log-level=none", "-g", "50",
         "-c:a", "aac", "-b:a", "64k", "-f", "flv", str(out)],
        check=True,
    )  # fmt: skip
    return out


@dataclass(frozen=True)
class FlvTag:
    kind: str  # "audio" | "video"
    timestamp: int
    body: bytes


def read_flv_tags(path: Path) -> list[FlvTag]:
    """Audio and video tags of an FLV file (script tags dropped), read once before a run."""
    data = path.read_bytes()
    if data[:3] != b"FLV" or len(data) < 13:
        raise LoadError(f"{path}: not an FLV file")
    pos = int.from_bytes(data[5:9], "big") + 4
    tags: list[FlvTag] = []
    while pos + 11 <= len(data):
        mtype, size_hi, size_lo, ts_hi, ts_lo, ts_ext, _, _ = _TAG.unpack_from(data, pos)
        size = (size_hi << 8) | size_lo
        ts = (ts_ext << 24) | (ts_hi << 8) | ts_lo
        if pos + 11 + size > len(data):
            break  # truncated last tag
        if mtype in (8, 9):
            body = data[pos + 11 : pos + 11 + size]
            tags.append(FlvTag("audio" if mtype == 8 else "video", ts, body))
        pos += 11 + size + 4
    if not tags:
        raise LoadError(f"{path}: no audio/video tags")
    return tags


def byte_rate(tags: Sequence[FlvTag]) -> float:
    """The source's payload bytes per second."""
    return sum(len(t.body) for t in tags) / max(0.001, tags[-1].timestamp / 1000)


def stamp_tags(tags: Sequence[FlvTag]) -> list[FlvTag]:
    """``tags`` with a stamp SEI (placeholder) first in every AVC frame."""
    out = []
    for tag in tags:
        body = tag.body
        if tag.kind == "video" and body[0] & 0x0F == 7:
            if body[1] == 0 and (body[9] & 3) != 3:
                raise LoadError("stamping needs 4-byte NAL lengths")
            if body[1] == 1:
                body = body[:5] + len(_SEI).to_bytes(4, "big") + _SEI + body[5:]
        out.append(FlvTag(tag.kind, tag.timestamp, body))
    return out


def stamp_now(batch: bytes) -> bytes:
    """The batch with every placeholder stamp replaced by the time now."""
    buf = bytearray(batch)
    hexed = b"%016x" % time.monotonic_ns()
    at = buf.find(STAMP_UUID)
    while at >= 0:
        buf[at + 16 : at + 32] = hexed
        at = buf.find(STAMP_UUID, at + 32)
    return bytes(buf)


class StampScanner:
    """Finds stamps in a raw byte stream fed piece by piece (a stamp may straddle two)."""

    def __init__(self) -> None:
        self.tail = b""

    def feed(self, data: bytes) -> list[int]:
        """The send times (monotonic ns) of the stamps completed by ``data``."""
        buf = self.tail + data
        out: list[int] = []
        pos = 0
        while (at := buf.find(STAMP_UUID, pos)) >= 0 and at + 32 <= len(buf):
            digits = buf[at + 16 : at + 32]
            if digits != b"0" * 16:
                out.append(int(digits, 16))
            pos = at + 32
        self.tail = buf[max(pos, len(buf) - 31) :]
        return out


def prepare_chunks(
    tags: Sequence[FlvTag], stream_id: int, chunk_size: int, offset: int = 0
) -> list[tuple[int, bytes]]:
    """(timestamp, chunk bytes) per tag, each with a full header (state-free)."""
    out = []
    for tag in tags:
        csid, mtype = (6, 9) if tag.kind == "video" else (4, 8)
        ts = tag.timestamp + offset
        out.append((ts, standalone_chunks(csid, mtype, stream_id, ts, tag.body, chunk_size)))
    return out


@dataclass
class PublishStats:
    started: float = 0.0  # when the first media was sent
    sent_bytes: int = 0
    sent_tags: int = 0
    max_lag: float = 0.0  # how late (s) a batch left the client after its due time
    error: str = ""
    done: bool = False


async def rtmp_publisher(
    host: str,
    port: int,
    app: str,
    stream: str,
    tags: Sequence[FlvTag],
    stats: PublishStats | None = None,
    prepared: dict[int, list[tuple[int, bytes]]] | None = None,
    tick: float = 0.02,
    seconds: float = 0.0,
    stamp: bool = False,
) -> PublishStats:
    """Publish ``tags`` paced by their timestamps; ``seconds`` > 0 loops them (with
    continuing timestamps) for that long. ``prepared`` caches the chunked bytes per
    message stream id between publishers of the same tags; ``stamp`` writes the send
    time into the stamp SEIs of ``stamp_tags``."""
    stats = stats or PublishStats()
    prepared = {} if prepared is None else prepared
    client = Client(host, port, app)
    pump: asyncio.Task[None] | None = None
    try:
        sid = await client.publish(stream)
        assert client.reader is not None and client.writer is not None
        reader, writer = client.reader, client.writer
        chunk_size = client.conn.writer.chunk_size
        if sid not in prepared:
            prepared[sid] = prepare_chunks(tags, sid, chunk_size)
        chunks = prepared[sid]
        span = tags[-1].timestamp - tags[0].timestamp + 40

        async def drain_input() -> None:
            # The server's acknowledgements and pings: read (so its buffer never fills).
            while data := await reader.read(65536):
                client.conn.receive_data(data)
                client.flush()

        pump = asyncio.ensure_future(drain_input())
        t0 = stats.started = time.monotonic()
        base = chunks[0][0]
        loop = 0
        while True:
            i, n = 0, len(chunks)
            while i < n:
                elapsed_ms = (time.monotonic() - t0) * 1000
                j = i
                while j < n and chunks[j][0] - base <= elapsed_ms:
                    j += 1
                if j > i:
                    batch = b"".join(c for _, c in chunks[i:j])
                    writer.write(stamp_now(batch) if stamp else batch)
                    await writer.drain()
                    lag = time.monotonic() - t0 - (chunks[j - 1][0] - base) / 1000
                    stats.max_lag = max(stats.max_lag, lag)
                    stats.sent_bytes += len(batch)
                    stats.sent_tags += j - i
                    i = j
                if pump.done():
                    raise LoadError("server closed the publisher")
                await asyncio.sleep(tick)
            loop += 1
            if time.monotonic() - t0 + span / 1000 > seconds:
                break
            chunks = prepare_chunks(tags, sid, chunk_size, loop * span)
        stats.done = True
    except (OSError, TimeoutError, LoadError) as exc:
        stats.error = repr(exc)
    finally:
        if pump is not None:
            pump.cancel()
        client.close()
    return stats


def _publish_main(
    port: int,
    app: str,
    name: str,
    source: str,
    seconds: float,
    stamp: bool,
    ready: Any,
    sent: Any,
) -> None:
    from bench.loadclient import run

    tags = read_flv_tags(Path(source))
    if stamp:
        tags = stamp_tags(tags)
    stats = PublishStats()

    async def main() -> None:
        task = asyncio.ensure_future(
            rtmp_publisher("127.0.0.1", port, app, name, tags, stats, None, 0.005, seconds, stamp)
        )
        while not stats.started and not task.done():
            await asyncio.sleep(0.01)
        ready.put(stats.error or "started")
        while not task.done():  # progress for the parent: bytes sent so far
            sent.value = stats.sent_bytes
            await asyncio.sleep(0.05)

    run(main())


class PublisherProcess:
    """A publisher in its own process (its pacing never competes with the viewers' event
    loop); ``sent_bytes`` follows its progress, so a run can tell when the source itself
    fell behind real time (a starved machine) rather than the server."""

    def __init__(
        self, port: int, app: str, name: str, source: Path, seconds: float, stamp: bool = False
    ) -> None:
        ctx = mp.get_context("spawn")
        ready = ctx.Queue()
        self.sent = ctx.Value("q", 0)
        self.proc = ctx.Process(
            target=_publish_main,
            args=(port, app, name, str(source), seconds, stamp, ready, self.sent),
            daemon=True,
        )
        self.proc.start()
        said = "no answer within 60 s"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                said = ready.get(timeout=0.2)
                break
            except queue.Empty:
                if not self.proc.is_alive():
                    said = f"exited with {self.proc.exitcode}"
                    break
        if said != "started":
            self.stop()
            raise LoadError(f"publisher of {name}: {said}")

    @property
    def sent_bytes(self) -> int:
        return int(self.sent.value)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)
