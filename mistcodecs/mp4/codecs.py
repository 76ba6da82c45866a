"""RFC 6381 codec strings for MP4/CMAF tracks (DASH ``codecs=``, HLS ``CODECS=``).

H.264, HEVC and AAC strings come from their own modules; the ISO-BMFF-specific ones
(AV1 from av1C, VP9 from vpcC, and the fixed sample-entry names) are made here.
"""

from __future__ import annotations

from mistcodecs import aac, h264, hevc
from mistcodecs.errors import FormatError
from shm.model import TrackMeta

FIXED = {
    "VP8": "vp8",
    "opus": "Opus",
    "MP3": "mp4a.6B",
    "AC3": "ac-3",
    "EAC3": "ec-3",
    "FLAC": "fLaC",
}


def av1_codec_string(av1c: bytes) -> str:
    """``av01.P.LLT.DD`` from an AV1CodecConfigurationRecord."""
    if len(av1c) < 3 or not av1c[0] & 0x80:
        raise FormatError("av1C too short or without its marker bit")
    profile, level, tier = av1c[1] >> 5, av1c[1] & 0x1F, av1c[2] >> 7
    high, twelve = (av1c[2] >> 6) & 1, (av1c[2] >> 5) & 1
    depth = 12 if high and twelve and profile == 2 else 10 if high else 8
    return f"av01.{profile}.{level:02d}{'H' if tier else 'M'}.{depth:02d}"


def vp9_codec_string(vpcc: bytes) -> str:
    """``vp09.PP.LL.DD`` from a vpcC body (with its version/flags word)."""
    if len(vpcc) < 7:
        return "vp09.00.10.08"
    return f"vp09.{vpcc[4]:02d}.{vpcc[5]:02d}.{vpcc[6] >> 4:02d}"


def codec_string(track: TrackMeta) -> str:
    """The codecs-parameter value for a track as our muxers write it."""
    init = bytes(track.init)
    if track.codec == "H264":
        return h264.codec_string(init)
    if track.codec == "HEVC":
        return hevc.codec_string(init)
    if track.codec == "AAC":
        return aac.codec_string(init) if init else "mp4a.40.2"
    if track.codec == "AV1":
        return av1_codec_string(init)
    if track.codec == "VP9":
        return vp9_codec_string(init)
    if track.codec in FIXED:
        return FIXED[track.codec]
    raise FormatError(f"no MP4 codec string for {track.codec}")
