"""AAC helpers: ADTS framing (split and build) and AudioSpecificConfig.

MPEG-TS carries AAC as ADTS (7- or 9-byte header per frame); the media model keeps
raw frames plus an AudioSpecificConfig (:mod:`shm.model`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mistcodecs.bits import BitReader, BitWriter
from mistcodecs.errors import FormatError, Truncated

RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
SAMPLES_PER_FRAME = 1024


@dataclass
class Asc:
    object_type: int
    rate: int
    channels: int
    rate_index: int = 15
    channel_config: int = 0


def parse_asc(asc: bytes | memoryview) -> Asc:
    br = BitReader(asc, "AudioSpecificConfig")
    otype = br.read(5)
    if otype == 31:
        otype = 32 + br.read(6)
    index = br.read(4)
    rate = br.read(24) if index == 15 else (RATES[index] if index < len(RATES) else 0)
    if not rate:
        raise FormatError(f"AudioSpecificConfig: reserved sampling frequency index {index}")
    config = br.read(4)
    channels = 8 if config == 7 else config
    if otype in (5, 29):  # explicit SBR/PS: report the extension rate and the core type
        ext = br.read(4)
        rate = br.read(24) if ext == 15 else (RATES[ext] if ext < len(RATES) else rate)
        otype = br.read(5)
    return Asc(otype, rate, channels, index, config)


def build_asc(object_type: int, rate: int, channels: int) -> bytes:
    bw = BitWriter()
    if object_type >= 31:
        bw.write(31, 5)
        bw.write(object_type - 32, 6)
    else:
        bw.write(object_type, 5)
    if rate in RATES:
        bw.write(RATES.index(rate), 4)
    else:
        bw.write(15, 4)
        bw.write(rate, 24)
    bw.write(7 if channels == 8 else channels, 4)
    bw.write(0, 3)  # frameLengthFlag, dependsOnCoreCoder, extensionFlag
    return bw.to_bytes()


def codec_string(asc: bytes | memoryview) -> str:
    return f"mp4a.40.{parse_asc(asc).object_type}"


@dataclass
class AdtsFrame:
    object_type: int
    rate_index: int
    channel_config: int
    header_size: int
    frame_size: int
    blocks: int  # raw data blocks in the frame (usually 1)
    payload: bytes  # raw AAC, header (and CRC) removed

    @property
    def rate(self) -> int:
        return RATES[self.rate_index]

    @property
    def samples(self) -> int:
        return SAMPLES_PER_FRAME * self.blocks

    def asc(self) -> bytes:
        return build_asc(self.object_type, self.rate, self.channel_config)

    def __bytes__(self) -> bytes:
        """The frame re-framed with a 7-byte header (any CRC is dropped)."""
        return adts_header(self.asc(), len(self.payload)) + self.payload


def parse_adts_header(data: bytes | bytearray | memoryview, pos: int = 0) -> AdtsFrame:
    """Parse the ADTS header at ``pos`` (the payload is left empty)."""
    if len(data) - pos < 7:
        raise Truncated(f"ADTS header truncated at byte {pos}")
    b = bytes(data[pos : pos + 7])
    if b[0] != 0xFF or b[1] & 0xF6 != 0xF0:
        raise FormatError(f"no ADTS sync word at byte {pos} ({b[:2].hex()})")
    header = 7 if b[1] & 1 else 9
    index = (b[2] >> 2) & 0xF
    if index >= len(RATES):
        raise FormatError(f"ADTS frame at byte {pos}: reserved sampling frequency index {index}")
    size = ((b[3] & 3) << 11) | (b[4] << 3) | (b[5] >> 5)
    if size < header:
        raise FormatError(f"ADTS frame at byte {pos} claims {size} bytes, less than its header")
    channels = ((b[2] & 1) << 2) | (b[3] >> 6)
    return AdtsFrame((b[2] >> 6) + 1, index, channels, header, size, (b[6] & 3) + 1, b"")


def parse_adts(data: bytes | memoryview) -> list[AdtsFrame]:
    """Split a complete ADTS buffer; raises on junk or a cut frame."""
    splitter = AdtsSplitter(strict=True)
    frames = splitter.feed(data)
    if splitter.pending:
        raise Truncated(f"ADTS data ends inside a frame ({splitter.pending} bytes left)")
    return frames


class AdtsSplitter:
    """Incremental ADTS splitter. Non-strict mode skips junk to the next sync word and
    counts the skipped bytes in ``skipped``."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self._buf = bytearray()
        self._consumed = 0
        self.skipped = 0

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | memoryview) -> list[AdtsFrame]:
        self._buf += data
        buf = self._buf
        out: list[AdtsFrame] = []
        pos = 0
        while len(buf) - pos >= 7:
            try:
                frame = parse_adts_header(buf, pos)
            except FormatError:
                if self.strict:
                    raise FormatError(f"no ADTS frame at byte {self._consumed + pos}") from None
                nxt = buf.find(b"\xff", pos + 1)
                nxt = len(buf) if nxt < 0 else nxt
                self.skipped += nxt - pos
                pos = nxt
                continue
            if len(buf) - pos < frame.frame_size:
                break
            frame.payload = bytes(buf[pos + frame.header_size : pos + frame.frame_size])
            out.append(frame)
            pos += frame.frame_size
        del buf[:pos]
        self._consumed += pos
        return out

    def reset(self) -> None:
        self._buf.clear()


def adts_header(asc: bytes | memoryview, frame_len: int) -> bytes:
    """The 7-byte ADTS header (no CRC) for a raw frame of ``frame_len`` bytes."""
    info = parse_asc(asc)
    total = frame_len + 7
    if total > 0x1FFF:
        raise FormatError(f"AAC frame of {frame_len} bytes does not fit in ADTS")
    profile = max(0, min(info.object_type, 4) - 1)
    index = info.rate_index if info.rate_index < len(RATES) else _nearest_index(info.rate)
    cfg = info.channel_config
    return bytes(
        (
            0xFF,
            0xF1,
            (profile << 6) | (index << 2) | (cfg >> 2),
            ((cfg & 3) << 6) | (total >> 11),
            (total >> 3) & 0xFF,
            ((total & 7) << 5) | 0x1F,
            0xFC,
        )
    )


def _nearest_index(rate: int) -> int:
    return min(range(len(RATES)), key=lambda i: abs(RATES[i] - rate))
