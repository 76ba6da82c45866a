"""Frame headers of the audio codecs MPEG-TS carries besides AAC: MPEG audio (MP3)
and AC-3. Enough to split a PES payload into frames and time them."""

from __future__ import annotations

from dataclasses import dataclass

from mistcodecs.errors import FormatError, Truncated

_MPA_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_MPA_KBPS = {
    (1, 3): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 1): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 3): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 1): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_AC3_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640)
_AC3_RATES = (48000, 44100, 32000)
_AC3_CHANNELS = (2, 1, 2, 3, 3, 4, 4, 5)


@dataclass(slots=True)
class AudioFrameInfo:
    size: int
    samples: int
    rate: int
    channels: int


def parse_mpa_header(data: bytes | bytearray | memoryview, pos: int = 0) -> AudioFrameInfo:
    """MPEG-1/2/2.5 audio frame header (layers I-III)."""
    if len(data) - pos < 4:
        raise Truncated(f"MPEG audio header truncated at byte {pos}")
    b1, b2, b3 = data[pos + 1], data[pos + 2], data[pos + 3]
    if data[pos] != 0xFF or b1 & 0xE0 != 0xE0:
        raise FormatError(f"no MPEG audio sync at byte {pos}")
    version, layer_bits = (b1 >> 3) & 3, (b1 >> 1) & 3
    index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if version == 1 or layer_bits == 0 or index in (0, 15) or rate_index == 3:
        raise FormatError(f"MPEG audio header at byte {pos} uses reserved or free-format values")
    rate = _MPA_RATES[version][rate_index]
    kbps = _MPA_KBPS[(1 if version == 3 else 2, layer_bits)][index]
    pad = (b2 >> 1) & 1
    channels = 1 if b3 >> 6 == 3 else 2
    if layer_bits == 3:  # layer I
        return AudioFrameInfo((12000 * kbps // rate + pad) * 4, 384, rate, channels)
    if layer_bits == 1 and version != 3:  # layer III, MPEG-2/2.5
        return AudioFrameInfo(72000 * kbps // rate + pad, 576, rate, channels)
    return AudioFrameInfo(144000 * kbps // rate + pad, 1152, rate, channels)


def parse_ac3_header(data: bytes | bytearray | memoryview, pos: int = 0) -> AudioFrameInfo:
    """AC-3 syncinfo + the start of BSI (ATSC A/52 section 5.3)."""
    if len(data) - pos < 7:
        raise Truncated(f"AC-3 header truncated at byte {pos}")
    if data[pos] != 0x0B or data[pos + 1] != 0x77:
        raise FormatError(f"no AC-3 sync at byte {pos}")
    fscod, code = data[pos + 4] >> 6, data[pos + 4] & 0x3F
    if fscod == 3 or code >= 2 * len(_AC3_KBPS):
        raise FormatError(f"AC-3 frame at byte {pos} has reserved rate code {fscod}/{code}")
    if data[pos + 5] >> 3 > 10:
        raise FormatError(f"AC-3 frame at byte {pos} has bsid {data[pos + 5] >> 3} (E-AC-3?)")
    kbps = _AC3_KBPS[code >> 1]
    rate = _AC3_RATES[fscod]
    # 16-bit words per frame; at 44.1 kHz odd rate codes carry one padding word
    words = (2 * kbps, kbps * 96000 // 44100 + (code & 1), 3 * kbps)[fscod]
    bits = int.from_bytes(bytes(data[pos + 6 : pos + 8]).ljust(2, b"\x00"), "big")
    acmod = bits >> 13
    shift = 12
    if acmod & 1 and acmod != 1:
        shift -= 2
    if acmod & 4:
        shift -= 2
    if acmod == 2:
        shift -= 2
    lfe = (bits >> shift) & 1
    return AudioFrameInfo(words * 2, 1536, rate, _AC3_CHANNELS[acmod] + lfe)


def parse_eac3_header(data: bytes | bytearray | memoryview, pos: int = 0) -> AudioFrameInfo:
    """E-AC-3 syncframe header (ATSC A/52 annex E); dependent substreams report 0 samples
    so that a caller can keep them with the independent frame before them."""
    if len(data) - pos < 6:
        raise Truncated(f"E-AC-3 header truncated at byte {pos}")
    if data[pos] != 0x0B or data[pos + 1] != 0x77:
        raise FormatError(f"no E-AC-3 sync at byte {pos}")
    if data[pos + 5] >> 3 <= 10:
        raise FormatError(f"frame at byte {pos} has bsid {data[pos + 5] >> 3}: AC-3, not E-AC-3")
    kind = data[pos + 2] >> 6
    size = ((((data[pos + 2] & 7) << 8) | data[pos + 3]) + 1) * 2
    fscod, code = data[pos + 4] >> 6, (data[pos + 4] >> 4) & 3
    if fscod == 3:
        if code == 3:
            raise FormatError(f"E-AC-3 frame at byte {pos} has a reserved sample rate")
        rate, blocks = (24000, 22050, 16000)[code], 6
    else:
        rate, blocks = _AC3_RATES[fscod], (1, 2, 3, 6)[code]
    acmod, lfe = (data[pos + 4] >> 1) & 7, data[pos + 4] & 1
    return AudioFrameInfo(size, 0 if kind == 1 else 256 * blocks, rate, _AC3_CHANNELS[acmod] + lfe)


class FrameSplitter:
    """Incremental splitter for sync-word framed audio; skips junk and counts it."""

    def __init__(self, codec: str) -> None:
        if codec == "MP3":
            self._parse, self._sync = parse_mpa_header, b"\xff"
        elif codec == "AC3":
            self._parse, self._sync = parse_ac3_header, b"\x0b\x77"
        elif codec == "EAC3":
            self._parse, self._sync = parse_eac3_header, b"\x0b\x77"
        else:
            raise ValueError(f"no frame splitter for {codec}")
        self._buf = bytearray()
        self.skipped = 0

    def feed(self, data: bytes | memoryview) -> list[tuple[AudioFrameInfo, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[AudioFrameInfo, bytes]] = []
        pos = 0
        while len(buf) - pos >= 8:
            try:
                info = self._parse(buf, pos)
            except FormatError:
                nxt = buf.find(self._sync, pos + 1)
                nxt = len(buf) if nxt < 0 else nxt
                self.skipped += nxt - pos
                pos = nxt
                continue
            if len(buf) - pos < info.size:
                break
            if info.samples == 0 and out:  # E-AC-3 dependent substream: same frame
                out[-1] = (out[-1][0], out[-1][1] + bytes(buf[pos : pos + info.size]))
            elif info.samples:
                out.append((info, bytes(buf[pos : pos + info.size])))
            pos += info.size
        del buf[:pos]
        return out

    def reset(self) -> None:
        self._buf.clear()


# -- Opus (ETSI TS 102 366 style encapsulation as used for Opus in MPEG-TS) ---------
_OPUS_FRAME_10US = (1000, 2000, 4000, 6000) * 3 + (1000, 2000) * 2 + (250, 500, 1000, 2000) * 4


def opus_packet_samples(packet: bytes | memoryview) -> int:
    """Duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 3.1)."""
    if not packet:
        raise Truncated("empty Opus packet")
    toc = packet[0]
    per_frame = _OPUS_FRAME_10US[toc >> 3] * 48 // 100
    code = toc & 3
    if code == 0:
        return per_frame
    if code in (1, 2):
        return 2 * per_frame
    if len(packet) < 2:
        raise Truncated("Opus code 3 packet without a frame count")
    return (packet[1] & 0x3F) * per_frame


def opus_head(channels: int, pre_skip: int = 0, rate: int = 48000) -> bytes:
    """An OpusHead for mapping family 0 (mono or stereo)."""
    return (
        b"OpusHead"
        + bytes((1, channels))
        + pre_skip.to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + b"\x00\x00\x00"
    )


def opus_control_header(size: int) -> bytes:
    """The control header before each Opus access unit in a PES (no trims)."""
    return b"\x7f\xe0" + b"\xff" * (size // 255) + bytes((size % 255,))


@dataclass(slots=True)
class OpusUnit:
    data: bytes
    start_trim: int = 0
    end_trim: int = 0


def split_opus_pes(payload: bytes | memoryview) -> list[OpusUnit]:
    """Access units of an Opus PES payload: control header, then the packet."""
    out: list[OpusUnit] = []
    pos = 0
    end = len(payload)
    while pos < end:
        if end - pos < 3:
            raise Truncated(f"Opus control header truncated at byte {pos}")
        if payload[pos] != 0x7F or payload[pos + 1] & 0xE0 != 0xE0:
            raise FormatError(f"no Opus control header at byte {pos}")
        flags = payload[pos + 1]
        pos += 2
        size = 0
        while True:
            if pos >= end:
                raise Truncated("Opus au_size truncated")
            size += payload[pos]
            pos += 1
            if payload[pos - 1] != 0xFF:
                break
        unit = OpusUnit(b"")
        for bit in (0x10, 0x08):
            if flags & bit:
                if pos + 2 > end:
                    raise Truncated("Opus trim field truncated")
                value = (payload[pos] << 8) | payload[pos + 1]
                if bit == 0x10:
                    unit.start_trim = value
                else:
                    unit.end_trim = value
                pos += 2
        if flags & 0x04:
            if pos >= end or pos + 1 + payload[pos] > end:
                raise Truncated("Opus control extension truncated")
            pos += 1 + payload[pos]
        if pos + size > end:
            raise Truncated(f"Opus access unit of {size} bytes overruns its PES")
        unit.data = bytes(payload[pos : pos + size])
        pos += size
        out.append(unit)
    return out
