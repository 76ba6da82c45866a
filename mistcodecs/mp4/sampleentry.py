"""Sample descriptions (``stsd``): parse them into our codec names and init data, and
write them back for the muxers.

Init conventions follow ``shm/model.py``: avcC/hvcC/av1C bodies verbatim, the
AudioSpecificConfig out of ``esds``, an ``OpusHead`` rebuilt from ``dOps``, the vpcC body
(including its version/flags word) for VP9, ``fLaC`` + metadata blocks for FLAC.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from mistcodecs.aac import parse_asc
from mistcodecs.errors import FormatError
from mistcodecs.mp4.boxes import BoxError, box, buffer_reader, fourcc, full_box, iter_boxes, need
from shm.model import TrackMeta

VISUAL = {"avc1": "H264", "avc3": "H264", "hvc1": "HEVC", "hev1": "HEVC", "av01": "AV1",
          "vp08": "VP8", "vp09": "VP9", "mp4v": "MPEG4", "jpeg": "JPEG", "mjpa": "JPEG"}  # fmt: skip
AUDIO = {"mp4a": "AAC", "Opus": "opus", "ac-3": "AC3", "ec-3": "EAC3", ".mp3": "MP3",
         "fLaC": "FLAC", "twos": "PCM", "sowt": "PCM", "ipcm": "PCM", "lpcm": "PCM",
         "alaw": "ALAW", "ulaw": "ULAW"}  # fmt: skip
CONFIG_BOX = {"H264": "avcC", "HEVC": "hvcC", "AV1": "av1C", "VP9": "vpcC", "VP8": "vpcC"}
MP3_OTI = {0x69, 0x6B}
TEXT = {"tx3g": "subtitle"}  # 3GPP timed text (ffmpeg's mov_text)
AAC_OTI = {0x40, 0x66, 0x67, 0x68}


@dataclass
class SampleEntry:
    """The first sample description of a track, with its config boxes by type."""

    format: str
    codec: str
    width: int = 0
    height: int = 0
    channels: int = 0
    sample_size: int = 0
    rate: int = 0
    boxes: dict[str, bytes] = field(default_factory=dict)
    init: bytes = b""
    little_endian: bool = False  # PCM from 'sowt' (or lpcm flags) must be byte-swapped

    @classmethod
    def parse_stsd(cls, body: bytes) -> SampleEntry:
        need(body, 8, "stsd")
        count = struct.unpack_from(">I", body, 4)[0]
        if count < 1:
            raise BoxError("stsd has no sample description")
        need(body, 16, "stsd")
        size, kind = struct.unpack_from(">I4s", body, 8)
        if size < 16 or 8 + size > len(body):
            raise BoxError(f"stsd entry size {size} does not fit its {len(body)}-byte stsd")
        return cls.parse(fourcc(kind), body[16 : 8 + size])

    @classmethod
    def parse(cls, fmt: str, body: bytes) -> SampleEntry:
        if fmt in VISUAL or fmt in ("encv", "mp4v", "s263"):
            need(body, 78, fmt)
            width, height = struct.unpack_from(">HH", body, 24)
            entry = cls(fmt, VISUAL.get(fmt, fmt), width=width, height=height)
            children_at = 78
        elif fmt in AUDIO or fmt == "enca":
            need(body, 28, fmt)
            version, channels, sample_size, rate = struct.unpack_from(">H6xHH4xI", body, 8)
            entry = cls(
                fmt,
                AUDIO.get(fmt, fmt),
                channels=channels,
                sample_size=sample_size,
                rate=rate >> 16,
            )
            children_at = 28
            if version == 1:  # QuickTime sound description v1: four more 32-bit fields
                children_at += 16
            elif version == 2:  # v2: rate as float64, channel count 32-bit, bits per channel
                need(body, 64, fmt)
                rate_f, channels2, _, bits, lpcm_flags = struct.unpack_from(">dIIII", body, 32)
                entry.rate, entry.channels, entry.sample_size = round(rate_f), channels2, bits
                entry.little_endian = fmt == "lpcm" and not lpcm_flags & 0x2
                children_at = 64
        elif fmt in TEXT:
            return cls(fmt, TEXT[fmt])  # samples become model payloads in the demuxer
        else:
            return cls(fmt, fmt)
        reader = buffer_reader(body)
        try:
            for child in iter_boxes(reader, children_at, len(body)):
                entry.boxes.setdefault(child.type, reader(child.payload_offset, child.payload_size))
            if "wave" in entry.boxes:  # QuickTime keeps esds inside a 'wave' atom
                wave = entry.boxes["wave"]
                wave_reader = buffer_reader(wave)
                for child in iter_boxes(wave_reader, 0, len(wave)):
                    entry.boxes.setdefault(
                        child.type, wave_reader(child.payload_offset, child.payload_size)
                    )
        except FormatError as exc:
            raise BoxError(f"in '{fmt}' sample entry: {exc}") from exc
        entry._finish()
        return entry

    def _finish(self) -> None:
        """Work out codec-specific init data from the config boxes."""
        codec = self.codec
        if codec in CONFIG_BOX and CONFIG_BOX[codec] in self.boxes:
            self.init = self.boxes[CONFIG_BOX[codec]]
            if codec == "VP8":
                self.init = b""
        elif codec == "AAC" and "esds" in self.boxes:
            oti, dsi = parse_esds(self.boxes["esds"])
            if oti in MP3_OTI:
                self.codec, self.init = "MP3", b""
            elif oti in AAC_OTI:
                self.init = dsi
                # the sample entry's channel count is often a placeholder 2; trust the ASC
                try:
                    asc = parse_asc(dsi)
                except FormatError:
                    asc = None
                if asc is not None and asc.channels:
                    self.channels = asc.channels
            else:
                self.codec = f"mp4a-{oti:02x}"
        elif codec == "opus" and "dOps" in self.boxes:
            self.init = dops_to_opushead(self.boxes["dOps"])
            self.rate = 48000
        elif codec == "AC3" and len(self.boxes.get("dac3", b"")) >= 3:
            bits = int.from_bytes(self.boxes["dac3"][:3], "big")
            acmod, lfe = (bits >> 11) & 7, (bits >> 10) & 1
            self.channels = (2, 1, 2, 3, 3, 4, 4, 5)[acmod] + lfe
        elif codec == "FLAC" and "dfLa" in self.boxes:
            self.init = b"fLaC" + self.boxes["dfLa"][4:]
        elif codec == "PCM":
            self.little_endian = self.little_endian or self.format == "sowt"
            if self.format == "ipcm" and "pcmC" in self.boxes and len(self.boxes["pcmC"]) >= 6:
                self.little_endian = bool(self.boxes["pcmC"][4] & 1)
                self.sample_size = self.boxes["pcmC"][5]


# ---- esds --------------------------------------------------------------------------


def _descriptor(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, body start, body end) of the MPEG-4 descriptor at ``pos``."""
    need(data, 2, "esds", pos)
    tag = data[pos]
    pos += 1
    length = 0
    for _ in range(4):
        need(data, 1, "esds", pos)
        byte = data[pos]
        pos += 1
        length = (length << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    if pos + length > len(data):
        raise BoxError(f"esds descriptor tag {tag} length {length} runs past the box")
    return tag, pos, pos + length


def parse_esds(body: bytes) -> tuple[int, bytes]:
    """(objectTypeIndication, DecoderSpecificInfo) from an esds body."""
    tag, pos, end = _descriptor(body, 4)
    if tag != 0x03:
        raise BoxError(f"esds: expected ES_Descriptor, got tag {tag}")
    need(body, 3, "esds", pos)
    flags = body[pos + 2]
    pos += 3
    if flags & 0x80:
        pos += 2
    if flags & 0x40:
        need(body, 1, "esds", pos)
        pos += 1 + body[pos]
    if flags & 0x20:
        pos += 2
    tag, pos, end = _descriptor(body, pos)
    if tag != 0x04:
        raise BoxError(f"esds: expected DecoderConfigDescriptor, got tag {tag}")
    need(body, 13, "esds", pos)
    oti = body[pos]
    pos += 13
    dsi = b""
    if pos < end:
        tag, start, stop = _descriptor(body, pos)
        if tag == 0x05:
            dsi = bytes(body[start:stop])
    return oti, dsi


def _desc(tag: int, body: bytes) -> bytes:
    n = len(body)
    return (
        bytes(
            [
                tag,
                0x80 | (n >> 21 & 0x7F),
                0x80 | (n >> 14 & 0x7F),
                0x80 | (n >> 7 & 0x7F),
                n & 0x7F,
            ]
        )
        + body
    )


def build_esds(
    oti: int, dsi: bytes, track_id: int, bitrate: int = 0, max_bitrate: int = 0
) -> bytes:
    stream_type = 0x15  # audio stream (5 << 2) | reserved 1
    dcd = struct.pack(">BBBHII", oti, stream_type, 0, 0, max_bitrate, bitrate)
    dcd_full = _desc(0x04, dcd + (_desc(0x05, dsi) if dsi else b""))
    es = _desc(0x03, struct.pack(">HB", track_id & 0xFFFF, 0) + dcd_full + _desc(0x06, b"\x02"))
    return full_box("esds", 0, 0, es)


# ---- Opus --------------------------------------------------------------------------


def dops_to_opushead(body: bytes) -> bytes:
    """dOps (big-endian, version 0) -> OpusHead (little-endian, version 1)."""
    need(body, 11, "dOps")
    _, channels, pre_skip, rate, gain, family = struct.unpack_from(">BBHIhB", body)
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, rate, gain, family)
    if family:
        need(body, 2 + channels, "dOps", 11)
        head += body[11 : 13 + channels]
    return head


def opushead_to_dops(head: bytes) -> bytes:
    if len(head) < 19 or head[:8] != b"OpusHead":
        raise FormatError("opus init is not an OpusHead")
    _, channels, pre_skip, rate, gain, family = struct.unpack_from("<BBHIhB", head, 8)
    body = struct.pack(">BBHIhB", 0, channels, pre_skip, rate, gain, family)
    if family:
        body += head[19 : 21 + channels]
    return box("dOps", body)


# ---- writing -----------------------------------------------------------------------

AC3_BITRATES = (
    32,
    40,
    48,
    56,
    64,
    80,
    96,
    112,
    128,
    160,
    192,
    224,
    256,
    320,
    384,
    448,
    512,
    576,
    640,
)


def build_dac3(rate: int, channels: int, bytes_per_second: int = 0) -> bytes:
    """dac3 body from what the model knows (AC-3 decoders read the frames anyway)."""
    fscod = {48000: 0, 44100: 1, 32000: 2}.get(rate, 0)
    lfe = 1 if channels in (4, 6) else 0
    acmod = {1: 1, 2: 2, 3: 3, 4: 2, 5: 7, 6: 7}.get(channels, 2)
    kbps = bytes_per_second * 8 // 1000
    rate_code = next((i for i, v in enumerate(AC3_BITRATES) if v >= kbps), len(AC3_BITRATES) - 1)
    bits = (fscod << 22) | (8 << 17) | (0 << 14) | (acmod << 11) | (lfe << 10) | (rate_code << 5)
    return bits.to_bytes(3, "big")


def _visual(fmt: str, width: int, height: int, *config: bytes) -> bytes:
    fixed = struct.pack(
        ">6xH16xHHIIIHB31xHh", 1, width, height, 0x480000, 0x480000, 0, 1, 0, 0x18, -1
    )
    return box(fmt, fixed, *config)


def _audio(fmt: str, channels: int, bits: int, rate: int, *config: bytes) -> bytes:
    fixed = struct.pack(
        ">6xH8xHH4xI", 1, channels or 2, bits or 16, (rate if rate < 0x10000 else 0) << 16
    )
    return box(fmt, fixed, *config)


def default_vpcc(bit_depth: int = 8) -> bytes:
    """vpcC body for VP8/VP9 streams that came without one (profile 0, 4:2:0, BT.709)."""
    return struct.pack(">IBBBBBBH", 1 << 24, 0, 10, (bit_depth << 4) | (1 << 1), 1, 1, 1, 0)


# What write_sample_entry can describe (what an MP4/fMP4 output may accept).
MUXABLE_CODECS = frozenset(
    {"H264", "HEVC", "AV1", "VP8", "VP9", "AAC", "MP3", "opus", "FLAC", "AC3", "PCM"}
)


def write_sample_entry(track: TrackMeta) -> bytes:
    """One sample entry for a TrackMeta; raises FormatError if we cannot describe it."""
    codec: str = track.codec
    init: bytes = bytes(track.init)
    width, height = track.width, track.height
    rate, channels = track.rate, track.channels
    if codec == "H264":
        return _visual("avc1", width, height, box("avcC", init))
    if codec == "HEVC":
        return _visual("hvc1", width, height, box("hvcC", init))
    if codec == "AV1":
        return _visual("av01", width, height, box("av1C", init))
    if codec in ("VP8", "VP9"):
        vpcc = init if codec == "VP9" and len(init) >= 12 else default_vpcc()
        return _visual("vp09" if codec == "VP9" else "vp08", width, height, box("vpcC", vpcc))
    if codec == "AAC":
        return _audio("mp4a", channels, 16, rate, build_esds(0x40, init, track.id, track.bps * 8))
    if codec == "MP3":
        return _audio("mp4a", channels, 16, rate, build_esds(0x6B, b"", track.id, track.bps * 8))
    if codec == "opus":
        return _audio("Opus", channels, 16, 48000, opushead_to_dops(init))
    if codec == "PCM":  # QuickTime 'twos': signed big-endian, as the model's PCM
        return _audio("twos", channels, track.size or 16, rate)
    if codec == "AC3":
        return _audio(
            "ac-3", channels, 16, rate, box("dac3", build_dac3(rate, channels, track.bps))
        )
    if codec == "FLAC":
        if init[:4] != b"fLaC":
            raise FormatError("FLAC init must start with fLaC")
        return _audio("fLaC", channels, track.size or 16, rate, full_box("dfLa", 0, 0, init[4:]))
    raise FormatError(f"codec {codec} cannot be put in MP4 here")


HANDLERS = {
    "video": ("vide", "VideoHandler"),
    "audio": ("soun", "SoundHandler"),
    "meta": ("text", "TextHandler"),
}
