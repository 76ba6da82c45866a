"""Sans-IO MPEG-TS demuxer: bytes in, :class:`TrackMeta` and :class:`Packet` out.

Theory of operation: a :class:`PacketSplitter` cuts the input into 188-byte packets
(resyncing on junk). PID 0 and the PMT PIDs go through section assemblers; each
elementary PID collects its PES packet until the length is met or the next unit
starts. A finished PES is turned into frames per codec: H.264/HEVC Annex B becomes
AVCC with avcC/hvcC built from in-band parameter sets; ADTS, MPEG audio and AC-3 are
split into frames, each timed from the PES PTS plus the samples before it.

All 33-bit timestamps pass through one unwrapper (so a wrap in the middle of a
stream is invisible) and are made relative to the first DTS seen: milliseconds from
``origin`` (90 kHz ticks, settable to keep several files on one time line).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mistcodecs import aac, h264, hevc
from mistcodecs.errors import FormatError
from mistcodecs.ts.audio import FrameSplitter, opus_head, opus_packet_samples, split_opus_pes
from mistcodecs.ts.packets import PID_NULL, PID_PAT, PacketSplitter, TsPacket
from mistcodecs.ts.pes import PesHeader, Unwrapper
from mistcodecs.ts.psi import (
    TABLE_PAT,
    TABLE_PMT,
    Pat,
    Pmt,
    PmtStream,
    SectionAssembler,
    parse_descriptors,
    private_codec,
)
from shm.model import Packet, TrackMeta

SUPPORTED = frozenset({"H264", "HEVC", "AAC", "MP3", "AC3", "EAC3", "opus"})
STREAM_TYPE_PRIVATE = 0x06  # PES private data: the codec comes from descriptors or the data
PROBE = "?"  # codec of a private-data stream not identified yet
MAX_PES = 8 * 1024 * 1024  # a PES larger than this is garbage, not a frame
Event = TrackMeta | Packet


@dataclass
class _Stream:
    pid: int
    info: PmtStream
    codec: str
    track: int
    last_cc: int = -1
    pes: bytearray = field(default_factory=bytearray)
    pes_pos: int = -1
    pes_len: int = 0  # expected total bytes (6 + PES_packet_length), 0 = unbounded
    meta: TrackMeta | None = None
    params: dict[int, list[bytes]] = field(default_factory=dict)  # NAL type -> param sets
    adts: aac.AdtsSplitter | None = None
    frames: FrameSplitter | None = None
    anchor: int | None = None  # 90 kHz time of the first audio frame of the current run
    samples: int = 0  # samples since the anchor
    last_dts: int | None = None
    packets: int = 0
    frames_out: int = 0


class TsDemuxer:
    """Feed any chunking of a transport stream; see the module docstring."""

    def __init__(self, *, origin: int | None = None) -> None:
        self.splitter = PacketSplitter()
        self.origin = origin
        self.pat: Pat | None = None
        self.pmts: dict[int, Pmt] = {}
        self.problems: list[str] = []
        self.cc_errors = 0
        self.dropped = 0  # frames dropped because their codec config was not known yet
        self.positions: list[
            int
        ] = []  # byte position of each event of the last call (-1: TrackMeta)
        self._psi: dict[int, SectionAssembler] = {PID_PAT: SectionAssembler()}
        self._streams: dict[int, _Stream] = {}
        self._next_track = 1
        self._unwrap = Unwrapper()
        self._out: list[Event] = []

    @property
    def tracks(self) -> list[TrackMeta]:
        return [s.meta for s in sorted(self._streams.values(), key=lambda s: s.track) if s.meta]

    def track_pids(self) -> dict[int, int]:
        """Track id -> PID."""
        return {s.track: s.pid for s in self._streams.values() if s.codec != PROBE}

    def feed(self, data: bytes | memoryview) -> list[Event]:
        self._out, self.positions = [], []
        for pos, raw in self.splitter.feed(data):
            self._packet(pos, raw)
        self._sync_problems()
        return self._out

    def end(self) -> list[Event]:
        self._out, self.positions = [], []
        tail, left = self.splitter.end()
        for pos, raw in tail:
            self._packet(pos, raw)
        if left:
            self._problem(f"stream ends with a truncated packet ({left} of 188 bytes)")
        for stream in sorted(self._streams.values(), key=lambda s: s.pid):
            self._flush(stream)
        self._sync_problems()
        return self._out

    def seek(self, position: int) -> None:
        """Restart at a byte position (a packet boundary) keeping tracks and time line:
        how a VoD input reloads a range it indexed before."""
        self.splitter.seek(position)
        for s in self._streams.values():
            s.pes.clear()
            s.pes_pos = -1
            s.last_cc = -1
            s.anchor = None
            if s.adts:
                s.adts.reset()
            if s.frames:
                s.frames.reset()

    # -- packets ---------------------------------------------------------------
    def _sync_problems(self) -> None:
        while len(self.problems) < 1000 and self.splitter.problems:
            self.problems.append(self.splitter.problems.pop(0))

    def _problem(self, text: str) -> None:
        if len(self.problems) < 1000:
            self.problems.append(text)

    def _packet(self, pos: int, raw: bytes) -> None:
        try:
            pkt = TsPacket.parse(raw, pos)
        except FormatError as exc:
            self._problem(str(exc))
            return
        pid = pkt.pid
        if pid == PID_NULL or pkt.error or pkt.scrambling:
            return
        asm = self._psi.get(pid)
        if asm is not None:
            for sec in asm.feed(pkt.payload, pkt.pusi):
                self._section(pid, sec, pos)
            return
        stream = self._streams.get(pid)
        if stream is None:
            return
        stream.packets += 1
        if pkt.has_payload:
            if stream.last_cc >= 0 and pkt.cc != (stream.last_cc + 1) & 0xF:
                if pkt.cc == stream.last_cc:
                    return  # a duplicate packet: allowed once, carries nothing new
                if not (pkt.adaptation and pkt.adaptation.discontinuity):
                    self.cc_errors += 1
                    self._problem(
                        f"PID {pid}: continuity counter {pkt.cc} after {stream.last_cc} at byte {pos}"
                    )
            stream.last_cc = pkt.cc
        if not pkt.payload:
            return
        if pkt.pusi:
            self._flush(stream)
            stream.pes_pos = pos
            stream.pes += pkt.payload
            if len(stream.pes) >= 6:
                length = (stream.pes[4] << 8) | stream.pes[5]
                stream.pes_len = 6 + length if length else 0
        elif stream.pes_pos < 0:
            return  # joined mid-PES: wait for the next start
        else:
            stream.pes += pkt.payload
            if len(stream.pes) > MAX_PES:
                self._problem(
                    f"PID {pid}: PES at byte {stream.pes_pos} exceeds {MAX_PES} bytes, dropped"
                )
                stream.pes.clear()
                stream.pes_pos = -1
                return
        if stream.pes_len and len(stream.pes) >= stream.pes_len:
            self._flush(stream)

    def _section(self, pid: int, sec: bytes, pos: int) -> None:
        try:
            if pid == PID_PAT and sec[0] == TABLE_PAT:
                self.pat = Pat.parse(sec)
                for pmt_pid in self.pat.programs.values():
                    self._psi.setdefault(pmt_pid, SectionAssembler())
            elif sec[0] == TABLE_PMT:
                pmt = Pmt.parse(sec)
                if self.pmts.get(pid) != pmt:
                    self.pmts[pid] = pmt
                    self._add_streams(pmt)
        except FormatError as exc:
            self._problem(f"PSI on PID {pid} at byte {pos}: {exc}")

    def _add_streams(self, pmt: Pmt) -> None:
        for info in sorted(pmt.streams, key=lambda s: s.pid):
            if info.pid in self._streams or info.pid in self._psi:
                continue
            codec = info.codec
            if not codec and info.stream_type == STREAM_TYPE_PRIVATE:
                codec = private_codec(parse_descriptors(pmt.descriptors))  # program-level
            if codec in SUPPORTED:
                self._streams[info.pid] = _Stream(info.pid, info, codec, self._next_track)
                self._next_track += 1
            elif info.stream_type == STREAM_TYPE_PRIVATE and not codec:
                # nothing names it (FFmpeg's m2ts mode writes AAC like this): the
                # first PES decides; the track number is given once it is known
                self._streams[info.pid] = _Stream(info.pid, info, PROBE, 0)

    # -- PES -------------------------------------------------------------------
    def _flush(self, stream: _Stream) -> None:
        if stream.pes_pos < 0 or not stream.pes:
            stream.pes.clear()
            stream.pes_pos = -1
            return
        data = bytes(stream.pes)
        pos = stream.pes_pos
        stream.pes.clear()
        stream.pes_pos = -1
        try:
            hdr = PesHeader.parse(data, f"PES on PID {stream.pid} at byte {pos}")
            if hdr.header_size > len(data):
                raise FormatError(f"PES on PID {stream.pid} at byte {pos}: header overruns data")
        except FormatError as exc:
            self._problem(str(exc))
            return
        end = 6 + hdr.length if hdr.length else len(data)
        if end > len(data):
            self._problem(
                f"PID {stream.pid}: PES at byte {pos} truncated ({len(data)} of {end} bytes)"
            )
        payload = data[hdr.header_size : end]
        dts = self._time(hdr.dts if hdr.dts is not None else hdr.pts)  # origin = first DTS
        pts = self._time(hdr.pts) if hdr.dts is not None else dts
        if stream.codec == PROBE and not self._probe(stream, payload, pos):
            return
        try:
            if stream.codec in ("H264", "HEVC"):
                self._video(stream, payload, pts, dts, pos)
            elif stream.codec == "AAC":
                self._aac(stream, payload, pts, pos)
            elif stream.codec == "opus":
                self._opus(stream, payload, pts, pos)
            else:
                self._framed_audio(stream, payload, pts, pos)
        except FormatError as exc:
            self._problem(f"PID {stream.pid}: PES at byte {pos}: {exc}")

    def _probe(self, stream: _Stream, payload: bytes, pos: int) -> bool:
        """Identify a private-data stream by its first PES: AAC if it opens with two
        consecutive ADTS headers (or one that fills the PES). Anything else is not
        media we carry (subtitles, teletext, SCTE data) and the PID is dropped."""
        try:
            first = aac.parse_adts_header(payload)
            if first.frame_size != len(payload):
                aac.parse_adts_header(payload, first.frame_size)
        except FormatError:
            del self._streams[stream.pid]
            return False
        stream.codec = "AAC"
        stream.track = self._next_track
        self._next_track += 1
        return True

    def _time(self, value: int | None) -> int | None:
        if value is None:
            return None
        t = self._unwrap(value)
        if self.origin is None:
            self.origin = t
        return t

    def _ms(self, t90: int) -> int:
        return (t90 - (self.origin or 0)) // 90

    def _emit(self, stream: _Stream, pkt: Packet, pos: int) -> None:
        self._out.append(pkt)
        self.positions.append(pos)
        stream.frames_out += 1

    def _announce(self, stream: _Stream, meta: TrackMeta) -> None:
        if stream.meta is None or stream.meta != meta:
            stream.meta = meta
            self._out.append(meta)
            self.positions.append(-1)

    # -- codecs ----------------------------------------------------------------
    def _video(
        self, stream: _Stream, payload: bytes, pts: int | None, dts: int | None, pos: int
    ) -> None:
        is_hevc = stream.codec == "HEVC"
        keep: list[bytes] = []
        key = False
        fresh: dict[int, list[bytes]] = {}
        for nal in h264.split_annexb(payload):
            if is_hevc:
                kind = hevc.nal_type(nal)
                if kind in (hevc.NAL_VPS, hevc.NAL_SPS, hevc.NAL_PPS):
                    fresh.setdefault(kind, []).append(nal)
                    continue
                if kind == hevc.NAL_AUD:
                    continue
                key = key or hevc.is_irap(kind)
            else:
                kind = nal[0] & 0x1F
                if kind in (h264.NAL_SPS, h264.NAL_PPS):
                    fresh.setdefault(kind, []).append(nal)
                    continue
                if kind == h264.NAL_AUD:
                    continue
                key = key or kind == h264.NAL_IDR
            keep.append(nal)
        if fresh:
            self._video_config(stream, fresh)
        if dts is None:
            if stream.last_dts is None:
                self._problem(f"PID {stream.pid}: video PES at byte {pos} has no timestamp")
                return
            dts = stream.last_dts
        if pts is None:
            pts = dts
        if not keep:
            return
        if stream.meta is None:
            self.dropped += 1
            return
        stream.last_dts = dts
        dts_ms = self._ms(dts)
        self._emit(
            stream,
            Packet(stream.track, dts_ms, self._ms(pts) - dts_ms, key, h264.nals_to_avcc(keep)),
            pos,
        )

    def _video_config(self, stream: _Stream, fresh: dict[int, list[bytes]]) -> None:
        params = dict(stream.params)
        params.update(fresh)
        if params == stream.params and stream.meta is not None:
            return
        stream.params = params
        if stream.codec == "HEVC":
            vps, sps, pps = (params.get(k, []) for k in (hevc.NAL_VPS, hevc.NAL_SPS, hevc.NAL_PPS))
            if not (vps and sps and pps):
                return
            init = hevc.build_hvcc(vps, sps, pps)
            info = hevc.parse_sps(sps[0])
            fps = 0.0
        else:
            sps, pps = params.get(h264.NAL_SPS, []), params.get(h264.NAL_PPS, [])
            if not (sps and pps):
                return
            init = h264.build_avcc(sps, pps)
            avc = h264.parse_sps(sps[0])
            info, fps = avc, avc.fps  # type: ignore[assignment]
        meta = TrackMeta(
            stream.track, "video", stream.codec, init, info.width, info.height, round(fps * 1000)
        )
        meta.lang = stream.info.lang
        self._announce(stream, meta)

    def _audio_time(self, stream: _Stream, pts: int | None, continuing: bool) -> None:
        if pts is not None and not continuing:
            stream.anchor, stream.samples = pts, 0

    def _aac(self, stream: _Stream, payload: bytes, pts: int | None, pos: int) -> None:
        if stream.adts is None:
            stream.adts = aac.AdtsSplitter()
        self._audio_time(stream, pts, stream.adts.pending > 0)
        skipped = stream.adts.skipped
        for frame in stream.adts.feed(payload):
            meta = TrackMeta(
                stream.track,
                "audio",
                "AAC",
                frame.asc(),
                rate=frame.rate,
                channels=frame.channel_config,
                size=16,
            )
            meta.lang = stream.info.lang
            self._announce(stream, meta)
            self._audio_frame(stream, frame.payload, frame.samples, frame.rate, pos)
        if stream.adts.skipped != skipped:
            self._problem(
                f"PID {stream.pid}: {stream.adts.skipped - skipped} junk bytes in ADTS at byte {pos}"
            )

    def _opus(self, stream: _Stream, payload: bytes, pts: int | None, pos: int) -> None:
        self._audio_time(stream, pts, False)
        for unit in split_opus_pes(payload):
            if stream.meta is None:
                channels = stream.info.opus_channels
                meta = TrackMeta(
                    stream.track,
                    "audio",
                    "opus",
                    opus_head(channels, unit.start_trim),
                    rate=48000,
                    channels=channels,
                    size=16,
                )
                meta.lang = stream.info.lang
                self._announce(stream, meta)
            self._audio_frame(stream, unit.data, opus_packet_samples(unit.data), 48000, pos)

    def _framed_audio(self, stream: _Stream, payload: bytes, pts: int | None, pos: int) -> None:
        if stream.frames is None:
            stream.frames = FrameSplitter(stream.codec)
        self._audio_time(stream, pts, bool(stream.frames._buf))
        for info, frame in stream.frames.feed(payload):
            meta = TrackMeta(
                stream.track,
                "audio",
                stream.codec,
                b"",
                rate=info.rate,
                channels=info.channels,
                size=16,
            )
            meta.lang = stream.info.lang
            self._announce(stream, meta)
            self._audio_frame(stream, frame, info.samples, info.rate, pos)

    def _audio_frame(self, stream: _Stream, data: bytes, samples: int, rate: int, pos: int) -> None:
        if stream.anchor is None:
            self.dropped += 1
            return
        t = stream.anchor + stream.samples * 90000 // rate
        stream.samples += samples
        self._emit(stream, Packet(stream.track, self._ms(t), 0, True, data), pos)
