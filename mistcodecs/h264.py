"""H.264 bitstream helpers: Annex B <-> AVCC, SPS parsing, avcC records, codec strings.

Annex B (start codes) is what MPEG-TS and RTP-derived streams carry; AVCC (4-byte
length prefixes) plus an avcC record is the media model's form (:mod:`shm.model`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from mistcodecs.bits import BitReader, unescape_rbsp
from mistcodecs.errors import FormatError, Truncated

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

AUD_ANNEXB = b"\x00\x00\x00\x01\x09\xf0"
START_CODE = b"\x00\x00\x00\x01"
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def split_annexb(data: bytes | memoryview) -> list[bytes]:
    """Split an Annex B byte stream into NAL units (start codes and trailing zeros removed)."""
    buf = bytes(data)
    out: list[bytes] = []
    i = buf.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        nxt = buf.find(b"\x00\x00\x01", start)
        end = len(buf) if nxt < 0 else nxt
        nal = buf[start:end].rstrip(b"\x00")  # a NAL unit never ends in a zero byte
        if nal:
            out.append(nal)
        i = nxt
    return out


def nals_to_avcc(nals: list[bytes]) -> bytes:
    """Join NAL units with 4-byte big-endian length prefixes."""
    out = bytearray()
    for nal in nals:
        out += _U32.pack(len(nal))
        out += nal
    return bytes(out)


def annexb_to_avcc(data: bytes | memoryview) -> bytes:
    return nals_to_avcc(split_annexb(data))


def iter_avcc(data: bytes | memoryview, nal_length_size: int = 4) -> list[memoryview]:
    """NAL units of a length-prefixed buffer; raises FormatError on a bad length."""
    view = memoryview(data)
    out: list[memoryview] = []
    pos = 0
    end = len(view)
    while pos < end:
        if pos + nal_length_size > end:
            raise Truncated(f"NAL length field truncated at byte {pos}")
        size = int.from_bytes(view[pos : pos + nal_length_size], "big")
        pos += nal_length_size
        if pos + size > end:
            raise Truncated(f"NAL unit of {size} bytes at byte {pos} overruns the {end}-byte frame")
        out.append(view[pos : pos + size])
        pos += size
    return out


def avcc_to_annexb(data: bytes | memoryview, nal_length_size: int = 4) -> bytes:
    out = bytearray()
    for nal in iter_avcc(data, nal_length_size):
        out += START_CODE
        out += nal
    return bytes(out)


def is_keyframe_avcc(data: bytes | memoryview, nal_length_size: int = 4) -> bool:
    try:
        return any(len(n) and n[0] & 0x1F == NAL_IDR for n in iter_avcc(data, nal_length_size))
    except FormatError:
        return False


@dataclass
class Sps:
    profile: int
    constraints: int
    level: int
    width: int
    height: int
    chroma_format: int = 1
    bit_depth_luma: int = 8
    bit_depth_chroma: int = 8
    fps: float = 0.0  # from VUI timing; 0 when absent
    sps_id: int = 0


def _skip_scaling_list(br: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + br.se() + 256) % 256
        last = nxt or last


def parse_sps(nal: bytes | memoryview) -> Sps:
    """Parse an SPS NAL unit (with its 1-byte header)."""
    rbsp = unescape_rbsp(nal)
    if len(rbsp) < 4 or rbsp[0] & 0x1F != NAL_SPS:
        raise FormatError(f"not an H.264 SPS (NAL header {rbsp[:1].hex() or 'missing'})")
    br = BitReader(rbsp[1:], "H.264 SPS")
    profile, constraints, level = br.read(8), br.read(8), br.read(8)
    sps_id = br.ue()
    chroma, depth_l, depth_c, separate = 1, 8, 8, False
    if profile in _HIGH_PROFILES:
        chroma = br.ue()
        if chroma > 3:
            raise FormatError(f"H.264 SPS: chroma_format_idc {chroma} out of range")
        if chroma == 3:
            separate = br.flag()
        depth_l, depth_c = br.ue() + 8, br.ue() + 8
        br.skip(1)  # qpprime_y_zero_transform_bypass
        if br.flag():
            for i in range(12 if chroma == 3 else 8):
                if br.flag():
                    _skip_scaling_list(br, 16 if i < 6 else 64)
    br.ue()  # log2_max_frame_num_minus4
    poc_type = br.ue()
    if poc_type == 0:
        br.ue()
    elif poc_type == 1:
        br.skip(1)
        br.se()
        br.se()
        cycle = br.ue()
        if cycle > 255:
            raise FormatError(f"H.264 SPS: {cycle} ref frames in POC cycle")
        for _ in range(cycle):
            br.se()
    br.ue()  # max_num_ref_frames
    br.skip(1)
    w_mbs, h_units = br.ue() + 1, br.ue() + 1
    frame_mbs_only = br.flag()
    if not frame_mbs_only:
        br.skip(1)
    br.skip(1)  # direct_8x8_inference
    crop = (br.ue(), br.ue(), br.ue(), br.ue()) if br.flag() else (0, 0, 0, 0)
    if chroma == 0 or separate:
        unit_x, unit_y = 1, 2 - frame_mbs_only
    else:
        unit_x = 1 if chroma == 3 else 2
        unit_y = (2 if chroma == 1 else 1) * (2 - frame_mbs_only)
    width = w_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * h_units * 16 - unit_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise FormatError(f"H.264 SPS: cropping leaves {width}x{height}")
    fps = 0.0
    try:
        if br.flag():
            fps = _vui_fps(br)
    except Truncated:
        fps = 0.0  # a cut VUI is common in the wild; geometry is what matters
    return Sps(profile, constraints, level, width, height, chroma, depth_l, depth_c, fps, sps_id)


def _vui_fps(br: BitReader) -> float:
    if br.flag() and br.read(8) == 255:  # aspect_ratio_idc == Extended_SAR
        br.skip(32)
    if br.flag():
        br.skip(1)
    if br.flag():
        br.skip(4)
        if br.flag():
            br.skip(24)
    if br.flag():
        br.ue()
        br.ue()
    if br.flag():
        units, scale = br.read(32), br.read(32)
        if units:
            return scale / (2 * units)
    return 0.0


@dataclass
class AvcConfig:
    profile: int
    compat: int
    level: int
    nal_length_size: int
    sps: list[bytes] = field(default_factory=list)
    pps: list[bytes] = field(default_factory=list)
    ext: bytes = b""  # chroma/bit-depth trailer of high profiles, kept verbatim


def build_avcc(sps_list: list[bytes], pps_list: list[bytes]) -> bytes:
    """AVCDecoderConfigurationRecord with 4-byte NAL lengths, from raw SPS/PPS NAL units."""
    if not sps_list or not pps_list:
        raise FormatError("avcC needs at least one SPS and one PPS")
    first = sps_list[0]
    if len(first) < 4:
        raise Truncated(f"SPS of {len(first)} bytes is too short for avcC")
    out = bytearray((1, first[1], first[2], first[3], 0xFF, 0xE0 | len(sps_list)))
    for sps in sps_list:
        out += _U16.pack(len(sps)) + sps
    out.append(len(pps_list))
    for pps in pps_list:
        out += _U16.pack(len(pps)) + pps
    if first[1] in (100, 110, 122, 244):
        info = parse_sps(first)
        out += bytes(
            (
                0xFC | info.chroma_format,
                0xF8 | (info.bit_depth_luma - 8),
                0xF8 | (info.bit_depth_chroma - 8),
                0,
            )
        )
    return bytes(out)


def parse_avcc(init: bytes | memoryview) -> AvcConfig:
    data = bytes(init)
    if len(data) < 7:
        raise Truncated(f"avcC of {len(data)} bytes is shorter than its 7-byte header")
    if data[0] != 1:
        raise FormatError(f"avcC version {data[0]}, expected 1")
    cfg = AvcConfig(data[1], data[2], data[3], (data[4] & 3) + 1)
    pos = 6
    for count, target in ((data[5] & 0x1F, cfg.sps), (None, cfg.pps)):
        if count is None:
            if pos >= len(data):
                raise Truncated(f"avcC PPS count missing at byte {pos}")
            count = data[pos]
            pos += 1
        for _ in range(count):
            if pos + 2 > len(data):
                raise Truncated(f"avcC parameter set length truncated at byte {pos}")
            (size,) = _U16.unpack_from(data, pos)
            pos += 2
            if pos + size > len(data):
                raise Truncated(
                    f"avcC parameter set of {size} bytes at byte {pos} overruns the record"
                )
            target.append(data[pos : pos + size])
            pos += size
    cfg.ext = data[pos:]
    return cfg


def codec_string(init: bytes | memoryview) -> str:
    """RFC 6381 codec string from an avcC record, e.g. ``avc1.64001f``."""
    data = bytes(init)
    if len(data) < 4:
        raise Truncated("avcC too short for a codec string")
    return f"avc1.{data[1]:02x}{data[2]:02x}{data[3]:02x}"
