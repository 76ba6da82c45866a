"""MistAnalyserTS: print and check the packets of an MPEG transport stream.

``-D`` is a bitmask, as MistServer's TS analyser (default 3):

\b
* 1: PES packets (stream id, size, PTS/DTS) and the frames found in them
* 2: packets that carry no stream data (PAT, PMT, other PSI, null packets)
* 4: packets of elementary streams (PID, flags, CC, adaptation field, PCR)
* 32: the first bytes of each PES payload in hex
* 64: every TS packet in hex

0 prints only the PAT/PMT, problems and the timeline. ``-P`` limits printing (and
``-R``) to one PID. ``-R FILE`` (``-`` for stdout) writes the PES payloads of that
PID (an elementary stream), or without ``-P`` every well-formed TS packet (a
cleaned copy of the input).

Problems: lost sync bytes, continuity-counter errors, PCR going backwards, PES
timestamps jumping (more than 5 s) or DTS going backwards, truncated PES packets
or a truncated last packet, PSI sections with bad CRCs, no PAT/PMT at all.
The timeline at the end gives per PID counts and per track frames, keyframes,
duration, bitrate, keyframe interval, PCR jitter and the A/V start difference.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

import click

from analysers.common import Analyser, make_main, output_path
from mistcodecs.errors import FormatError
from mistcodecs.ts import TsDemuxer
from mistcodecs.ts.packets import PCR_HZ, PID_NULL, PID_PAT, PacketSplitter, TsPacket
from mistcodecs.ts.pes import TS_MASK, PesHeader
from mistcodecs.ts.psi import TABLE_PAT, TABLE_PMT, Pat, Pmt, SectionAssembler
from shm.model import Packet, TrackMeta

SHOW_PES = 1
SHOW_PSI = 2
SHOW_STREAM = 4
SHOW_PES_HEX = 32
SHOW_TS_HEX = 64
JUMP_90K = 5 * 90000  # a PES timestamp moving more than this is reported


@dataclass
class _PidStats:
    pid: int
    kind: str = ""
    packets: int = 0
    bytes: int = 0
    cc: int = -1
    cc_errors: int = 0
    pes: int = 0
    adaptation: int = 0
    random_access: int = 0
    discontinuities: int = 0
    pcrs: list[tuple[int, int]] = field(default_factory=list)  # (byte position, PCR)
    last_dts: int | None = None
    pes_buf: bytearray = field(default_factory=bytearray)
    pes_pos: int = -1


@dataclass
class _TrackStats:
    meta: TrackMeta
    frames: int = 0
    bytes: int = 0
    keyframes: list[int] = field(default_factory=list)
    first: int | None = None
    last: int | None = None


class TsAnalyser(Analyser):
    name = "MistAnalyserTS"

    def __init__(
        self,
        detail: int,
        as_json: bool,
        pid: int | None = None,
        raw: str | None = None,
        **options: Any,
    ) -> None:
        if raw == "-" and options.get("out") is None:
            options["out"] = sys.stderr  # stdout carries the raw bytes; text goes aside
        super().__init__(detail, as_json, **options)
        self.pid_filter = pid
        self.raw: IO[bytes] | None = None
        if raw:
            self.raw = sys.stdout.buffer if raw == "-" else open(raw, "wb")  # noqa: SIM115 - closed in finish()
        self.splitter = PacketSplitter()
        self.demuxer = TsDemuxer()
        self.pids: dict[int, _PidStats] = {}
        self.psi: dict[int, SectionAssembler] = {PID_PAT: SectionAssembler()}
        self.pmt_pids: set[int] = set()
        self.stream_pids: dict[int, str] = {}  # PID -> codec or stream type
        self.tracks: dict[int, _TrackStats] = {}
        self.pat: Pat | None = None
        self.pmts: dict[int, Pmt] = {}
        self.total = 0
        self._progress_at = (
            0.0 if sys.stderr.isatty() else None
        )  # progress lines only on a terminal

    # -- output helpers ----------------------------------------------------------
    def show(self, bit: int, pid: int | None, text: str, record: dict[str, Any]) -> None:
        if self.detail & bit and (pid is None or self.pid_filter is None or pid == self.pid_filter):
            self.emit(text, record, 0)

    # -- input -------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.total += len(data)
        for pos, raw in self.splitter.feed(data):
            self._packet(pos, raw)
        self._frames(self.demuxer.feed(data))
        self._sync_problems()
        if self._progress_at is not None and time.monotonic() - self._progress_at > 1.0:
            self._progress_at = time.monotonic()
            seconds = (self.media_ms or 0) / 1000
            sys.stderr.write(f"\r{self.total / 1e6:.1f} MB read, {seconds:.1f} s of media\x1b[K")
            sys.stderr.flush()

    def finish(self) -> None:
        if self._progress_at:
            sys.stderr.write("\r\x1b[K")
        tail, left = self.splitter.end()
        for pos, raw in tail:
            self._packet(pos, raw)
        self._sync_problems()
        if left:
            self.problem(f"truncated TS packet at the end ({left} of 188 bytes)")
        for stats in self.pids.values():
            self._pes_done(stats, final=True)
        self._frames(self.demuxer.end())
        for text in self.demuxer.problems:  # frame-level findings the packet pass cannot see
            if not any(
                key in text
                for key in (
                    "continuity counter",
                    "lost sync",
                    "truncated packet",
                    "PSI on PID",
                    "PES at byte",
                )
            ):
                self.problem(text)
        if self.raw is not None and self.raw is not sys.stdout.buffer:
            self.raw.close()
        if not self.pids:
            self.problem("no TS packets found")
        elif self.pat is None:
            self.problem("no PAT found")
        elif not self.pmts:
            self.problem("no PMT found")
        self._timeline()

    def _sync_problems(self) -> None:
        while self.splitter.problems:
            self.problem(self.splitter.problems.pop(0))

    def _packet(self, pos: int, raw: bytes) -> None:
        try:
            pkt = TsPacket.parse(raw, pos)
        except FormatError as exc:
            self.problem(str(exc))
            return
        pid = pkt.pid
        stats = self.pids.get(pid)
        if stats is None:
            stats = self.pids[pid] = _PidStats(pid, self._kind(pid))
        stats.packets += 1
        stats.bytes += len(pkt.payload)
        self.show(SHOW_TS_HEX, pid, f"{pos:>10} {raw.hex()}", {"pos": pos, "raw": raw})
        if self.raw is not None and self.pid_filter is None:
            self.raw.write(raw)
        af = pkt.adaptation
        if pkt.error:
            self.problem(f"PID {pid}: transport error indicator set at byte {pos}")
        if pid != PID_NULL and pkt.has_payload:
            lost = stats.cc >= 0 and pkt.cc not in ((stats.cc + 1) & 0xF, stats.cc)
            if lost and not (af and af.discontinuity):
                stats.cc_errors += 1
                self.problem(
                    f"PID {pid}: continuity counter {pkt.cc} after {stats.cc} at byte {pos}"
                )
            stats.cc = pkt.cc
        if af is not None:
            stats.adaptation += 1
            stats.random_access += af.random_access
            stats.discontinuities += af.discontinuity
            if af.pcr is not None:
                if stats.pcrs and af.pcr < stats.pcrs[-1][1] and not af.discontinuity:
                    self.problem(f"PID {pid}: PCR goes backwards at byte {pos}")
                stats.pcrs.append((pos, af.pcr))
        is_stream = pid in self.stream_pids
        text = f"{pos:>10} PID {pid:>5} {'S' if pkt.pusi else ' '} cc={pkt.cc:<2} payload={len(pkt.payload)}"
        if af is not None:
            flags = "".join(c for c, on in (("D", af.discontinuity), ("R", af.random_access)) if on)
            text += f" af[{flags}{' PCR=%.3f' % (af.pcr / PCR_HZ) if af.pcr is not None else ''}]"
        record = {"pos": pos, "pid": pid, "pusi": pkt.pusi, "cc": pkt.cc, "payload": len(pkt.payload),
                  "pcr": af.pcr if af else None, "random_access": bool(af and af.random_access)}  # fmt: skip
        self.show(SHOW_STREAM if is_stream else SHOW_PSI, pid, text, record)
        asm = self.psi.get(pid)
        if asm is not None:
            for sec in asm.feed(pkt.payload, pkt.pusi):
                self._section(pid, sec, pos)
            while asm.problems:
                self.problem(f"PSI on PID {pid} at byte {pos}: {asm.problems.pop(0)}")
        elif is_stream and pkt.payload:
            if pkt.pusi:
                self._pes_done(stats)
                stats.pes_pos = pos
            if stats.pes_pos >= 0:
                stats.pes_buf += pkt.payload
                self._pes_check_complete(stats)

    def _kind(self, pid: int) -> str:
        if pid == PID_PAT:
            return "PAT"
        if pid == PID_NULL:
            return "null"
        if pid in (0x10, 0x11, 0x12, 0x14):  # DVB NIT, SDT, EIT, TDT
            return ("NIT", "SDT", "EIT", "", "TDT")[pid - 0x10]
        if pid in self.pmt_pids:
            return "PMT"
        return self.stream_pids.get(pid, "")

    def _section(self, pid: int, sec: bytes, pos: int) -> None:
        try:
            if pid == PID_PAT and sec[0] == TABLE_PAT:
                pat = Pat.parse(sec)
                if pat != self.pat:
                    self.pat = pat
                    progs = ", ".join(
                        f"program {n} -> PMT PID {p}" for n, p in pat.programs.items()
                    )
                    self.emit(
                        f"PAT (ts id {pat.transport_stream_id}, v{pat.version}): {progs}",
                        {"pat": pat.programs},
                        0,
                    )
                    for p in pat.programs.values():
                        self.pmt_pids.add(p)
                        self.psi.setdefault(p, SectionAssembler())
                        if p in self.pids:
                            self.pids[p].kind = "PMT"
            elif sec[0] == TABLE_PMT:
                pmt = Pmt.parse(sec)
                if self.pmts.get(pid) != pmt:
                    self.pmts[pid] = pmt
                    self.emit(f"PMT on PID {pid} (program {pmt.program_number}, v{pmt.version}, PCR PID {pmt.pcr_pid}):",
                              {"pmt": pid, "program": pmt.program_number, "pcr_pid": pmt.pcr_pid}, 0)  # fmt: skip
                    for s in pmt.streams:
                        codec = s.codec or f"type 0x{s.stream_type:02x}"
                        self.stream_pids[s.pid] = codec
                        if s.pid in self.pids:
                            self.pids[s.pid].kind = codec
                        lang = f" lang={s.lang}" if s.lang else ""
                        self.emit(f"  PID {s.pid}: stream type 0x{s.stream_type:02x} ({codec}){lang}",
                                  {"pid": s.pid, "stream_type": s.stream_type, "codec": codec, "lang": s.lang}, 0)  # fmt: skip
        except FormatError as exc:
            self.problem(f"PSI on PID {pid} at byte {pos}: {exc}")

    # -- PES -------------------------------------------------------------------
    def _pes_check_complete(self, stats: _PidStats) -> None:
        buf = stats.pes_buf
        if len(buf) >= 6:
            length = (buf[4] << 8) | buf[5]
            if length and len(buf) >= 6 + length:
                self._pes_done(stats)

    def _pes_done(self, stats: _PidStats, final: bool = False) -> None:
        if stats.pes_pos < 0:
            return
        data = bytes(stats.pes_buf)
        pos = stats.pes_pos
        stats.pes_buf.clear()
        stats.pes_pos = -1
        pid = stats.pid
        try:
            hdr = PesHeader.parse(data, f"PES on PID {pid} at byte {pos}")
        except FormatError as exc:
            self.problem(str(exc))
            return
        stats.pes += 1
        end = 6 + hdr.length if hdr.length else len(data)
        if end > len(data):
            self.problem(f"PID {pid}: PES at byte {pos} truncated ({len(data)} of {end} bytes)")
        payload = data[hdr.header_size : end]
        dts = hdr.dts if hdr.dts is not None else hdr.pts
        if dts is not None and stats.last_dts is not None:
            step = (dts - stats.last_dts) & TS_MASK
            step = step - (1 << 33) if step > 1 << 32 else step
            if step < 0 or step > JUMP_90K:
                self.problem(f"PID {pid}: PES timestamp jumps by {step / 90:.0f} ms at byte {pos}")
        if dts is not None:
            stats.last_dts = dts
        times = "".join(
            f" {n}={v / 90000:.3f}"
            for n, v in (("pts", hdr.pts), ("dts", hdr.dts))
            if v is not None
        )
        self.show(SHOW_PES, pid, f"PES PID {pid} stream 0x{hdr.stream_id:02x} at byte {pos}: {len(payload)} bytes{times}",
                  {"pes_pid": pid, "pos": pos, "stream_id": hdr.stream_id, "size": len(payload), "pts": hdr.pts, "dts": hdr.dts})  # fmt: skip
        self.show(
            SHOW_PES_HEX, pid, "  " + payload[:32].hex(), {"pes_pid": pid, "head": payload[:32]}
        )
        if self.raw is not None and self.pid_filter == pid:
            self.raw.write(payload)

    # -- frames ------------------------------------------------------------------
    def _frames(self, events: list[TrackMeta | Packet]) -> None:
        pids = self.demuxer.track_pids()
        for ev in events:
            if isinstance(ev, TrackMeta):
                if ev.id in self.tracks:
                    self.tracks[ev.id].meta = ev
                    continue
                self.tracks[ev.id] = _TrackStats(ev)
                geometry = (
                    f" {ev.width}x{ev.height}"
                    if ev.type == "video"
                    else f" {ev.rate} Hz {ev.channels} ch"
                )
                self.emit(f"track {ev.id} (PID {pids.get(ev.id)}): {ev.type} {ev.codec}{geometry}",
                          {"track": ev.id, "pid": pids.get(ev.id), "type": ev.type, "codec": ev.codec, "width": ev.width,
                           "height": ev.height, "rate": ev.rate, "channels": ev.channels, "init": ev.init}, 0)  # fmt: skip
                continue
            t = self.tracks[ev.track]
            t.frames += 1
            t.bytes += len(ev.data)
            if ev.keyframe and t.meta.type == "video":
                t.keyframes.append(ev.dts)
            t.first = ev.pts if t.first is None else min(t.first, ev.pts)
            t.last = ev.pts if t.last is None else max(t.last, ev.pts)
            self.media_ms = ev.dts if self.media_ms is None else max(self.media_ms, ev.dts)
            self.show(SHOW_PES, pids.get(ev.track), f"  frame track {ev.track} dts={ev.dts} pts={ev.pts}{' key' if ev.keyframe else ''} {len(ev.data)} bytes",
                      {"frame": ev.track, "dts": ev.dts, "pts": ev.pts, "keyframe": ev.keyframe, "size": len(ev.data)})  # fmt: skip

    def _timeline(self) -> None:
        for pid in sorted(self.pids):
            s = self.pids[pid]
            extra = f" pes={s.pes}" if s.pes else ""
            if len(s.pcrs) > 1:
                extra += f" pcrs={len(s.pcrs)} pcr_jitter_ms={self._jitter(s.pcrs):.3f}"
                gaps = [b[1] - a[1] for a, b in zip(s.pcrs, s.pcrs[1:], strict=False)]
                extra += f" max_pcr_interval_ms={max(gaps) / PCR_HZ * 1000:.1f}"
            self.emit(f"PID {pid:>5} {s.kind or '?':<6} packets={s.packets} cc_errors={s.cc_errors}{extra}",
                      {"pid_summary": pid, "kind": s.kind, "packets": s.packets, "cc_errors": s.cc_errors, "pes": s.pes,
                       "pcrs": len(s.pcrs)}, 0)  # fmt: skip
        firsts: dict[str, int] = {}
        for tid, t in sorted(self.tracks.items()):
            duration = (t.last - t.first) if t.first is not None and t.last is not None else 0
            rec: dict[str, Any] = {
                "track": tid,
                "codec": t.meta.codec,
                "frames": t.frames,
                "duration_ms": duration,
            }
            if duration:
                rec["kbps"] = round(t.bytes * 8 / duration, 1)
            if len(t.keyframes) > 1:
                rec["keyframes"] = len(t.keyframes)
                rec["keyframe_interval_ms"] = round(
                    (t.keyframes[-1] - t.keyframes[0]) / (len(t.keyframes) - 1)
                )
            elif t.keyframes:
                rec["keyframes"] = 1
            if t.first is not None:
                firsts.setdefault(t.meta.type, t.first)
            self.emit(
                "timeline: " + " ".join(f"{k}={v}" for k, v in rec.items()), {"timeline": rec}, 0
            )
        self.summary["packets"] = sum(s.packets for s in self.pids.values())
        self.summary["tracks"] = len(self.tracks)
        self.summary["frames"] = sum(t.frames for t in self.tracks.values())
        self.summary["cc_errors"] = sum(s.cc_errors for s in self.pids.values())
        if "video" in firsts and "audio" in firsts:
            self.summary["av_start_diff_ms"] = firsts["audio"] - firsts["video"]

    @staticmethod
    def _jitter(pcrs: list[tuple[int, int]]) -> float:
        """Largest distance (ms) of a PCR from the straight line through its neighbours'
        byte rate: a constant-rate stream has none; VBR muxes show their pacing."""
        worst = 0.0
        for (p0, c0), (p1, c1), (p2, c2) in zip(pcrs, pcrs[1:], pcrs[2:], strict=False):
            if p2 == p0:
                continue
            expected = c0 + (c2 - c0) * (p1 - p0) / (p2 - p0)
            worst = max(worst, abs(c1 - expected) / PCR_HZ * 1000)
        return worst


def _pid(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """-P: a PID in decimal or 0x hex, 0..8191 (a usage error otherwise)."""
    if value is None:
        return None
    try:
        pid = int(value, 0)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a PID (decimal or 0x hex)", param=param
        ) from None
    if not 0 <= pid <= 0x1FFF:
        raise click.BadParameter(f"PID {pid} is outside 0..8191", param=param)
    return pid


main = make_main(
    lambda **kw: TsAnalyser(pid=kw.pop("pid", None), raw=kw.pop("raw", None), **kw),
    __doc__ or "",
    [
        click.option(
            "-P",
            "--pid",
            default=None,
            callback=_pid,
            help="Only print (and -R) this PID (decimal or 0x hex).",
        ),
        click.option(
            "-R",
            "--raw",
            default=None,
            callback=output_path,
            help="Write PES payloads of the -P PID (or all TS packets) to this file; - is stdout.",
        ),
    ],
)
for _param in main.params:  # -D is a bitmask here, as in MistServer (default 3)
    if _param.name == "detail" and isinstance(_param, click.Option):
        _param.type = click.IntRange(0, 127)
        _param.default = 3
        _param.help = "Bitmask: 1 PES, 2 PSI/null packets, 4 stream packets, 32 PES hex, 64 TS hex."

if __name__ == "__main__":
    main()
