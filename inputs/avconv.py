"""FFmpeg (PyAV) packets to the media model's codec names, init data and payloads.

:func:`converter_for` looks at a PyAV stream once and returns a :class:`Converter`
whose ``payload`` is a pure function of the packet bytes -- the same packet always
gives the same bytes, which is what lets MistInAV re-read a page later and trust the
sizes it indexed. H.264/HEVC in Annex B become AVCC with parameter sets moved into
an avcC/hvcC; ADTS AAC loses its headers; little-endian or unsigned PCM becomes
big-endian signed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mistcodecs import aac, h264, hevc
from mistcodecs.errors import FormatError
from mistcodecs.mp4.text import subtitle_payload, tx3g_to_subtitle
from mistcodecs.wav import swap_endian
from shm.model import TrackMeta

SIMPLE = {
    "vp8": ("video", "VP8"),
    "vp9": ("video", "VP9"),
    "av1": ("video", "AV1"),
    "mpeg2video": ("video", "MPEG2"),
    "mjpeg": ("video", "JPEG"),
    "mp3": ("audio", "MP3"),
    "mp3float": ("audio", "MP3"),
    "opus": ("audio", "opus"),
    "vorbis": ("audio", "vorbis"),
    "ac3": ("audio", "AC3"),
    "eac3": ("audio", "EAC3"),
    "flac": ("audio", "FLAC"),
    "pcm_alaw": ("audio", "ALAW"),
    "pcm_mulaw": ("audio", "ULAW"),
}
# name -> (bits, bytes swapped per sample (0: none), xor 0x80 for unsigned 8-bit)
PCM = {
    "pcm_s16be": (16, 0, False),
    "pcm_s24be": (24, 0, False),
    "pcm_s32be": (32, 0, False),
    "pcm_s8": (8, 0, False),
    "pcm_s16le": (16, 2, False),
    "pcm_s24le": (24, 3, False),
    "pcm_s32le": (32, 4, False),
    "pcm_u8": (8, 0, True),
}
TEXT_SUBTITLES = frozenset({"subrip", "srt", "webvtt", "text", "mov_text"})
H264_PARAMS = {h264.NAL_SPS, h264.NAL_PPS}
HEVC_PARAMS = {hevc.NAL_VPS, hevc.NAL_SPS, hevc.NAL_PPS}


@dataclass
class Converter:
    """How one stream's packets become model payloads (see module docstring)."""

    kind: str
    codec: str
    init: bytes = b""
    mode: str = "copy"  # copy, annexb, relength, adts, pcm, subtitle, tx3g
    nal_length: int = 4
    pcm: tuple[int, int, bool] = (16, 0, False)
    params: dict[int, list[bytes]] = field(default_factory=dict)

    def payload(self, data: bytes, duration_ms: int = 0) -> bytes:
        """The model payload of one packet (``duration_ms`` matters for subtitles only)."""
        if self.mode == "copy":
            return data
        if self.mode == "tx3g":  # MP4 timed text: 16-bit length, text, style boxes
            return tx3g_to_subtitle(data, duration_ms)
        if self.mode == "subtitle":
            return subtitle_payload(duration_ms, data)
        if self.mode == "annexb":
            return h264.nals_to_avcc([n for n in h264.split_annexb(data) if self._keep(n)])
        if self.mode == "relength":
            nals = [bytes(n) for n in h264.iter_avcc(data, self.nal_length)]
            return h264.nals_to_avcc(nals)
        if self.mode == "adts":
            if len(data) >= 7 and data[0] == 0xFF and data[1] & 0xF0 == 0xF0:
                frame = aac.parse_adts_header(data)
                return data[frame.header_size : frame.frame_size]
            return data
        return _pcm(data, *self.pcm)

    def _keep(self, nal: bytes) -> bool:
        """Parameter sets go to the init (remembered here); AUDs are dropped."""
        if self.codec == "HEVC":
            kind, params, aud = hevc.nal_type(nal), HEVC_PARAMS, hevc.NAL_AUD
        else:
            kind, params, aud = nal[0] & 0x1F, H264_PARAMS, h264.NAL_AUD
        if kind in params:
            known = self.params.setdefault(kind, [])
            if nal not in known:
                known.append(nal)
            return False
        return kind != aud

    def learn(self, data: bytes) -> None:
        """Look at a raw packet while indexing (ADTS headers give the AAC config)."""
        if self.mode == "adts" and not self.init and len(data) >= 7 and data[0] == 0xFF:
            try:
                self.init = aac.parse_adts_header(data).asc()
            except FormatError:
                pass

    def finish(self, meta: TrackMeta) -> None:
        """Build the init from parameter sets seen in band, once indexing is done."""
        if self.mode != "annexb" or meta.init:
            return
        p = self.params
        try:
            if self.codec == "H264" and p.get(h264.NAL_SPS) and p.get(h264.NAL_PPS):
                meta.init = h264.build_avcc(p[h264.NAL_SPS], p[h264.NAL_PPS])
            elif self.codec == "HEVC" and all(p.get(k) for k in HEVC_PARAMS):
                meta.init = hevc.build_hvcc(p[hevc.NAL_VPS], p[hevc.NAL_SPS], p[hevc.NAL_PPS])
        except FormatError:
            pass


def _pcm(data: bytes, bits: int, swap: int, unsigned: bool) -> bytes:
    if unsigned:
        return swap_endian(data, 8)  # unsigned 8-bit -> signed
    if swap:
        return swap_endian(data, 8 * swap)
    return data


def converter_for(stream: Any) -> Converter | None:
    """The converter of a PyAV stream, or None when the model has no such codec."""
    ctx = stream.codec_context
    name = ctx.name
    extra = bytes(ctx.extradata or b"")
    if name in ("h264", "hevc"):
        codec = "H264" if name == "h264" else "HEVC"
        conv = Converter("video", codec)
        if extra[:1] == b"\x01" and len(extra) > 6:
            conv.init = extra
            conv.nal_length = (extra[4] if codec == "H264" else extra[21]) % 4 + 1
            conv.mode = "copy" if conv.nal_length == 4 else "relength"
        else:
            conv.mode = "annexb"
            for nal in h264.split_annexb(extra):
                conv._keep(nal)
        return conv
    if stream.type == "subtitle":
        if name not in TEXT_SUBTITLES:
            return None
        conv = Converter("meta", "subtitle", b"", "tx3g" if name == "mov_text" else "subtitle")
        return conv
    if name == "aac":
        return Converter("audio", "AAC", extra, "adts")
    if name in PCM:
        return Converter("audio", "PCM", b"", "pcm", pcm=PCM[name])
    if name in SIMPLE:
        kind, codec = SIMPLE[name]
        init = extra
        if codec == "FLAC" and len(extra) == 34:  # bare STREAMINFO: add marker + block header
            init = b"fLaC\x80\x00\x00\x22" + extra
        elif codec in ("VP8", "VP9", "MP3", "AC3", "EAC3", "ALAW", "ULAW"):
            init = b""
        return Converter(kind, codec, init)
    return None


def track_meta(tid: int, stream: Any, conv: Converter) -> TrackMeta:
    ctx = stream.codec_context
    meta = TrackMeta(tid, conv.kind, conv.codec, conv.init)
    if conv.kind == "meta":
        if ctx.name == "webvtt":
            meta.extra["subtitle_format"] = "webvtt"
    elif conv.kind == "video":
        meta.width, meta.height = int(ctx.width or 0), int(ctx.height or 0)
        rate = stream.average_rate or stream.guessed_rate
        meta.fpks = int(rate * 1000) if rate else 0
    else:
        meta.rate = int(ctx.sample_rate or 0)
        meta.channels = int(getattr(ctx, "channels", 0) or 0)
        meta.size = conv.pcm[0] if conv.mode == "pcm" else 16
    lang = stream.metadata.get("language", "")
    meta.lang = lang if lang != "und" else ""
    return meta
