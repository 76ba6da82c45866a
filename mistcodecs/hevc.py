"""HEVC bitstream helpers: NAL types, SPS geometry/profile, hvcC records, codec strings.

Annex B splitting and AVCC framing are the same as H.264 (:mod:`mistcodecs.h264`);
only the 2-byte NAL header and the parameter-set syntax differ.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from mistcodecs.bits import BitReader, unescape_rbsp
from mistcodecs.errors import FormatError, Truncated
from mistcodecs.h264 import iter_avcc

NAL_VPS = 32
NAL_SPS = 33
NAL_PPS = 34
NAL_AUD = 35
NAL_PREFIX_SEI = 39
AUD_ANNEXB = b"\x00\x00\x00\x01\x46\x01\x50"
_U16 = struct.Struct(">H")


def nal_type(nal: bytes | memoryview) -> int:
    return (nal[0] >> 1) & 0x3F


def is_irap(kind: int) -> bool:
    """BLA, IDR and CRA pictures (16..23) are random access points."""
    return 16 <= kind <= 23


def is_keyframe_avcc(data: bytes | memoryview, nal_length_size: int = 4) -> bool:
    try:
        return any(len(n) and is_irap(nal_type(n)) for n in iter_avcc(data, nal_length_size))
    except FormatError:
        return False


@dataclass
class ProfileTierLevel:
    profile_space: int = 0
    tier: int = 0
    profile: int = 0
    compat_flags: int = 0
    constraints: bytes = b"\x00" * 6
    level: int = 0


@dataclass
class Sps:
    ptl: ProfileTierLevel
    width: int
    height: int
    chroma_format: int = 1
    bit_depth_luma: int = 8
    bit_depth_chroma: int = 8
    max_sub_layers: int = 1
    temporal_id_nesting: bool = True

    @property
    def profile(self) -> int:
        return self.ptl.profile

    @property
    def level(self) -> int:
        return self.ptl.level


def _parse_ptl(br: BitReader, max_sub_layers_minus1: int) -> ProfileTierLevel:
    ptl = ProfileTierLevel(br.read(2), br.read(1), br.read(5), br.read(32))
    ptl.constraints = br.read(48).to_bytes(6, "big")
    ptl.level = br.read(8)
    present = [(br.flag(), br.flag()) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1:
        br.skip(2 * (8 - max_sub_layers_minus1))
    for profile_present, level_present in present:
        br.skip((88 if profile_present else 0) + (8 if level_present else 0))
    return ptl


def parse_sps(nal: bytes | memoryview) -> Sps:
    """Parse an HEVC SPS NAL unit (with its 2-byte header)."""
    rbsp = unescape_rbsp(nal)
    if len(rbsp) < 3 or nal_type(rbsp) != NAL_SPS:
        raise FormatError(f"not an HEVC SPS (NAL header {rbsp[:2].hex() or 'missing'})")
    br = BitReader(rbsp[2:], "HEVC SPS")
    br.skip(4)  # sps_video_parameter_set_id
    sub_minus1 = br.read(3)
    nesting = br.flag()
    ptl = _parse_ptl(br, sub_minus1)
    br.ue()  # sps_seq_parameter_set_id
    chroma = br.ue()
    if chroma > 3:
        raise FormatError(f"HEVC SPS: chroma_format_idc {chroma} out of range")
    separate = br.flag() if chroma == 3 else False
    width, height = br.ue(), br.ue()
    if br.flag():  # conformance window, in chroma units
        sub_w = 2 if chroma in (1, 2) and not separate else 1
        sub_h = 2 if chroma == 1 and not separate else 1
        left, right, top, bottom = br.ue(), br.ue(), br.ue(), br.ue()
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    if width <= 0 or height <= 0 or width > 65535 or height > 65535:
        raise FormatError(f"HEVC SPS: picture size {width}x{height} is invalid")
    depth_l, depth_c = br.ue() + 8, br.ue() + 8
    return Sps(ptl, width, height, chroma, depth_l, depth_c, sub_minus1 + 1, nesting)


@dataclass
class HevcConfig:
    ptl: ProfileTierLevel
    nal_length_size: int
    chroma_format: int = 1
    bit_depth_luma: int = 8
    bit_depth_chroma: int = 8
    arrays: dict[int, list[bytes]] = field(default_factory=dict)  # NAL type -> units

    @property
    def vps(self) -> list[bytes]:
        return self.arrays.get(NAL_VPS, [])

    @property
    def sps(self) -> list[bytes]:
        return self.arrays.get(NAL_SPS, [])

    @property
    def pps(self) -> list[bytes]:
        return self.arrays.get(NAL_PPS, [])


def build_hvcc(
    vps_list: list[bytes],
    sps_list: list[bytes],
    pps_list: list[bytes],
    sei_list: list[bytes] | None = None,
) -> bytes:
    """HEVCDecoderConfigurationRecord with 4-byte NAL lengths from raw parameter sets."""
    if not vps_list or not sps_list or not pps_list:
        raise FormatError("hvcC needs a VPS, an SPS and a PPS")
    sps = parse_sps(sps_list[0])
    ptl = sps.ptl
    out = bytearray((1, (ptl.profile_space << 6) | (ptl.tier << 5) | ptl.profile))
    out += ptl.compat_flags.to_bytes(4, "big") + ptl.constraints
    out += bytes((ptl.level, 0xF0, 0x00, 0xFC, 0xFC | sps.chroma_format))
    out += bytes((0xF8 | (sps.bit_depth_luma - 8), 0xF8 | (sps.bit_depth_chroma - 8), 0, 0))
    out.append((sps.max_sub_layers << 3) | (int(sps.temporal_id_nesting) << 2) | 3)
    arrays = [(NAL_VPS, vps_list), (NAL_SPS, sps_list), (NAL_PPS, pps_list)]
    if sei_list:
        arrays.append((NAL_PREFIX_SEI, sei_list))
    out.append(len(arrays))
    for kind, units in arrays:
        out.append(0x80 | kind)  # array_completeness: parameter sets only live here
        out += _U16.pack(len(units))
        for unit in units:
            out += _U16.pack(len(unit)) + unit
    return bytes(out)


def parse_hvcc(init: bytes | memoryview) -> HevcConfig:
    data = bytes(init)
    if len(data) < 23:
        raise Truncated(f"hvcC of {len(data)} bytes is shorter than its 23-byte header")
    if data[0] != 1:
        raise FormatError(f"hvcC version {data[0]}, expected 1")
    ptl = ProfileTierLevel(data[1] >> 6, (data[1] >> 5) & 1, data[1] & 0x1F)
    ptl.compat_flags = int.from_bytes(data[2:6], "big")
    ptl.constraints = data[6:12]
    ptl.level = data[12]
    cfg = HevcConfig(ptl, (data[21] & 3) + 1, data[16] & 3, (data[17] & 7) + 8, (data[18] & 7) + 8)
    pos = 23
    for _ in range(data[22]):
        if pos + 3 > len(data):
            raise Truncated(f"hvcC array header truncated at byte {pos}")
        kind = data[pos] & 0x3F
        (count,) = _U16.unpack_from(data, pos + 1)
        pos += 3
        units = cfg.arrays.setdefault(kind, [])
        for _ in range(count):
            if pos + 2 > len(data):
                raise Truncated(f"hvcC NAL length truncated at byte {pos}")
            (size,) = _U16.unpack_from(data, pos)
            pos += 2
            if pos + size > len(data):
                raise Truncated(f"hvcC NAL unit of {size} bytes at byte {pos} overruns the record")
            units.append(data[pos : pos + size])
            pos += size
    return cfg


def codec_string(init: bytes | memoryview) -> str:
    """RFC 6381 / ISO 14496-15 codec string, e.g. ``hvc1.1.6.L93.B0``."""
    ptl = parse_hvcc(init).ptl
    space = "" if ptl.profile_space == 0 else "ABC"[ptl.profile_space - 1]
    compat = int(f"{ptl.compat_flags:032b}"[::-1], 2)  # the string carries the bits reversed
    tier = "H" if ptl.tier else "L"
    cons = ptl.constraints.rstrip(b"\x00")
    parts = ["hvc1", f"{space}{ptl.profile}", f"{compat:x}", f"{tier}{ptl.level}"]
    parts += [f"{b:X}" for b in cons]
    return ".".join(parts)
