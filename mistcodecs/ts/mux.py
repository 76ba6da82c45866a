"""Sans-IO MPEG-TS muxer: the media model in, 188-byte packets out.

One muxer per live stream produces bytes that every viewer shares. PIDs are 0x100 +
track index and the PMT lives on 0x1000 (as ffmpeg does), so players that expect
those conventions work. Video goes out as Annex B with an access unit delimiter and
the parameter sets in front of each keyframe; AAC gets ADTS headers. The PCR rides
on the video PID (or the first track) in the adaptation field of each PES start.
Continuity counters run on across :meth:`TsMuxer.segment_start` calls, so HLS
segments cut from one muxer play back to back without CC errors.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from mistcodecs import aac, h264, hevc
from mistcodecs.errors import FormatError
from mistcodecs.ts.audio import opus_control_header
from mistcodecs.ts.packets import PACKET_SIZE, PID_PAT, SYNC, AdaptationField, build_packet
from mistcodecs.ts.pes import STREAM_ID_AUDIO, STREAM_ID_PRIVATE1, STREAM_ID_VIDEO, build_pes_header
from mistcodecs.ts.psi import (
    CODEC_STREAM_TYPES,
    DESC_EXTENSION,
    DESC_LANGUAGE,
    DESC_REGISTRATION,
    Pat,
    Pmt,
    PmtStream,
)
from shm.model import Packet, TrackMeta

PMT_PID = 0x1000
FIRST_PID = 0x100
START_90K = 126_000  # 1.4 s: keeps PTS positive and leaves room for the PCR lead
PCR_LEAD_90K = 63_000  # the PCR runs 0.7 s ahead of decode time (decoder buffer)
_HEAD = struct.Struct(">BHB")


class _Out:
    __slots__ = ("cc", "init_annexb", "meta", "pid", "stream_id")

    def __init__(self, meta: TrackMeta, pid: int, stream_id: int) -> None:
        self.meta = meta
        self.pid = pid
        self.stream_id = stream_id
        self.cc = 0
        self.init_annexb = b""


class TsMuxer:
    """Mux tracks of the media model into a transport stream (see module docstring)."""

    def __init__(
        self,
        tracks: Sequence[TrackMeta],
        *,
        pcr_pid: int | None = None,
        psi_on_keyframes: bool = True,
    ) -> None:
        self._outs: dict[int, _Out] = {}
        streams: list[PmtStream] = []
        for index, meta in enumerate(tracks):
            kind = CODEC_STREAM_TYPES.get(meta.codec)
            if kind is None:
                continue  # codecs TS cannot carry are left out
            pid = FIRST_PID + index
            sid = STREAM_ID_VIDEO if meta.type == "video" else STREAM_ID_AUDIO
            desc = b""
            if meta.codec in ("AC3", "EAC3"):
                sid = STREAM_ID_PRIVATE1
            if meta.codec == "opus":
                if not 0 < meta.channels <= 2:
                    raise FormatError(
                        f"Opus with {meta.channels} channels is not supported in MPEG-TS"
                    )
                sid = STREAM_ID_PRIVATE1
                desc += (
                    bytes((DESC_REGISTRATION, 4))
                    + b"Opus"
                    + bytes((DESC_EXTENSION, 2, 0x80, meta.channels))
                )
            if meta.lang and len(meta.lang) == 3:
                desc += bytes((DESC_LANGUAGE, 4)) + meta.lang.encode("latin-1") + b"\x00"
            if meta.codec == "AC3":
                desc += bytes((DESC_REGISTRATION, 4)) + b"AC-3"
            if meta.codec == "EAC3":
                desc += bytes((DESC_REGISTRATION, 4)) + b"EAC3"
            out = _Out(meta, pid, sid)
            out.init_annexb = self._param_sets(meta)
            self._outs[meta.id] = out
            streams.append(PmtStream(kind, pid, desc))
        if not self._outs:
            raise FormatError("no track can be carried in MPEG-TS")
        video = [o.pid for o in self._outs.values() if o.meta.type == "video"]
        self.pcr_pid = pcr_pid if pcr_pid is not None else (video[0] if video else streams[0].pid)
        self._pat = bytes(Pat(1, {1: PMT_PID}))
        self._pmt = bytes(Pmt(1, self.pcr_pid, streams))
        self._psi_cc = {PID_PAT: 0, PMT_PID: 0}
        self.psi_on_keyframes = psi_on_keyframes
        self._psi_fresh = False  # PSI was just written by segment_start()

    @staticmethod
    def _param_sets(meta: TrackMeta) -> bytes:
        if not meta.init:
            return b""
        if meta.codec == "H264":
            cfg = h264.parse_avcc(meta.init)
            units = cfg.sps + cfg.pps
        elif meta.codec == "HEVC":
            hcfg = hevc.parse_hvcc(meta.init)
            units = hcfg.vps + hcfg.sps + hcfg.pps
        else:
            return b""
        return b"".join(h264.START_CODE + u for u in units)

    def _psi_packet(self, pid: int, section: bytes, advance: bool) -> bytes:
        cc = self._psi_cc[pid]
        if advance:
            self._psi_cc[pid] = (cc + 1) & 0xF
        else:
            cc = (cc - 1) & 0xF  # a repeat of the last PSI packet: a legal duplicate
        return build_packet(pid, b"\x00" + section + b"\xff" * (183 - len(section)), cc, pusi=True)

    def header(self) -> bytes:
        """PAT and PMT: what a reader needs before any media. It changes no state, so a
        live stream can hand it to each viewer that joins while all share the packets."""
        return self._psi_packet(PID_PAT, self._pat, False) + self._psi_packet(
            PMT_PID, self._pmt, False
        )

    def segment_start(self) -> bytes:
        """PAT and PMT at the start of an HLS segment; counters keep counting, and the
        next keyframe does not repeat them."""
        self._psi_fresh = True
        return self._psi_packet(PID_PAT, self._pat, True) + self._psi_packet(
            PMT_PID, self._pmt, True
        )

    def end(self) -> bytes:
        return b""

    def packet(self, p: Packet) -> bytes:
        out = self._outs.get(p.track)
        if out is None:
            return b""
        meta = out.meta
        data = p.data
        if meta.codec in ("H264", "HEVC"):
            body = self._video_payload(out, data, p.keyframe)
        elif meta.codec == "AAC":
            body = aac.adts_header(meta.init, len(data)) + bytes(data) if meta.init else bytes(data)
        elif meta.codec == "opus":
            body = opus_control_header(len(data)) + bytes(data)
        else:
            body = bytes(data)
        dts = p.dts * 90 + START_90K
        pts = p.pts * 90 + START_90K
        is_video = meta.type == "video"
        pes = (
            build_pes_header(
                out.stream_id, len(body), pts, dts if is_video else None, bounded=not is_video
            )
            + body
        )
        prefix = b""
        if (
            self.psi_on_keyframes
            and is_video
            and p.keyframe
            and out.pid == self.pcr_pid
            and not self._psi_fresh
        ):
            prefix = self._psi_packet(PID_PAT, self._pat, True) + self._psi_packet(
                PMT_PID, self._pmt, True
            )
        self._psi_fresh = False
        pcr = (dts - PCR_LEAD_90K) * 300 if out.pid == self.pcr_pid else None
        return prefix + self._packetize(out, pes, pcr, is_video and p.keyframe)

    @staticmethod
    def _video_payload(out: _Out, data: bytes | memoryview, keyframe: bool) -> bytes:
        is_hevc = out.meta.codec == "HEVC"
        parts = [hevc.AUD_ANNEXB if is_hevc else h264.AUD_ANNEXB]
        nals = h264.iter_avcc(data)
        if keyframe and out.init_annexb:
            ps_types = (
                (hevc.NAL_VPS, hevc.NAL_SPS, hevc.NAL_PPS)
                if is_hevc
                else (h264.NAL_SPS, h264.NAL_PPS)
            )
            has_ps = any(
                len(n) and (hevc.nal_type(n) if is_hevc else n[0] & 0x1F) in ps_types for n in nals
            )
            if not has_ps:
                parts.append(out.init_annexb)
        aud = hevc.NAL_AUD if is_hevc else h264.NAL_AUD
        for nal in nals:
            if len(nal) and (hevc.nal_type(nal) if is_hevc else nal[0] & 0x1F) == aud:
                continue
            parts.append(h264.START_CODE)
            parts.append(bytes(nal))
        return b"".join(parts)

    def _packetize(self, out: _Out, pes: bytes, pcr: int | None, random_access: bool) -> bytes:
        buf = bytearray()
        view = memoryview(pes)
        pid = out.pid
        cc = out.cc
        pos = 0
        total = len(pes)
        first = True
        while pos < total or first:
            af: AdaptationField | None = None
            if first and (pcr is not None or random_access):
                af = AdaptationField(
                    random_access=random_access, pcr=pcr if pcr is None else max(pcr, 0)
                )
            left = total - pos
            if af is None and left >= 184:  # the common case: a full packet, no adaptation
                buf += _HEAD.pack(SYNC, (first << 14) | pid, 0x10 | cc)
                buf += view[pos : pos + 184]
                pos += 184
            else:
                room = PACKET_SIZE - 4 - (len(bytes(af)) + 1 if af is not None else 0)
                take = min(room, left)
                buf += build_packet(pid, view[pos : pos + take], cc, pusi=first, adaptation=af)
                pos += take
            cc = (cc + 1) & 0xF
            first = False
        out.cc = cc
        return bytes(buf)
