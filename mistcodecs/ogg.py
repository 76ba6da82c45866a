"""Ogg (RFC 3533) pages, and Opus (RFC 7845) / Vorbis streams in them.

A page is a 27-byte header, a lacing table of segment sizes and the segments; packets
are runs of segments ending with one shorter than 255 and may continue across pages.
A page's granule position is the end time of the last packet completed on it, so
per-packet times are found by walking back from it with each packet's duration (from
the Opus TOC byte, or from the Vorbis mode's block size).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from common.errors import UsageError
from mistcodecs.errors import FormatError, Truncated
from shm.model import Packet, TrackMeta

CAPTURE = b"OggS"
CONTINUED, BOS, EOS = 0x01, 0x02, 0x04
_HEADER = struct.Struct("<4sBBqIIIB")
MAX_PAGE = _HEADER.size + 255 + 255 * 255


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def ogg_crc(data: bytes | bytearray | memoryview) -> int:
    """Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[(crc >> 24) ^ b]
    return crc


@dataclass(slots=True)
class OggPage:
    flags: int
    granule: int
    serial: int
    sequence: int
    segments: list[int]
    body: bytes

    @classmethod
    def parse(
        cls, buf: bytes | bytearray | memoryview, pos: int = 0, where: int = 0
    ) -> tuple[OggPage, int]:
        """Parse the page at ``buf[pos]``; returns it and its total length."""
        if len(buf) - pos < _HEADER.size:
            raise Truncated(f"Ogg page header truncated at byte {where + pos}")
        magic, version, flags, granule, serial, seq, crc, nseg = _HEADER.unpack_from(buf, pos)
        if magic != CAPTURE:
            raise FormatError(f"no Ogg capture pattern at byte {where + pos}")
        if version != 0:
            raise FormatError(f"Ogg page version {version} at byte {where + pos}")
        start = pos + _HEADER.size
        if len(buf) - start < nseg:
            raise Truncated(f"Ogg lacing table truncated at byte {where + start}")
        segments = list(buf[start : start + nseg])
        total = _HEADER.size + nseg + sum(segments)
        if len(buf) - pos < total:
            raise Truncated(f"Ogg page body truncated at byte {where + pos}")
        raw = bytearray(buf[pos : pos + total])
        raw[22:26] = b"\0\0\0\0"
        if ogg_crc(raw) != crc:
            raise FormatError(f"Ogg page CRC mismatch at byte {where + pos}")
        return cls(flags, granule, serial, seq, segments, bytes(raw[_HEADER.size + nseg :])), total

    def __bytes__(self) -> bytes:
        head = _HEADER.pack(
            CAPTURE, 0, self.flags, self.granule, self.serial, self.sequence, 0, len(self.segments)
        )
        raw = bytearray(head + bytes(self.segments) + self.body)
        raw[22:26] = struct.pack("<I", ogg_crc(raw))
        return bytes(raw)


def lacing(size: int) -> list[int]:
    """Segment sizes for one packet of ``size`` bytes."""
    return [255] * (size // 255) + [size % 255]


# -- codec helpers ---------------------------------------------------------------------


def opus_samples(packet: bytes) -> int:
    """Duration of an Opus packet in 48 kHz samples (RFC 6716 section 3.1)."""
    if not packet:
        return 0
    config = packet[0] >> 3
    if config < 12:
        frame = (480, 960, 1920, 2880)[config % 4]
    elif config < 16:
        frame = (480, 960)[config % 2]
    else:
        frame = (120, 240, 480, 960)[config % 4]
    code = packet[0] & 3
    count = 1 if code == 0 else 2 if code < 3 else (packet[1] & 0x3F if len(packet) > 1 else 0)
    return frame * count


def xiph_lace(headers: list[bytes]) -> bytes:
    """Matroska/model form of Xiph headers: count-1, Xiph sizes of all but the last, data."""
    out = bytearray([len(headers) - 1])
    for h in headers[:-1]:
        out += bytes(lacing(len(h)))
    return bytes(out) + b"".join(headers)


def xiph_unlace(data: bytes) -> list[bytes]:
    if not data:
        raise FormatError("empty Xiph-laced header block")
    count = data[0] + 1
    pos, sizes = 1, []
    for _ in range(count - 1):
        size = 0
        while True:
            if pos >= len(data):
                raise FormatError("Xiph lacing truncated")
            size += data[pos]
            pos += 1
            if data[pos - 1] != 255:
                break
        sizes.append(size)
    sizes.append(len(data) - pos - sum(sizes))
    if sizes[-1] < 0:
        raise FormatError("Xiph lacing sizes exceed the data")
    out = []
    for size in sizes:
        out.append(data[pos : pos + size])
        pos += size
    return out


class VorbisInfo:
    """What is needed to time Vorbis packets: block sizes and each mode's block flag.

    The mode list sits at the end of the setup header, after codebooks we do not want to
    decode; it is found by reading backwards from the framing bit: each mode is 41 bits
    (block flag, two zero 16-bit fields, mapping) and is preceded by a 6-bit count."""

    def __init__(self, ident: bytes, setup: bytes) -> None:
        if len(ident) < 30 or ident[:7] != b"\x01vorbis":
            raise FormatError("bad Vorbis identification header")
        self.channels = ident[11]
        self.rate = int.from_bytes(ident[12:16], "little")
        self.blocksizes = (1 << (ident[28] & 15), 1 << (ident[28] >> 4))
        self.modes = self._modes(setup)
        self.mode_bits = max(0, (len(self.modes) - 1).bit_length())
        self._prev = 0
        self.first_size = 0  # block size of the first audio packet, while it is the latest

    @staticmethod
    def _modes(setup: bytes) -> list[bool]:
        if setup[:7] != b"\x05vorbis":
            raise FormatError("bad Vorbis setup header")

        def bit(i: int) -> int:
            return (setup[i >> 3] >> (i & 7)) & 1

        last = len(setup) - 1
        while last > 7 and setup[last] == 0:
            last -= 1
        framing = last * 8 + setup[last].bit_length() - 1
        best: list[bool] = []
        for n in range(1, 65):
            start = framing - 41 * n
            if start - 6 < 56:
                break
            mode_start = start
            if any(bit(mode_start + 1 + j) for j in range(32)):
                break
            count = sum(bit(start - 6 + j) << j for j in range(6))
            if count == n - 1:
                best = [bool(bit(framing - 41 * (n - k))) for k in range(n)]
        if not best:
            raise FormatError("cannot find the Vorbis mode list in the setup header")
        return best

    def samples(self, packet: bytes) -> int:
        """Samples this audio packet completes (0 for the first one)."""
        if not packet or packet[0] & 1:
            return 0
        mode = (packet[0] >> 1) & ((1 << self.mode_bits) - 1)
        size = self.blocksizes[self.modes[mode] if mode < len(self.modes) else 0]
        done = (self._prev + size) // 4 if self._prev else 0
        self.first_size = 0 if self._prev else size
        self._prev = size
        return done


# -- demuxer ---------------------------------------------------------------------------


@dataclass
class _Stream:
    serial: int
    partial: bytearray = field(default_factory=bytearray)
    headers: list[bytes] = field(default_factory=list)
    meta: TrackMeta | None = None
    vorbis: VorbisInfo | None = None
    pre_skip: int = 0
    rate: int = 48000
    ignored: bool = False
    next: int | None = None  # granule at the end of the previous page with packets


class OggDemuxer:
    """Sans-IO Ogg reader for Opus and Vorbis streams (others are skipped)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0
        self._streams: dict[int, _Stream] = {}
        self.skipped = 0  # bytes skipped while looking for a page
        self.pages = 0

    def feed(self, data: bytes) -> list[TrackMeta | Packet]:
        self._buf += data
        out: list[TrackMeta | Packet] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= _HEADER.size:
            if buf[pos : pos + 4] != CAPTURE:
                nxt = buf.find(CAPTURE, pos + 1)
                nxt = len(buf) - 3 if nxt < 0 else nxt
                self.skipped += nxt - pos
                pos = nxt
                continue
            try:
                page, length = OggPage.parse(buf, pos, self._base)
            except Truncated:
                break
            pos += length
            self.pages += 1
            self._page(page, out)
        del buf[:pos]
        self._base += pos
        return out

    def end(self) -> list[TrackMeta | Packet]:
        if self._buf:
            raise Truncated(f"Ogg data ends inside a page at byte {self._base}")
        if not self._streams:
            raise FormatError("no Ogg pages found")
        return []

    def _page(self, page: OggPage, out: list[TrackMeta | Packet]) -> None:
        st = self._streams.get(page.serial)
        if st is None:
            if not page.flags & BOS:
                return  # joined mid-stream; wait for a stream start
            st = self._streams[page.serial] = _Stream(page.serial)
        if not page.flags & CONTINUED:
            st.partial.clear()
        done: list[bytes] = []
        pos = 0
        for seg in page.segments:
            st.partial += page.body[pos : pos + seg]
            pos += seg
            if seg < 255:
                done.append(bytes(st.partial))
                st.partial.clear()
        audio: list[bytes] = []
        for pkt in done:
            if st.ignored:
                return
            if st.meta is None:
                self._header(st, pkt, out)
            else:
                audio.append(pkt)
        if not audio or st.meta is None:
            return
        # (duration, lead): the first Vorbis packet yields no samples; like ffmpeg, it is
        # placed half its block before the second rather than sharing its timestamp
        timing = [self._duration(st, p) for p in audio]
        if page.granule < 0:
            return
        # The first page is timed backwards from its granule; later pages forwards from
        # the previous granule, since the last page's granule may trim the end (RFC 7845).
        start = page.granule - sum(d for d, _ in timing) if st.next is None else st.next
        st.next = page.granule
        for pkt, (dur, lead) in zip(audio, timing, strict=True):
            ms = (start - lead - st.pre_skip) * 1000 // st.rate
            out.append(Packet(st.meta.id, ms, 0, True, pkt))
            start += dur

    def _duration(self, st: _Stream, pkt: bytes) -> tuple[int, int]:
        if st.vorbis is not None:
            dur = st.vorbis.samples(pkt)
            return dur, st.vorbis.first_size // 2 if dur == 0 else 0
        return opus_samples(pkt), 0

    def _header(self, st: _Stream, pkt: bytes, out: list[TrackMeta | Packet]) -> None:
        st.headers.append(pkt)
        first = st.headers[0]
        track_id = sum(1 for s in self._streams.values() if s.meta is not None) + 1
        if first[:8] == b"OpusHead":
            if len(first) < 19:
                raise FormatError("OpusHead shorter than 19 bytes")
            if len(st.headers) < 2:
                return
            st.pre_skip = int.from_bytes(first[10:12], "little")
            rate = int.from_bytes(first[12:16], "little") or 48000
            st.meta = TrackMeta(
                track_id, "audio", "opus", init=first, rate=rate, channels=first[9], size=16
            )
        elif first[:7] == b"\x01vorbis":
            if len(st.headers) < 3:
                return
            st.vorbis = VorbisInfo(st.headers[0], st.headers[2])
            st.rate = st.vorbis.rate
            init = xiph_lace(st.headers[:3])
            st.meta = TrackMeta(
                track_id,
                "audio",
                "vorbis",
                init=init,
                rate=st.rate,
                channels=st.vorbis.channels,
                size=16,
            )
        else:
            st.ignored = True
            return
        out.append(st.meta)


# -- muxer -----------------------------------------------------------------------------


class OggMuxer:
    """Writes one Opus or Vorbis track as an Ogg stream, one page per packet."""

    def __init__(self, tracks: list[TrackMeta], serial: int = 0x6D697374) -> None:
        usable = [t for t in tracks if t.codec in ("opus", "vorbis")]
        if not usable:
            raise UsageError("Ogg output needs an Opus or Vorbis track")
        self.track = usable[0]
        self.serial = serial
        self._seq = 0
        self._vorbis: VorbisInfo | None = None
        self._granule = 0
        if self.track.codec == "opus":
            self._headers = [
                bytes(self.track.init),
                b"OpusTags" + struct.pack("<I", 6) + b"mistpy" + b"\0\0\0\0",
            ]
            self._granule = (
                int.from_bytes(self._headers[0][10:12], "little")
                if len(self._headers[0]) >= 12
                else 0
            )
        else:
            self._headers = xiph_unlace(bytes(self.track.init))
            if len(self._headers) != 3:
                raise UsageError("Vorbis init must hold three Xiph-laced headers")
            self._vorbis = VorbisInfo(self._headers[0], self._headers[2])
        self._started = False

    def _pages(self, packet: bytes, granule: int, flags: int = 0) -> bytes:
        segs = lacing(len(packet))
        out = b""
        pos = 0
        while True:
            chunk, segs = segs[:255], segs[255:]
            size = sum(chunk)
            last = not segs
            page = OggPage(
                flags,
                granule if last else -1,
                self.serial,
                self._seq,
                chunk,
                packet[pos : pos + size],
            )
            self._seq += 1
            out += bytes(page)
            pos += size
            flags = CONTINUED
            if last:
                return out

    def header(self) -> bytes:
        out = self._pages(self._headers[0], 0, BOS)
        for h in self._headers[1:]:
            out += self._pages(h, 0)
        return out

    def packet(self, p: Packet) -> bytes:
        if p.track != self.track.id:
            return b""
        data = bytes(p.data)
        if not self._started:
            # the first packet's time sets the granule origin; Opus granules count the
            # pre-skip samples too, so a stream starting at -pre-skip starts at 0
            self._started = True
            rate = 48000 if self._vorbis is None else self._vorbis.rate
            self._granule = max(0, self._granule + round(p.dts * rate / 1000))
        self._granule += self._vorbis.samples(data) if self._vorbis else opus_samples(data)
        return self._pages(data, self._granule)

    def end(self) -> bytes:
        """An empty end-of-stream page."""
        page = OggPage(EOS, self._granule, self.serial, self._seq, [], b"")
        self._seq += 1
        return bytes(page)
